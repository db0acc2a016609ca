// FilterChain (proxy/exchange/filter_chain): order, Stop / takeWaiting / resume, the response
// hook running once, onComplete, and destroy() (onDestroy + destructor exactly once each).
#include "proxy/exchange/filter_chain.h"

#include <doctest/doctest.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace sluice;
using middleware::Status;

namespace {

// Every call any test filter gets, in order ("a.req", "b.resp", "a.destroy", "a.~", ...).
struct Journal {
  std::vector<std::string> events;
  void add(const std::string& name, const char* what) { events.push_back(name + "." + what); }
  size_t count(const std::string& e) const {
    size_t n = 0;
    for (const auto& x : events) n += x == e;
    return n;
  }
};

class RecordingFilter final : public middleware::Filter {
 public:
  RecordingFilter(Journal& j, std::string name, Status st) : j_(j), name_(std::move(name)), st_(st) {}
  ~RecordingFilter() override { j_.add(name_, "~"); }
  Status onRequestHeaders(middleware::RequestContext& ctx) override {
    j_.add(name_, "req");
    ctx.attributes.set("order", name_, "seen");
    return st_;
  }
  void onResponseHeaders(middleware::RequestContext&, http::ResponseHead& head) override {
    j_.add(name_, "resp");
    head.headers.add("X-Filter", name_);
  }
  void onComplete(const middleware::RequestContext&) override { j_.add(name_, "complete"); }
  void onDestroy() override { j_.add(name_, "destroy"); }

 private:
  Journal& j_;
  std::string name_;
  Status st_;
};

class RecordingFactory final : public middleware::FilterFactory {
 public:
  RecordingFactory(Journal& j, std::string name, Status st) : j_(j), name_(std::move(name)), st_(st) {}
  middleware::Filter* create(middleware::FilterArena& arena,
                             middleware::FilterCallbacks&) const override {
    j_.add(name_, "create");
    return arena.make<RecordingFilter>(j_, name_, st_);
  }
  std::string_view name() const override { return name_; }

 private:
  Journal& j_;
  std::string name_;
  Status st_;
};

class NullCallbacks final : public middleware::FilterCallbacks {
 public:
  void resume() override {}
  void sendLocalReply(const http::LocalReply&) override {}
  middleware::RequestContext& context() override { return ctx; }
  middleware::WorkerServices& services() override { return svc; }
  middleware::RequestContext ctx;
  middleware::WorkerServices svc;
};

struct Fixture {
  Journal j;
  NullCallbacks cb;
  middleware::RequestContext ctx;
  FilterChain chain;
  std::vector<middleware::FilterFactoryPtr> factories;

  // One filter per name, in order; a trailing '!' makes that filter Stop. The chain is built.
  Fixture(std::initializer_list<std::string_view> names) {
    for (std::string_view n : names) {
      const bool stop = n.ends_with('!');
      factories.push_back(std::make_shared<RecordingFactory>(
          j, std::string(stop ? n.substr(0, n.size() - 1) : n),
          stop ? Status::Stop : Status::Continue));
    }
    chain.create(factories, cb);
  }
  FilterChain::Result run() {
    return chain.runRequest(ctx, [] { return true; });
  }
};

using Events = std::vector<std::string>;

}  // namespace

TEST_SUITE("filter_chain") {
  TEST_CASE("filters are created and run in route order") {
    CHECK(FilterChain().empty());
    Fixture f{"a", "b", "c"};
    CHECK_FALSE(f.chain.empty());
    CHECK(f.run() == FilterChain::Result::Done);
    CHECK_FALSE(f.chain.waiting());
    CHECK(f.j.events == Events{"a.create", "b.create", "c.create", "a.req", "b.req", "c.req"});
    CHECK(f.ctx.attributes.get("order", "c") != nullptr);
  }

  TEST_CASE("a Stop waits; takeWaiting clears the mark once; running again resumes after it") {
    Fixture f{"a", "b!", "c"};
    CHECK(f.run() == FilterChain::Result::Waiting);
    CHECK(f.chain.waiting());
    CHECK(f.j.events.back() == "b.req");
    CHECK(f.j.count("c.req") == 0);
    CHECK(f.chain.takeWaiting());
    CHECK_FALSE(f.chain.waiting());
    CHECK_FALSE(f.chain.takeWaiting());  // a second resume finds nothing waiting
    CHECK(f.run() == FilterChain::Result::Done);
    // b is not run again; c runs once.
    CHECK(f.j.count("a.req") == 1);
    CHECK(f.j.count("b.req") == 1);
    CHECK(f.j.count("c.req") == 1);
  }

  TEST_CASE("a resume() from inside onRequestHeaders before returning Stop is not lost") {
    // A filter whose answer came synchronously (a cached decision) resumes, then says Stop.
    struct EarlyResume final : middleware::Filter {
      explicit EarlyResume(FilterChain& c) : chain(c) {}
      Status onRequestHeaders(middleware::RequestContext&) override {
        resumedNow = chain.resume();
        return Status::Stop;
      }
      FilterChain& chain;
      bool resumedNow = true;
    };
    struct Factory final : middleware::FilterFactory {
      explicit Factory(FilterChain& c) : chain(c) {}
      middleware::Filter* create(middleware::FilterArena& arena,
                                 middleware::FilterCallbacks&) const override {
        return made = arena.make<EarlyResume>(chain);
      }
      std::string_view name() const override { return "early"; }
      FilterChain& chain;
      mutable EarlyResume* made = nullptr;
    };
    Fixture f{"a"};
    f.chain.destroy();
    auto early = std::make_shared<Factory>(f.chain);
    f.factories.insert(f.factories.begin(), early);
    f.chain.create(f.factories, f.cb);
    CHECK(f.run() == FilterChain::Result::Done);  // went on to "a" instead of waiting
    CHECK_FALSE(early->made->resumedNow);          // the exchange must not run the chain itself
    CHECK_FALSE(f.chain.waiting());
    CHECK(f.j.count("a.req") == 1);
    CHECK_FALSE(f.chain.resume());  // nothing is waiting afterwards
  }

  TEST_CASE("a filter that ended the exchange stops the chain (Answered)") {
    Fixture f{"a", "b"};
    int calls = 0;
    CHECK(f.chain.runRequest(f.ctx, [&] { return ++calls < 1; }) == FilterChain::Result::Answered);
    CHECK(calls == 1);
    CHECK(f.j.count("b.req") == 0);
  }

  TEST_CASE("every filter sees the response head once; onComplete for each") {
    Fixture f{"a", "b"};
    REQUIRE(f.run() == FilterChain::Result::Done);
    http::ResponseHead head;
    head.status = 200;
    f.chain.runResponse(f.ctx, head);
    f.chain.runResponse(f.ctx, head);  // e.g. a local reply after the upstream head: no rerun
    CHECK(f.j.count("a.resp") == 1);
    CHECK(f.j.count("b.resp") == 1);
    CHECK(head.headers.count("X-Filter") == 2);
    f.chain.complete(f.ctx);
    CHECK(f.j.count("a.complete") == 1);
    CHECK(f.j.count("b.complete") == 1);
  }

  TEST_CASE("destroy: every onDestroy, then every destructor, exactly once; the chain is reusable") {
    Fixture f{"a", "b!"};
    REQUIRE(f.run() == FilterChain::Result::Waiting);
    http::ResponseHead head;
    f.chain.runResponse(f.ctx, head);
    f.j.events.clear();
    f.chain.destroy();
    CHECK(f.j.events == Events{"a.destroy", "b.destroy", "a.~", "b.~"});
    CHECK(f.chain.empty());
    CHECK_FALSE(f.chain.waiting());
    f.chain.destroy();  // nothing left: no second onDestroy or destructor
    CHECK(f.j.events.size() == 4);

    // The next request: fresh filters from the first one on, the response hook armed again.
    f.j.events.clear();
    f.chain.create(f.factories, f.cb);
    CHECK(f.run() == FilterChain::Result::Waiting);
    CHECK(f.j.events == Events{"a.create", "b.create", "a.req", "b.req"});
    f.chain.runResponse(f.ctx, head);
    CHECK(f.j.count("a.resp") == 1);
    f.chain.destroy();
    CHECK(f.j.count("a.~") == 1);
    CHECK(f.j.count("b.~") == 1);
  }
}
