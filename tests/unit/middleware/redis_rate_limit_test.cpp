// RedisClient + the rate_limit filter against a real redis-server (skipped when the binary is
// missing), driven on a private uv loop with fake FilterCallbacks.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "middleware/local_store.h"
#include "middleware/rate_limit.h"
#include "middleware/redis_client.h"
#include "proxy/http/message.h"
#include "proxy/observe/metrics.h"

using namespace sluice;
using namespace sluice::middleware;

namespace {

int freePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

struct RedisProc {
  pid_t pid = -1;
  int port = 0;
  bool start(int p) {
    if (access("/usr/bin/redis-server", X_OK) != 0) return false;
    port = p;
    pid = fork();
    if (pid == 0) {
      std::string ps = std::to_string(port);
      int devnull = ::open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      execl("/usr/bin/redis-server", "redis-server", "--port", ps.c_str(), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 500; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(uint16_t(port));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      close(fd);
      if (ok) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
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
  RequestContext ctx;
  WorkerServices* svc = nullptr;
  std::unique_ptr<Filter> filter;
  int resumed = 0, replied = 0, status = 0;
  std::string code, extra;
  void resume() override { ++resumed; }
  void sendLocalReply(int s, std::string_view c, std::string_view e) override {
    ++replied;
    status = s;
    code = c;
    extra = e;
  }
  RequestContext& context() override { return ctx; }
  WorkerServices& services() override { return *svc; }
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

config::MiddlewareConfig rlConfig(const std::string& name, uint64_t rate) {
  config::MiddlewareConfig mc;
  mc.name = name;
  mc.type = config::MiddlewareType::RateLimit;
  mc.rateLimit.rate = rate;
  mc.rateLimit.period = config::Duration(3600000);
  mc.rateLimit.store = config::RateLimitStore::Redis;
  return mc;
}

}  // namespace

TEST_CASE("redis rate limit: exact, shared, cancellable, fails over and recovers") {
  RedisProc redis;
  int port = freePort();
  if (!redis.start(port)) {
    MESSAGE("redis-server not available: skipped");
    return;
  }
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
  RateLimitFactory open(rlConfig(name, 50), rs, stores.get(name));

  // 80 requests in flight at once against a bucket of 50: exactly 50 pass.
  std::vector<std::unique_ptr<FakeConn>> conns;
  for (int i = 0; i < 80; ++i) {
    auto c = std::make_unique<FakeConn>();
    c->svc = &svc;
    c->ctx.clientIp = "10.0.0.1";
    c->filter = open.create(*c);
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
      CHECK(c->ctx.ratelimit == "limited");
    }
    CHECK(c->ctx.responseHeaders.find("RateLimit-Limit: 50\r\n") != std::string::npos);
    CHECK(c->ctx.responseHeaders.find("RateLimit-Policy: 50;w=3600\r\n") != std::string::npos);
  }
  CHECK(passed == 50);
  CHECK(limited == 30);
  CHECK(metrics.ratelimit.size() == 2);

  // A request that goes away while its call is pending never hears back.
  {
    RateLimitFactory other(rlConfig(name + "x", 5), rs, stores.get(name + "x"));
    auto c = std::make_unique<FakeConn>();
    c->svc = &svc;
    c->ctx.clientIp = "10.0.0.2";
    c->filter = other.create(*c);
    CHECK(c->filter->onRequestHeaders(c->ctx) == Status::Stop);
    c->filter->onDestroy();
    c->filter.reset();
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
    RateLimitFactory f3(rlConfig(name + "y", 5), rs, stores.get(name + "y"));
    FakeConn c;
    c.svc = &svc;
    c.ctx.clientIp = "10.0.0.3";
    c.filter = f3.create(c);
    CHECK(c.filter->onRequestHeaders(c.ctx) == Status::Stop);
    REQUIRE(runUntil(&loop, [&] { return c.resumed + c.replied > 0; }));
    CHECK(c.resumed == 1);
    CHECK(c.ctx.responseHeaders.find("RateLimit-Remaining: 4\r\n") != std::string::npos);
  }

  // Redis dies: the client notices, and while down requests never wait for it.
  redis.stop();
  // hiredis sees the EOF on its next read; the request below may race it either way.
  runUntil(
      &loop, [&] { return !client->isUp(); }, 3000);
  {
    FakeConn c;
    c.svc = &svc;
    c.ctx.clientIp = "10.0.0.9";
    c.filter = open.create(c);
    Status s = c.filter->onRequestHeaders(c.ctx);
    if (s == Status::Stop && c.resumed + c.replied == 0) {
      REQUIRE(runUntil(
          &loop, [&] { return c.resumed + c.replied > 0; }, 2000));
    }
    CHECK(c.resumed + (s == Status::Continue ? 1 : 0) == 1);  // fail-open: local store
    CHECK(c.ctx.ratelimit == "allowed");
  }
  REQUIRE(runUntil(
      &loop, [&] { return !client->isUp(); }, 3000));
  {
    config::RedisSettings closedRs = rs;
    closedRs.failureMode = config::RedisFailureMode::Closed;
    RateLimitFactory closed(rlConfig(name + "c", 5), closedRs, stores.get(name + "c"));
    FakeConn c;
    c.svc = &svc;
    c.ctx.clientIp = "10.0.0.9";
    c.filter = closed.create(c);
    CHECK(c.filter->onRequestHeaders(c.ctx) == Status::Stop);
    CHECK(c.replied == 1);  // synchronously: no waiting on a known-down Redis
    CHECK(c.status == 503);
    CHECK(c.code == "ratelimit_unavailable");
    CHECK(c.ctx.ratelimit == "store_error");
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
