// The exchange's phases (proxy/exchange/exchange) between a fake ServerStream (records the
// response) and a fake Upstream (records start(); the test plays the upstream callbacks):
// routing and strip_prefix, local replies (404, /health, 405), filters that stop, resume,
// answer, or edit the request and response heads, and upstream failures.
#include "proxy/exchange/exchange.h"

#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proxy/worker.h"
#include "tests/unit/exchange/test_snapshot.h"

using namespace sluice;
using middleware::Status;

namespace {

constexpr std::string_view kConfig = R"([[listener]]
name = "web"
listen = "127.0.0.1:8080"

[pool.p]
backends = [{ address = "127.0.0.1:9" }]

[[route]]
name = "api"
path = "/api/"
strip_prefix = true
pool = "p"

[[route]]
name = "exact"
path_exact = "/exact"
pool = "p"

[[route]]
name = "filtered"
path = "/f/"
pool = "p"
)";

std::vector<std::string> headerLines(const http::HeaderMap& h) {
  std::vector<std::string> v;
  for (size_t i = 0; i < h.size(); ++i)
    if (!h.removedAt(i)) v.push_back(std::string(h.nameAt(i)) + ": " + std::string(h.valueAt(i)));
  return v;
}

// The client side: what the exchange encodes.
class FakeStream final : public ServerStream {
 public:
  int heads = 0;
  int status = 0;
  std::vector<std::string> headers;
  std::string requestId;
  ResponseInfo info;  // its views are not kept
  std::string body;
  bool ended = false;
  int readBodyCalls = 0;
  int resets = 0;
  std::vector<int> interims;

  size_t encodeHeaders(const http::ResponseHead& head, const ResponseInfo& i) override {
    ++heads;
    status = head.status;
    headers = headerLines(head.headers);
    requestId.assign(i.requestId);
    info = i;
    info.requestId = info.extraHeaders = {};
    return 1;
  }
  size_t encodeData(const char* data, size_t len) override {
    body.append(data, len);
    return len;
  }
  void encodeEnd() override { ended = true; }
  size_t encodeInterim(const http::ResponseHead& head) override {
    interims.push_back(head.status);
    return 1;
  }
  int tunnelStarts = 0, tunnelEnds = 0;

  void encodeTunnelData(const char*, size_t) override {}
  void endTunnel() override { ++tunnelEnds; }
  void readBody() override { ++readBodyCalls; }
  void pauseReading(bool) override {}
  void startTunnel() override { ++tunnelStarts; }
  void setTimeout(uint64_t) override {}
  void safePoint() override {}
  size_t queuedBytes() const override { return 0; }
  void flush() override {}
  void reset() override { ++resets; }
};

// The backend side: records start() and what the exchange sends.
class FakeUpstream final : public Upstream {
 public:
  int starts = 0;
  const upstream::Pool* pool = nullptr;
  std::string target, requestId, forwardedHost, hostOverride;
  std::vector<std::string> headAtStart;  // the request head's headers when start() ran
  bool requestCompleteAtStart = false;
  bool isConnected = false;
  std::string body;
  bool bodyEnded = false;
  int releases = 0;
  bool reusable = false;
  int aborts = 0;
  bool closeOnReleaseSet = false;

  void start(const upstream::Pool* p, const http::RequestHead* head,
             const http::UpstreamRequestInfo& info, uint64_t, bool requestComplete,
             const upstream::OutcomeSink*) override {
    ++starts;
    pool = p;
    target.assign(info.target);
    requestId.assign(info.requestId);
    forwardedHost.assign(info.forwardedHost);
    hostOverride.assign(info.hostOverride);
    headAtStart = headerLines(head->headers);
    requestCompleteAtStart = requestComplete;
  }
  bool started() const override { return starts > 0; }
  bool connected() const override { return isConnected; }
  bool waiting() const override { return false; }
  void onDeadline() override {}
  void sendData(const char* data, size_t len) override { body.append(data, len); }
  void sendEnd() override { bodyEnded = true; }
  void requestComplete() override {}
  void sendTunnelData(const char*, size_t) override {}
  void shutdownTunnel() override {}
  bool flush() override { return true; }
  size_t queuedBytes() const override { return 0; }
  void pauseReading() override {}
  void resumeReading() override {}
  void enterTunnel() override {}
  void release(bool r) override {
    ++releases;
    reusable = r;
  }
  void closeOnRelease() override { closeOnReleaseSet = true; }
  void abort() override {
    ++aborts;
    isConnected = false;
  }
  void reset() override {
    starts = 0;
    isConnected = false;
  }
  const upstream::Backend* backend() const override { return nullptr; }
  uint64_t startNs() const override { return 0; }
  uint64_t headNs() const override { return 0; }
};

// A test-only filter whose behaviour the test scripts, and which counts what happened to it.
struct FilterScript {
  Status onRequest = Status::Continue;
  std::function<void(middleware::RequestContext&, middleware::FilterCallbacks&)> request;
  std::function<void(http::ResponseHead&)> response;
  middleware::FilterCallbacks* callbacks = nullptr;  // of the latest filter built
  int requests = 0, responses = 0, completes = 0, destroys = 0;
};

class ScriptFilter final : public middleware::Filter {
 public:
  ScriptFilter(FilterScript& s, middleware::FilterCallbacks& cb) : s_(s), cb_(cb) {}
  Status onRequestHeaders(middleware::RequestContext& ctx) override {
    ++s_.requests;
    if (s_.request) s_.request(ctx, cb_);  // may answer: touch nothing of `this` afterwards
    return s_.onRequest;
  }
  void onResponseHeaders(middleware::RequestContext&, http::ResponseHead& head) override {
    ++s_.responses;
    if (s_.response) s_.response(head);
  }
  void onComplete(const middleware::RequestContext&) override { ++s_.completes; }
  void onDestroy() override { ++s_.destroys; }

 private:
  FilterScript& s_;
  middleware::FilterCallbacks& cb_;
};

class ScriptFactory final : public middleware::FilterFactory {
 public:
  explicit ScriptFactory(FilterScript& s) : s_(s) {}
  middleware::Filter* create(middleware::FilterArena& arena,
                             middleware::FilterCallbacks& cb) const override {
    s_.callbacks = &cb;
    return arena.make<ScriptFilter>(s_, cb);
  }
  std::string_view name() const override { return "script"; }

 private:
  FilterScript& s_;
};

// One worker for every test: never started, only its snapshot, ids and metrics are used.
// Leaked on purpose (its loop holds handles that only a running loop could close).
Worker& testWorker() {
  static Worker* w = new Worker(0);
  return *w;
}

struct Harness {
  std::shared_ptr<Snapshot> snap = test::snapshotFromToml(kConfig);
  FilterScript script;
  std::string listenerKey = "127.0.0.1:8080";
  DownstreamInfo down;
  FakeStream stream;
  FakeUpstream up;
  http::RequestHead req;
  std::unique_ptr<Exchange> ex;

  // `filters`: how many script filters the "filtered" route runs (all share `script`).
  explicit Harness(int filters = 0) {
    if (filters > 0) {
      std::vector<router::Route> routes = snap->routes.routes();
      for (router::Route& r : routes)
        if (r.name == "filtered")
          for (int i = 0; i < filters; ++i)
            r.filters.push_back(std::make_shared<ScriptFactory>(script));
      snap->routes.build(std::move(routes));
    }
    testWorker().setSnapshotForTest(snap);
    down.peerIp = "10.0.0.7";
    down.listenerKey = &listenerKey;
    ex = std::make_unique<Exchange>(testWorker());
    ex->bind(&stream, &down);
    ex->setUpstreamForTest(&up);
  }
  ~Harness() {
    ex->reset();  // what the codec does before the exchange is reused or freed
  }

  // A request head as the codec delivers it.
  void send(std::string_view method, std::string_view target, bool endOfRequest = true,
            const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    req.clear();
    req.method = method;
    req.target = target;
    req.headers.add("Host", "a.example");
    for (const auto& [n, v] : headers) req.headers.add(n, v);
    if (!endOfRequest) {
      req.hasContentLength = true;
      req.contentLength = 3;
    }
    ex->decodeHeaders(req, endOfRequest);
  }
  UpstreamCallbacks& cb() { return ex->upstreamCallbacks(); }
  // The upstream answers `status` with `headers` and `body`.
  void upstreamResponds(int status, const std::vector<std::pair<std::string, std::string>>& headers,
                        std::string_view body) {
    http::ResponseHead h;
    h.status = status;
    h.hasContentLength = true;
    h.contentLength = body.size();
    for (auto& [n, v] : headers) h.headers.add(n, v);
    cb().onUpstreamHeaders(h);
    if (!body.empty()) cb().onUpstreamData(body.data(), body.size());
    cb().onUpstreamEnd();
  }
  // The JSON error body the exchange answers with.
  std::string jsonError(std::string_view code) const {
    return "{\"error\":\"" + std::string(code) + "\",\"request_id\":\"" + stream.requestId + "\"}";
  }
  void checkLocalError(int status, std::string_view code, bool close) {
    CHECK(stream.heads == 1);
    CHECK(stream.status == status);
    CHECK(stream.info.local);
    CHECK(stream.info.close == close);
    CHECK_FALSE(stream.requestId.empty());
    CHECK(stream.body == jsonError(code));
    CHECK(stream.headers == std::vector<std::string>{"Content-Type: application/json"});
    CHECK(stream.ended);
  }
};

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

TEST_SUITE("exchange") {
  TEST_CASE("a matched route starts the upstream with the rewritten target") {
    struct Case {
      const char* target;
      const char* upstreamTarget;
      const char* hostOverride;
    } cases[] = {
        {"/api/users?x=1", "/users?x=1", ""},
        {"/api/", "/", ""},
        {"/api/a/b", "/a/b", ""},
        {"/exact?q=2", "/exact?q=2", ""},
        {"/f/x", "/f/x", ""},
        {"http://other.example/api/v?1", "/v?1", "other.example"},
        {"http://other.example/exact", "/exact", "other.example"},
    };
    for (const Case& c : cases) {
      CAPTURE(std::string(c.target));
      Harness h;
      h.send("GET", c.target);
      REQUIRE(h.up.starts == 1);
      CHECK(h.up.pool == h.snap->pool("p"));
      CHECK(h.up.target == c.upstreamTarget);
      CHECK(h.up.hostOverride == c.hostOverride);
      CHECK(h.up.forwardedHost == (*c.hostOverride ? c.hostOverride : "a.example"));
      CHECK(h.up.requestCompleteAtStart);
      CHECK(h.up.requestId.size() == 32);  // a fresh id
      CHECK(h.stream.heads == 0);
      CHECK(h.ex->holdsResources());
    }
  }

  TEST_CASE("the upstream's response goes to the client, then the connection is released") {
    Harness h;
    h.send("GET", "/api/x");
    h.up.isConnected = true;
    h.cb().onUpstreamReady();
    CHECK(h.stream.readBodyCalls == 0);  // nothing to read
    h.upstreamResponds(200, {{"Server", "backend"}}, "hello");
    CHECK(h.stream.status == 200);
    CHECK(h.stream.headers == std::vector<std::string>{"Server: backend"});
    CHECK(h.stream.requestId == h.up.requestId);
    CHECK_FALSE(h.stream.info.local);
    CHECK_FALSE(h.stream.info.close);
    CHECK(h.stream.body == "hello");
    CHECK(h.stream.ended);
    CHECK(h.up.releases == 1);
    CHECK(h.up.reusable);
  }

  TEST_CASE("a request body is read once the upstream is ready and flows to it") {
    Harness h;
    h.send("POST", "/api/up", false);
    REQUIRE(h.up.starts == 1);
    CHECK_FALSE(h.up.requestCompleteAtStart);
    CHECK(h.stream.readBodyCalls == 0);  // not before a connection exists
    h.up.isConnected = true;
    h.cb().onUpstreamReady();
    CHECK(h.stream.readBodyCalls == 1);
    CHECK(h.ex->decodeData("abc", 3));
    h.ex->decodeEnd();
    CHECK(h.up.body == "abc");
    CHECK(h.up.bodyEnded);
  }

  TEST_CASE("a client X-Request-Id that is sane is kept") {
    Harness h;
    h.send("GET", "/nowhere", true, {{"X-Request-Id", "client-id-1"}});
    CHECK(h.stream.requestId == "client-id-1");
    CHECK(h.stream.body == R"({"error":"no_route","request_id":"client-id-1"})");
  }

  TEST_CASE("local errors: no route, CONNECT, bad target, unsupported Expect, upstream failures") {
    struct Case {
      const char* what;
      const char* method;
      const char* target;
      std::vector<std::pair<std::string, std::string>> headers;
      bool endOfRequest;
      int status;
      const char* code;
      bool close;
    } cases[] = {
        {"no route", "GET", "/nowhere", {}, true, 404, "no_route", false},
        {"no route, body unread", "POST", "/nowhere", {}, false, 404, "no_route", true},
        {"CONNECT", "CONNECT", "a.example:443", {}, true, 405, "method_not_allowed", true},
        {"dot segments", "GET", "/api/../etc", {}, true, 400, "bad_request", true},
        {"Expect other than 100-continue",
         "GET",
         "/api/x",
         {{"Expect", "magic"}},
         true,
         417,
         "expectation_failed",
         true},
    };
    for (const Case& c : cases) {
      CAPTURE(std::string(c.what));
      Harness h;
      h.send(c.method, c.target, c.endOfRequest, c.headers);
      CHECK(h.up.starts == 0);
      h.checkLocalError(c.status, c.code, c.close);
    }
  }

  TEST_CASE("onUpstreamFailed answers with its status; closes only if the body is unread") {
    struct Case {
      bool endOfRequest;
      int status;
      const char* code;
    } cases[] = {{true, 502, "bad_gateway"},
                 {false, 502, "bad_gateway"},
                 {true, 504, "gateway_timeout"},
                 {true, 503, "no_healthy_backend"}};
    for (const Case& c : cases) {
      CAPTURE(c.status);
      CAPTURE(c.endOfRequest);
      Harness h;
      h.send(c.endOfRequest ? "GET" : "POST", "/api/x", c.endOfRequest);
      REQUIRE(h.up.starts == 1);
      h.cb().onUpstreamFailed(c.status, c.code);
      h.checkLocalError(c.status, c.code, !c.endOfRequest);
    }
  }

  TEST_CASE("a response that breaks after it started resets the stream, no second head") {
    Harness h;
    h.send("GET", "/api/x");
    http::ResponseHead head;
    head.status = 200;
    h.cb().onUpstreamHeaders(head);
    h.cb().onUpstreamAborted();
    CHECK(h.stream.heads == 1);
    CHECK(h.stream.resets == 1);
    CHECK_FALSE(h.stream.ended);
  }

  TEST_CASE("a 103 goes to the stream before the final head, never after it") {
    Harness h;
    h.send("GET", "/api/x");
    http::ResponseHead hints;
    hints.status = 103;
    h.cb().onUpstreamInterim(hints);
    CHECK(h.stream.interims == std::vector<int>{103});
    CHECK(h.stream.heads == 0);
    http::ResponseHead head;
    head.status = 200;
    h.cb().onUpstreamHeaders(head);
    h.cb().onUpstreamInterim(hints);  // a confused backend: the response already started
    CHECK(h.stream.interims == std::vector<int>{103});
    h.cb().onUpstreamEnd();
    CHECK(h.stream.ended);
  }

  TEST_CASE("/health/* is answered when no route takes it") {
    Harness h;
    h.send("GET", "/health/live");
    CHECK(h.up.starts == 0);
    CHECK(h.stream.status == 200);
    CHECK(h.stream.body == R"({"status":"live"})");
    CHECK(h.stream.headers ==
          std::vector<std::string>{"Content-Type: application/json", "Cache-Control: no-store"});
    CHECK(h.stream.info.local);
    CHECK(h.stream.ended);
  }

  TEST_CASE("a HEAD answered locally has no body") {
    Harness h;
    h.send("HEAD", "/nowhere");
    CHECK(h.stream.status == 404);
    CHECK(h.stream.info.noBody);
    CHECK(h.stream.body.empty());
  }

  TEST_CASE("a filter that stops holds the upstream until it resumes") {
    Harness h(2);
    h.script.onRequest = Status::Stop;
    h.send("GET", "/f/x");
    CHECK(h.script.requests == 1);  // the second filter has not run
    CHECK(h.up.starts == 0);
    CHECK(h.stream.heads == 0);
    REQUIRE(h.script.callbacks != nullptr);
    h.script.onRequest = Status::Continue;
    h.script.callbacks->resume();
    CHECK(h.script.requests == 2);  // the chain went on from the second filter
    CHECK(h.up.starts == 1);
    CHECK(h.up.target == "/f/x");
    h.script.callbacks->resume();  // nothing waits any more
    CHECK(h.script.requests == 2);
    CHECK(h.up.starts == 1);
  }

  TEST_CASE("a filter answering 204 with headers: no upstream, those headers, no body") {
    Harness h(1);
    h.script.request = [](middleware::RequestContext&, middleware::FilterCallbacks& cb) {
      http::LocalReply r;
      r.status = 204;
      r.header("Access-Control-Allow-Origin", "https://a.example")
          .header("Access-Control-Max-Age", "600");
      cb.sendLocalReply(r);
    };
    h.script.onRequest = Status::Stop;
    h.send("OPTIONS", "/f/x");
    CHECK(h.up.starts == 0);
    CHECK(h.stream.heads == 1);
    CHECK(h.stream.status == 204);
    CHECK(h.stream.headers ==
          std::vector<std::string>{"Access-Control-Allow-Origin: https://a.example",
                                   "Access-Control-Max-Age: 600"});
    CHECK(h.stream.body.empty());
    CHECK(h.stream.info.noBody);  // a 204 is the head only: no Content-Length either
    CHECK_FALSE(h.stream.info.close);
    CHECK(h.stream.ended);
    CHECK(h.script.responses == 1);  // its own reply passes the response hook too
    CHECK(h.script.completes == 1);
  }

  TEST_CASE("a filter replaces a header of the upstream's response before it is encoded") {
    Harness h(1);
    h.script.response = [](http::ResponseHead& head) {
      head.headers.remove("Server");
      head.headers.add("Server", "sluice");
    };
    h.send("GET", "/f/x");
    REQUIRE(h.up.starts == 1);
    h.upstreamResponds(200, {{"Server", "backend"}, {"X-Keep", "1"}}, "ok");
    CHECK(h.stream.headers == std::vector<std::string>{"X-Keep: 1", "Server: sluice"});
    CHECK(h.stream.body == "ok");
    CHECK(h.script.responses == 1);
    CHECK(h.script.completes == 1);
  }

  TEST_CASE("a filter edits the request head; the upstream sees it at start()") {
    Harness h(1);
    h.script.request = [](middleware::RequestContext& ctx, middleware::FilterCallbacks&) {
      REQUIRE(ctx.request != nullptr);
      ctx.request->headers.add("X-User", "alice");
      ctx.request->headers.remove("X-Secret");
      ctx.attributes.set("jwt", "sub", "alice");
    };
    h.send("GET", "/f/x", true, {{"X-Secret", "s"}});
    REQUIRE(h.up.starts == 1);
    CHECK(has(h.up.headAtStart, "X-User: alice"));
    CHECK_FALSE(has(h.up.headAtStart, "X-Secret: s"));
    CHECK(has(h.up.headAtStart, "Host: a.example"));
  }

  TEST_CASE("filters are destroyed once when the exchange is reset for the next request") {
    Harness h(2);
    h.send("GET", "/f/x");
    CHECK(h.script.requests == 2);
    h.upstreamResponds(200, {}, "");
    CHECK(h.script.destroys == 0);
    h.ex->reset();
    CHECK(h.script.destroys == 2);
    CHECK_FALSE(h.ex->holdsResources());
    h.ex->reset();
    CHECK(h.script.destroys == 2);
  }

  TEST_CASE("drainPool: a tunnel through the pool ends both sides; a request is marked") {
    const uint32_t pool = test::snapshotFromToml(kConfig)->pool("p")->nameId;
    {
      Harness h;
      h.req.clear();
      h.req.method = "GET";
      h.req.target = "/api/ws";
      h.req.upgrade = true;
      h.req.headers.add("Host", "a.example");
      h.req.headers.add("Upgrade", "websocket");
      h.req.headers.add("Connection", "Upgrade");
      h.ex->decodeHeaders(h.req, true);
      REQUIRE(h.up.starts == 1);
      h.up.isConnected = true;
      h.cb().onUpstreamReady();
      CHECK(h.ex->drainPool(pool + 1) == Exchange::Drained::None);  // another pool
      http::ResponseHead head;
      head.status = 101;
      CHECK(h.cb().onUpstreamHeaders(head) == http::Http1Parser::Handler::kUpgrade);
      h.cb().afterUpstreamRead(true);
      REQUIRE(h.stream.tunnelStarts == 1);
      CHECK(h.ex->drainPool(pool + 1) == Exchange::Drained::None);
      CHECK(h.up.aborts == 0);
      CHECK(h.ex->drainPool(pool) == Exchange::Drained::Tunnel);
      CHECK(h.up.aborts == 1);          // the backend side
      CHECK(h.stream.tunnelEnds == 1);  // the client side, as when the backend closes
    }
    {
      Harness h;
      h.send("GET", "/api/x");
      h.up.isConnected = true;
      h.cb().onUpstreamReady();
      CHECK(h.ex->drainPool(pool) == Exchange::Drained::Request);
      CHECK(h.up.closeOnReleaseSet);
      CHECK(h.up.aborts == 0);  // the request finishes normally
      h.upstreamResponds(200, {}, "ok");
      CHECK(h.stream.body == "ok");
      CHECK(h.up.releases == 1);
      // Answered: nothing of it is left to drain.
      CHECK(h.ex->drainPool(pool) == Exchange::Drained::None);
    }
    {
      Harness h;
      h.send("GET", "/nowhere");  // answered locally, no pool
      CHECK(h.ex->drainPool(pool) == Exchange::Drained::None);
    }
  }
}
