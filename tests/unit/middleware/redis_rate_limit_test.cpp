// RedisClient + the rate_limit filter against a real redis-server (skipped when the binary is
// missing), driven on a private uv loop with fake FilterCallbacks. Requests started without
// running the loop in between belong to one loop turn, so they go to Redis as one batch.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "middleware/gcra.h"
#include "middleware/local_store.h"
#include "middleware/rate_limit.h"
#include "middleware/redis_client.h"
#include "proxy/http/message.h"
#include "proxy/observe/metrics.h"

using namespace sluice;
using namespace sluice::middleware;

namespace {

// A port the kernel offered a moment ago (bound to port 0, read back, closed).
int offeredPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

// True when something on 127.0.0.1:port answers PING with +PONG.
bool answersPing(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[8] = {0};
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            ::write(fd, "PING\r\n", 6) == 6 && ::read(fd, buf, 7) == 7 &&
            std::string_view(buf, 7) == "+PONG\r\n";
  close(fd);
  return ok;
}

struct RedisProc {
  pid_t pid = -1;
  int port = 0;
  // Starts redis-server on `p`, or, with 0, on a port the kernel offered. redis-server cannot
  // bind port 0 and report the port, so it binds the offered one a moment later; when someone
  // else took it in between, redis-server exits and another port is tried.
  bool start(int p = 0) {
    if (access("/usr/bin/redis-server", X_OK) != 0) return false;
    for (int attempt = 0; attempt < 5; ++attempt) {
      port = p ? p : offeredPort();
      if (spawn()) return true;
      if (p) return false;
    }
    return false;
  }
  bool spawn() {
    pid = fork();
    if (pid == 0) {
      std::string ps = std::to_string(port);
      int devnull = ::open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      execl("/usr/bin/redis-server", "redis-server", "--port", ps.c_str(), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 500; ++i) {
      if (waitpid(pid, nullptr, WNOHANG) == pid) {  // it could not bind the port
        pid = -1;
        return false;
      }
      if (answersPing(port)) return true;  // ours: the port is held by a live redis-server
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stop();
    return false;
  }
  void signal(int sig) const {
    if (pid > 0) kill(pid, sig);
  }
  void stop() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
  ~RedisProc() { stop(); }
};

struct FakeConn : FilterCallbacks {
  std::string ip;  // ctx.clientIp points here
  RequestContext ctx;
  WorkerServices* svc = nullptr;
  FilterArena arena;
  Filter* filter = nullptr;
  int resumed = 0, replied = 0, status = 0;
  std::string code, extra;
  ~FakeConn() override {
    if (filter) filter->~Filter();
  }
  void resume() override { ++resumed; }
  void sendLocalReply(const http::LocalReply& r) override {
    ++replied;
    status = r.status;
    code = r.code;
    for (size_t i = 0; i < r.headerCount; ++i)
      extra.append(r.headers[i].name).append(": ").append(r.headers[i].value).append("\r\n");
  }
  RequestContext& context() override { return ctx; }
  WorkerServices& services() override { return *svc; }
  // The header lines the filter adds to the response (as the exchange would ask it).
  std::string responseHeaders() const {
    http::ResponseHead head;
    filter->onResponseHeaders(const_cast<RequestContext&>(ctx), head);
    std::string out;
    for (size_t i = 0; i < head.headers.size(); ++i)
      out.append(head.headers.nameAt(i))
          .append(": ")
          .append(head.headers.valueAt(i))
          .append("\r\n");
    return out;
  }
  std::string ratelimit() const {
    const std::string* v = ctx.attributes.get("log", "ratelimit");
    return v ? *v : "-";
  }

  // A connection with a filter from `f`, for a request from `ip` (not started yet).
  static std::unique_ptr<FakeConn> make(WorkerServices& svc, const RateLimitFactory& f,
                                        std::string ip) {
    auto c = std::make_unique<FakeConn>();
    c->svc = &svc;
    c->ip = std::move(ip);
    c->ctx.clientIp = c->ip;
    c->filter = f.create(c->arena, *c);
    return c;
  }
};

template <class Pred>
bool runUntil(uv_loop_t* loop, Pred pred, int ms = 5000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    uv_run(loop, UV_RUN_NOWAIT);
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  return true;
}

RateLimitSettings rlSettings(uint64_t rate, uint64_t burst = 0) {
  RateLimitSettings rl;
  rl.rate = rate;
  rl.burst = burst;
  rl.period = config::Duration(3600000);
  rl.store = RateLimitStore::Redis;
  return rl;
}

// A redis-server, a loop and a connected RedisClient; torn down in order.
struct RedisEnv {
  RedisProc redis;
  uv_loop_t loop{};
  observe::WorkerMetrics metrics;
  RedisClient* client = nullptr;
  config::RedisSettings rs;
  WorkerServices svc;
  LocalStoreRegistry stores;

  // False (the test is then skipped) without a redis-server.
  bool start(int timeoutMs) {
    if (!redis.start()) {
      MESSAGE("redis-server not available: skipped");
      return false;
    }
    const int port = redis.port;
    uv_loop_init(&loop);
    client = new RedisClient(&loop, &metrics);
    rs.enabled = true;
    rs.url = "redis://127.0.0.1:" + std::to_string(port) + "/0";
    rs.host = "127.0.0.1";
    rs.port = uint16_t(port);
    rs.timeout = config::Duration(timeoutMs);
    client->configure(rs);
    svc = WorkerServices{&loop, client, &metrics};
    return runUntil(&loop, [&] { return client->isUp(); });
  }
  ~RedisEnv() {
    if (client == nullptr) return;
    client->closeAndDelete();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }

  // A request through `f` from `ip`, started now (its onRequestHeaders ran).
  std::unique_ptr<FakeConn> request(const RateLimitFactory& f, std::string ip) {
    auto c = FakeConn::make(svc, f, std::move(ip));
    CHECK(c->filter->onRequestHeaders(c->ctx) == Status::Stop);
    return c;
  }
  // Runs the loop for about `ms` without waiting on anything.
  void spin(int ms) {
    for (int i = 0; i < ms; ++i) {
      uv_run(&loop, UV_RUN_NOWAIT);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  static void cancel(std::unique_ptr<FakeConn>& c) {
    c->filter->onDestroy();
    c.reset();  // freed: a callback now would be a use-after-free (ASan)
  }
  bool finish(const std::vector<std::unique_ptr<FakeConn>>& conns, int ms = 5000) {
    return runUntil(
        &loop,
        [&] {
          for (auto& c : conns)
            if (c && c->resumed + c->replied == 0) return false;
          return true;
        },
        ms);
  }

  // One command through the client, waited for: the integer (or -1) and the string.
  struct Answer {
    RedisStatus status = RedisStatus::Disconnected;
    long long integer = -1;
    std::string str;
  };
  Answer command(std::initializer_list<std::string_view> argv) {
    struct Wait {
      bool done = false;
      Answer a;
    } w;
    auto h = client->command(
        argv,
        [](void* u, RedisStatus st, const redisReply* r) {
          auto* w = static_cast<Wait*>(u);
          w->done = true;
          w->a.status = st;
          if (r != nullptr && r->type == REDIS_REPLY_INTEGER) w->a.integer = r->integer;
          if (r != nullptr && r->str != nullptr) w->a.str.assign(r->str, r->len);
        },
        &w);
    if (!h) return {};
    REQUIRE(runUntil(&loop, [&] { return w.done; }));
    return w.a;
  }
};

// What `c` was told, as a GcraDecision (headers parsed back; times in whole seconds).
struct Seen {
  bool allowed = false;
  std::string remaining, reset, retryAfter;
};
Seen seen(const FakeConn& c) {
  auto header = [](const std::string& all, const std::string& name) {
    size_t at = all.find(name + ": ");
    if (at == std::string::npos) return std::string("?");
    at += name.size() + 2;
    return all.substr(at, all.find("\r\n", at) - at);
  };
  Seen s;
  s.allowed = c.resumed == 1 && c.replied == 0;
  s.remaining = header(c.responseHeaders(), "RateLimit-Remaining");
  s.reset = header(c.responseHeaders(), "RateLimit-Reset");
  if (c.replied == 1) s.retryAfter = header(c.extra, "Retry-After");
  return s;
}

}  // namespace

TEST_CASE("redis rate limit: exact, shared, cancellable, fails over and recovers") {
  RedisProc redis;
  if (!redis.start()) {
    MESSAGE("redis-server not available: skipped");
    return;
  }
  const int port = redis.port;
  uv_loop_t loop;
  uv_loop_init(&loop);
  observe::WorkerMetrics metrics;
  auto* client = new RedisClient(&loop, &metrics);
  config::RedisSettings rs;
  rs.enabled = true;
  rs.url = "redis://127.0.0.1:" + std::to_string(port) + "/3";
  rs.host = "127.0.0.1";
  rs.port = uint16_t(port);
  rs.db = 3;
  rs.timeout = config::Duration(200);
  client->configure(rs);
  WorkerServices svc{&loop, client, &metrics};
  REQUIRE(runUntil(&loop, [&] { return client->isUp(); }));
  CHECK(metrics.redisConnected == 1);

  LocalStoreRegistry stores;
  std::string name = "t" + std::to_string(port);
  RateLimitFactory open(name, rlSettings(50), rs, stores.get(name));

  // 80 requests in flight at once against a bucket of 50: exactly 50 pass.
  std::vector<std::unique_ptr<FakeConn>> conns;
  for (int i = 0; i < 80; ++i) {
    auto c = FakeConn::make(svc, open, "10.0.0.1");
    CHECK(c->filter->onRequestHeaders(c->ctx) == Status::Stop);
    conns.push_back(std::move(c));
  }
  REQUIRE(runUntil(&loop, [&] {
    for (auto& c : conns)
      if (c->resumed + c->replied == 0) return false;
    return true;
  }));
  int passed = 0, limited = 0;
  for (auto& c : conns) {
    if (c->resumed == 1) ++passed;
    if (c->replied == 1 && c->status == 429) {
      ++limited;
      CHECK(c->code == "rate_limited");
      CHECK(c->extra.starts_with("Retry-After: "));
      CHECK(c->ratelimit() == "limited");
    }
    CHECK(c->responseHeaders().find("RateLimit-Limit: 50\r\n") != std::string::npos);
    CHECK(c->responseHeaders().find("RateLimit-Policy: 50;w=3600\r\n") != std::string::npos);
  }
  CHECK(passed == 50);
  CHECK(limited == 30);
  CHECK(metrics.ratelimit.size() == 2);

  // A request that goes away while its call is pending never hears back.
  {
    RateLimitFactory other(name + "x", rlSettings(5), rs, stores.get(name + "x"));
    auto c = FakeConn::make(svc, other, "10.0.0.2");
    CHECK(c->filter->onRequestHeaders(c->ctx) == Status::Stop);
    c->filter->onDestroy();
    c->filter->~Filter();
    c->filter = nullptr;
    FakeConn* raw = c.get();
    c.reset();  // freed: a callback now would be a use-after-free (ASan)
    (void)raw;
    // Round trip something after it so the cancelled reply has surely arrived.
    bool pong = false;
    client->command(
        {"PING"}, [](void* u, RedisStatus, const redisReply*) { *static_cast<bool*>(u) = true; },
        &pong);
    REQUIRE(runUntil(&loop, [&] { return pong; }));
  }

  // SCRIPT FLUSH: the next call gets NOSCRIPT, reloads the script and still decides.
  bool flushed = false;
  client->command(
      {"SCRIPT", "FLUSH"},
      [](void* u, RedisStatus, const redisReply*) { *static_cast<bool*>(u) = true; }, &flushed);
  REQUIRE(runUntil(&loop, [&] { return flushed; }));
  {
    RateLimitFactory f3(name + "y", rlSettings(5), rs, stores.get(name + "y"));
    auto c = FakeConn::make(svc, f3, "10.0.0.3");
    CHECK(c->filter->onRequestHeaders(c->ctx) == Status::Stop);
    REQUIRE(runUntil(&loop, [&] { return c->resumed + c->replied > 0; }));
    CHECK(c->resumed == 1);
    CHECK(c->responseHeaders().find("RateLimit-Remaining: 4\r\n") != std::string::npos);
  }

  // Redis dies: the client notices, and while down requests never wait for it.
  redis.stop();
  // hiredis sees the EOF on its next read; the request below may race it either way.
  runUntil(
      &loop, [&] { return !client->isUp(); }, 3000);
  {
    auto c = FakeConn::make(svc, open, "10.0.0.9");
    Status s = c->filter->onRequestHeaders(c->ctx);
    if (s == Status::Stop && c->resumed + c->replied == 0) {
      REQUIRE(runUntil(
          &loop, [&] { return c->resumed + c->replied > 0; }, 2000));
    }
    CHECK(c->resumed + (s == Status::Continue ? 1 : 0) == 1);  // fail-open: local store
    CHECK(c->ratelimit() == "allowed");
  }
  REQUIRE(runUntil(
      &loop, [&] { return !client->isUp(); }, 3000));
  {
    config::RedisSettings closedRs = rs;
    closedRs.failureMode = config::RedisFailureMode::Closed;
    RateLimitFactory closed(name + "c", rlSettings(5), closedRs, stores.get(name + "c"));
    auto c = FakeConn::make(svc, closed, "10.0.0.9");
    CHECK(c->filter->onRequestHeaders(c->ctx) == Status::Stop);
    CHECK(c->replied == 1);  // synchronously: no waiting on a known-down Redis
    CHECK(c->status == 503);
    CHECK(c->code == "ratelimit_unavailable");
    CHECK(c->ratelimit() == "store_error");
  }

  // Redis comes back on the same port: the client reconnects by itself.
  REQUIRE(redis.start(port));
  REQUIRE(runUntil(
      &loop, [&] { return client->isUp(); }, 6000));
  CHECK(client->reconnects() > 0);
  CHECK(metrics.redisErrors[size_t(observe::RedisErrorKind::ConnectionLost)] +
            metrics.redisErrors[size_t(observe::RedisErrorKind::Connect)] >
        0);

  client->closeAndDelete();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("redis batch: one EVALSHA per turn, several limits, the one-by-one decisions") {
  RedisEnv env;
  if (!env.start(2000)) return;
  // Three limits with different rates and bursts; four clients; interleaved in one loop turn,
  // some keys many times (the script reads such a key once and writes it once).
  std::string tag = std::to_string(env.rs.port);
  std::vector<std::unique_ptr<RateLimitFactory>> fs;
  fs.push_back(std::make_unique<RateLimitFactory>("a" + tag, rlSettings(5), env.rs,
                                                  env.stores.get("a" + tag)));
  fs.push_back(std::make_unique<RateLimitFactory>("b" + tag, rlSettings(3, 2), env.rs,
                                                  env.stores.get("b" + tag)));
  fs.push_back(std::make_unique<RateLimitFactory>("c" + tag, rlSettings(2), env.rs,
                                                  env.stores.get("c" + tag)));
  uint64_t batches = env.client->batchesSent();
  std::vector<std::unique_ptr<FakeConn>> conns;
  std::vector<std::pair<size_t, std::string>> who;
  for (int i = 0; i < 96; ++i) {  // 8 per client and limit: every bucket overflows
    size_t f = size_t(i % 3);
    std::string ip = "10.1.0." + std::to_string((i * 7) % 4);
    conns.push_back(env.request(*fs[f], ip));
    who.emplace_back(f, ip);
  }
  REQUIRE(env.finish(conns));
  CHECK(env.client->batchesSent() == batches + 1);

  // gcraDecide one by one at one instant (0; a fresh bucket's TAT is "now") gives the same
  // remaining / reset / retry-after: all are relative to now.
  std::map<std::pair<size_t, std::string>, int64_t> tats;
  int allowed = 0;
  for (size_t i = 0; i < conns.size(); ++i) {
    // Plain variables, not a structured binding: clang 14 cannot capture one (INFO does).
    const size_t f = who[i].first;
    const std::string& ip = who[i].second;
    GcraDecision d = gcraDecide(tats[{f, ip}], 0, fs[f]->params());
    Seen s = seen(*conns[i]);
    INFO("request " << i << " mw " << f << " ip " << ip);
    CHECK(s.allowed == d.allowed);
    CHECK(s.remaining == std::to_string(d.remaining));
    CHECK(s.reset == std::to_string(ceilSeconds(d.resetUs)));
    if (!d.allowed) {
      CHECK(conns[i]->status == 429);
      CHECK(s.retryAfter == std::to_string(ceilSeconds(d.retryAfterUs, 1)));
    }
    allowed += d.allowed ? 1 : 0;
  }
  CHECK(allowed == 4 * (5 + 5 + 2));
  // Each bucket was written once, with the TAT and TTL of its last allowed request.
  for (const auto& [k, tat] : tats) {
    std::string key = "sluice:rl:" + std::string(fs[k.first]->name()) + ":ip:" + k.second;
    long long pttl = env.command({"PTTL", key}).integer;
    CHECK(pttl <= tat / 1000 + 1);
    CHECK(pttl > tat / 1000 - 2000);
  }

  // The next turn is a new batch, and sees what the first one left.
  auto c = env.request(*fs[2], "10.1.0.1");
  REQUIRE(runUntil(&env.loop, [&] { return c->resumed + c->replied > 0; }));
  CHECK(c->status == 429);
  CHECK(env.client->batchesSent() == batches + 2);
}

TEST_CASE("redis batch: more than kMaxBatch calls in one turn make several EVALSHAs, in order") {
  RedisEnv env;
  if (!env.start(2000)) return;
  std::string name = "big" + std::to_string(env.rs.port);
  RateLimitFactory f(name, rlSettings(280), env.rs, env.stores.get(name));
  uint64_t batches = env.client->batchesSent();
  std::vector<std::unique_ptr<FakeConn>> conns;
  conns.reserve(300);
  for (int i = 0; i < 300; ++i) conns.push_back(env.request(f, "10.2.0.1"));
  REQUIRE(env.finish(conns));
  CHECK(env.client->batchesSent() == batches + 2);  // 256 + 44
  for (size_t i = 0; i < conns.size(); ++i) {
    INFO("request " << i);
    Seen s = seen(*conns[i]);
    CHECK(s.allowed == (i < 280));
    CHECK(s.remaining == std::to_string(i < 280 ? 279 - i : 0));
  }
}

TEST_CASE("redis batch: cancelled before the send = left out, after = never called back") {
  RedisEnv env;
  if (!env.start(2000)) return;
  std::string name = "cx" + std::to_string(env.rs.port);
  RateLimitFactory f(name, rlSettings(5), env.rs, env.stores.get(name));
  auto key = [&](const char* ip) { return "sluice:rl:" + name + ":ip:" + ip; };
  uint64_t batches = env.client->batchesSent();

  // Same key three times, the middle one cancelled before the batch goes: the third sees one
  // token taken, not two; a cancelled call alone on its key leaves no key at all.
  std::vector<std::unique_ptr<FakeConn>> conns;
  conns.push_back(env.request(f, "10.3.0.1"));
  conns.push_back(env.request(f, "10.3.0.1"));
  conns.push_back(env.request(f, "10.3.0.1"));
  conns.push_back(env.request(f, "10.3.0.2"));
  RedisEnv::cancel(conns[1]);
  RedisEnv::cancel(conns[3]);
  REQUIRE(env.finish(conns));
  CHECK(env.client->batchesSent() == batches + 1);
  CHECK(seen(*conns[0]).remaining == "4");
  CHECK(seen(*conns[2]).remaining == "3");
  CHECK(env.command({"EXISTS", key("10.3.0.2")}).integer == 0);

  // Every call of a turn cancelled: no EVALSHA at all.
  {
    auto a = env.request(f, "10.3.0.3");
    auto b = env.request(f, "10.3.0.3");
    RedisEnv::cancel(a);
    RedisEnv::cancel(b);
    CHECK(env.command({"EXISTS", key("10.3.0.3")}).integer == 0);  // a round trip later
    CHECK(env.client->batchesSent() == batches + 1);
  }

  // Cancelled after the send (Redis stopped, so the batch is surely on the wire and not
  // answered): the reply's slice of the cancelled call is skipped, the others get theirs.
  env.redis.signal(SIGSTOP);
  std::vector<std::unique_ptr<FakeConn>> late;
  late.push_back(env.request(f, "10.3.0.4"));
  late.push_back(env.request(f, "10.3.0.4"));
  late.push_back(env.request(f, "10.3.0.4"));
  env.spin(20);  // the batch goes out (and stays unanswered)
  CHECK(env.client->batchesSent() == batches + 2);
  RedisEnv::cancel(late[0]);
  RedisEnv::cancel(late[1]);
  env.redis.signal(SIGCONT);
  REQUIRE(env.finish(late));
  CHECK(seen(*late[2]).remaining == "2");  // the two cancelled ones were decided by Redis
  CHECK(env.command({"PING"}).str == "PONG");
}

TEST_CASE("redis batch: a timeout or a lost connection fails every call of the batch") {
  RedisEnv env;
  if (!env.start(200)) return;
  std::string name = "fx" + std::to_string(env.rs.port);
  config::RedisSettings closedRs = env.rs;
  closedRs.failureMode = config::RedisFailureMode::Closed;
  RateLimitFactory closed(name, rlSettings(5), closedRs, env.stores.get(name));
  RateLimitFactory open(name + "o", rlSettings(3), env.rs, env.stores.get(name + "o"));

  auto check = [&](std::vector<std::unique_ptr<FakeConn>>& conns) {
    for (size_t i = 0; i < conns.size(); ++i) {
      INFO("request " << i);
      if (i % 2 == 0) {  // closed: 503, no decision
        CHECK(conns[i]->status == 503);
        CHECK(conns[i]->code == "ratelimit_unavailable");
        CHECK(conns[i]->ratelimit() == "store_error");
      } else {  // open: the local store decides, never unlimited
        CHECK(conns[i]->ratelimit() == (i / 2 < 3 ? "allowed" : "limited"));
      }
    }
  };

  // No answer within the timeout (Redis stopped).
  env.redis.signal(SIGSTOP);
  std::vector<std::unique_ptr<FakeConn>> conns;
  conns.reserve(12);
  for (int i = 0; i < 12; ++i)
    conns.push_back(env.request(i % 2 == 0 ? closed : open, "10.4.0." + std::to_string(i % 2)));
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(env.finish(conns, 3000));
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(150));
  check(conns);
  CHECK(!env.client->isUp());
  env.redis.signal(SIGCONT);
  REQUIRE(runUntil(&env.loop, [&] { return env.client->isUp(); }));

  // The connection is lost while a batch waits (long timeout: it is the loss that answers).
  env.rs.timeout = config::Duration(10000);
  env.client->configure(env.rs);
  REQUIRE(runUntil(&env.loop, [&] { return env.client->isUp(); }));
  RateLimitFactory open2(name + "p", rlSettings(3), env.rs, env.stores.get(name + "p"));
  RateLimitFactory closed2(name + "q", rlSettings(5), closedRs, env.stores.get(name + "q"));
  env.redis.signal(SIGSTOP);
  std::vector<std::unique_ptr<FakeConn>> lost;
  lost.reserve(12);
  for (int i = 0; i < 12; ++i)
    lost.push_back(env.request(i % 2 == 0 ? closed2 : open2, "10.4.1." + std::to_string(i % 2)));
  env.spin(20);  // the batch goes out (and stays unanswered)
  t0 = std::chrono::steady_clock::now();
  env.redis.stop();  // SIGKILL: the socket is reset under the waiting batch
  REQUIRE(env.finish(lost, 3000));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(2000));
  check(lost);
}
