// RedisClient's connection lifecycle: resolve and connect, the AUTH / SELECT / PING handshake,
// the connect and per-command deadlines, dropping a connection and reconnecting with backoff.
#include <arpa/inet.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>

#include <algorithm>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include "config/test_hosts.h"
#include "config/units.h"
#include "middleware/redis_client.h"
#include "proxy/observe/log.h"

namespace sluice::middleware {

using observe::RedisErrorKind;

struct RedisClient::Resolve {
  RedisClient* owner = nullptr;
  uv_getaddrinfo_t req;
};

namespace {
constexpr uint64_t kBackoffMinMs = 50;
constexpr uint64_t kBackoffMaxMs = 2000;
constexpr uint64_t kMinConnectTimeoutMs = 1000;

std::string firstIp(const addrinfo* res) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (res->ai_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(res->ai_addr)->sin_addr, buf,
              sizeof buf);
  } else if (res->ai_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(res->ai_addr)->sin6_addr, buf,
              sizeof buf);
  }
  return buf;
}
}  // namespace

void RedisClient::setUp(bool up) {
  if (metrics_ != nullptr) metrics_->redisConnected = up ? 1 : 0;
}

const char* RedisClient::failureModeText() const {
  // What rate limits do meanwhile, so the log line says what clients see.
  return cfg_.failureMode == config::RedisFailureMode::Open ? "open (local limits)"
                                                            : "closed (503 ratelimit_unavailable)";
}

std::string RedisClient::where() const {
  return cfg_.unixSocket ? cfg_.path : cfg_.host + ":" + std::to_string(cfg_.port);
}

void RedisClient::connect() {
  connectDeadline_ =
      uv_now(loop_) + std::max<uint64_t>(kMinConnectTimeoutMs, uint64_t(cfg_.timeout.count()));
  loaded_.clear();
  if (cfg_.unixSocket) {
    adopt(redisAsyncConnectUnix(cfg_.path.c_str()));
    return;
  }
  if (config::isIpLiteral(cfg_.host)) {
    startTcp(cfg_.host);
    return;
  }
  resolve();
}

void RedisClient::resolve() {
  std::vector<std::string> listed;
  if (config::testHostAddresses(cfg_.host, listed)) {  // tests: config/test_hosts.h
    if (listed.empty()) {
      std::string err = "cannot resolve " + cfg_.host + ": no address";
      fail(RedisErrorKind::Connect, RedisStatus::Disconnected, err.c_str());
    } else {
      startTcp(listed.front());
    }
    return;
  }
  // A host name (Docker / Kubernetes service): resolve on the libuv thread pool.
  state_ = State::Resolving;
  resolve_ = new Resolve();
  resolve_->owner = this;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(loop_, &resolve_->req, onResolved, cfg_.host.c_str(), nullptr, &hints);
  if (rc != 0) {
    delete resolve_;
    resolve_ = nullptr;
    fail(RedisErrorKind::Connect, RedisStatus::Disconnected, uv_strerror(rc));
    return;
  }
  armTimer();
}

void RedisClient::onResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* r = reinterpret_cast<Resolve*>(reinterpret_cast<char*>(req) - offsetof(Resolve, req));
  RedisClient* self = r->owner;
  std::string ip;
  if (status == 0 && res != nullptr) ip = firstIp(res);
  if (res != nullptr) uv_freeaddrinfo(res);
  delete r;
  if (self == nullptr) return;  // cancelled
  self->resolve_ = nullptr;
  if (ip.empty()) {
    std::string err = "cannot resolve " + self->cfg_.host + ": " +
                      (status != 0 ? uv_strerror(status) : "no address");
    self->fail(RedisErrorKind::Connect, RedisStatus::Disconnected, err.c_str());
    return;
  }
  self->startTcp(ip);
}

void RedisClient::cancelResolve() {
  if (resolve_ == nullptr) return;
  resolve_->owner = nullptr;
  uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_->req));
  resolve_ = nullptr;
}

void RedisClient::startTcp(const std::string& ip) {
  adopt(redisAsyncConnect(ip.c_str(), cfg_.port));
}

void RedisClient::adopt(redisAsyncContext* c) {
  state_ = State::Connecting;
  if (c == nullptr || c->err) {
    std::string err = c ? c->errstr : "out of memory";
    if (c) redisAsyncFree(c);
    fail(RedisErrorKind::Connect, RedisStatus::Disconnected, err.c_str());
    return;
  }
  c->data = this;
  if (!attach(c)) {
    redisAsyncFree(c);
    fail(RedisErrorKind::Connect, RedisStatus::Disconnected, "cannot poll the redis socket");
    return;
  }
  ctx_ = c;
  redisAsyncSetConnectCallback(c, connectThunk);  // polls for writability: the connect
  redisAsyncSetDisconnectCallback(c, disconnectThunk);
  armTimer();
}

bool RedisClient::attach(redisAsyncContext* c) {
  RedisEvents* e = RedisEvents::attach(loop_, c, this);
  if (e == nullptr) return false;
  ++openHandles_;
  ev_ = e;
  return true;
}

void RedisClient::onWritePending() {
  armFlush();
}

void RedisClient::onEventsDetached(RedisEvents* e) {
  if (ev_ == e) ev_ = nullptr;
}

void RedisClient::onEventsClosed() {
  if (--openHandles_ == 0) delete this;
}

void RedisClient::connectThunk(const redisAsyncContext* c, int status) {
  auto* self = static_cast<RedisClient*>(c->data);
  if (self == nullptr || self->ctx_ != c) return;
  if (status != REDIS_OK) {
    // hiredis frees the context after this callback.
    std::string err = c->errstr;
    self->ctx_ = nullptr;
    self->fail(RedisErrorKind::Connect, RedisStatus::Disconnected, err.c_str());
    return;
  }
  self->onConnected(status);
}

void RedisClient::onConnected(int) {
  state_ = State::Handshaking;
  handshakeFailed_ = false;
  handshakeLeft_ = 0;
  bool ok = true;
  std::string db = std::to_string(cfg_.db);
  if (!cfg_.password.empty()) ok = ok && sendInternal({"AUTH", cfg_.password});
  if (cfg_.db != 0) ok = ok && sendInternal({"SELECT", db});
  ok = ok && sendInternal({"PING"});
  if (!ok) fail(RedisErrorKind::Connect, RedisStatus::Disconnected, "cannot send handshake");
}

bool RedisClient::sendInternal(std::initializer_list<std::string_view> args) {
  Pending* p = acquire();
  p->kind = Kind::Internal;
  p->argv.resize(args.size());
  size_t i = 0;
  for (auto a : args) p->argv[i++].assign(a);
  if (!sendOrRelease(p)) return false;
  ++handshakeLeft_;
  return true;
}

void RedisClient::onHandshakeReply(Pending* p, const redisReply* r) {
  bool ok = r->type != REDIS_REPLY_ERROR;
  std::string err = ok ? "" : std::string(r->str, r->len);
  release(p);
  if (!ok) {
    handshakeFailed_ = true;
    fail(RedisErrorKind::Connect, RedisStatus::Disconnected, err.c_str());
    return;
  }
  if (--handshakeLeft_ == 0 && state_ == State::Handshaking && !handshakeFailed_) {
    state_ = State::Ready;
    if (backoffMs_ != 0 || reconnects_ == 0)
      observe::logEvent(config::LogLevel::Info, "redis connected", {{"redis", where()}});
    backoffMs_ = 0;
    setUp(true);
    armTimer();
  }
}

void RedisClient::disconnectThunk(const redisAsyncContext* c, int status) {
  auto* self = static_cast<RedisClient*>(c->data);
  if (self == nullptr || self->ctx_ != c) return;  // we dropped it ourselves
  self->ctx_ = nullptr;                            // hiredis frees it after this callback
  self->onDisconnected(status);
}

void RedisClient::onDisconnected(int) {
  if (state_ == State::Closing) return;
  bool wasReady = state_ == State::Ready || lostWhileReady_;
  lostWhileReady_ = false;
  setUp(false);
  if (metrics_ != nullptr)
    metrics_->redisError(wasReady ? RedisErrorKind::ConnectionLost : RedisErrorKind::Connect);
  observe::logEvent(config::LogLevel::Warn, "redis connection lost",
                    {{"redis", where()}, {"failure_mode", failureModeText()}});
  scheduleReconnect();
}

void RedisClient::fail(RedisErrorKind kind, RedisStatus status, const char* what) {
  if (state_ == State::Closing) return;
  bool wasReady = state_ == State::Ready;
  if (metrics_ != nullptr) metrics_->redisError(kind);
  if (wasReady || backoffMs_ == 0) {
    // Log transitions, not every retry of a long outage.
    observe::logEvent(config::LogLevel::Warn, "redis unavailable",
                      {{"redis", where()}, {"reason", what}, {"failure_mode", failureModeText()}});
  }
  dropConnection(status);
  scheduleReconnect();
}

void RedisClient::dropConnection(RedisStatus status) {
  setUp(false);
  if (state_ != State::Closing) state_ = State::Backoff;
  redisAsyncContext* c = ctx_;
  ctx_ = nullptr;
  if (c != nullptr) {
    failStatus_ = status;
    redisAsyncFree(c);  // every outstanding command is answered with a null reply
    failStatus_ = RedisStatus::Disconnected;
  }
}

void RedisClient::scheduleReconnect() {
  if (state_ == State::Closing || !cfg_.enabled) return;
  state_ = State::Backoff;
  uv_timer_stop(&timer_);
  backoffMs_ = backoffMs_ == 0 ? kBackoffMinMs : std::min(backoffMs_ * 2, kBackoffMaxMs);
  static thread_local std::minstd_rand rng{std::random_device{}()};
  uint64_t jitter = backoffMs_ / 5;
  uint64_t delay = backoffMs_ - jitter + (jitter ? rng() % (2 * jitter + 1) : 0);
  uv_timer_start(
      &retryTimer_, [](uv_timer_t* t) { static_cast<RedisClient*>(t->data)->onRetryTimer(); },
      delay, 0);
}

void RedisClient::onRetryTimer() {
  if (state_ != State::Backoff) return;
  ++reconnects_;
  connect();
}

void RedisClient::armTimer() {
  uint64_t deadline = 0;
  switch (state_) {
    case State::Resolving:
    case State::Connecting:
    case State::Handshaking:
      deadline = connectDeadline_;
      break;
    case State::Ready:
      if (queue_.empty()) {
        uv_timer_stop(&timer_);
        return;
      }
      deadline = queue_.front()->deadline;
      break;
    default:
      uv_timer_stop(&timer_);
      return;
  }
  uint64_t now = uv_now(loop_);
  uv_timer_start(
      &timer_, [](uv_timer_t* t) { static_cast<RedisClient*>(t->data)->onTimer(); },
      deadline > now ? deadline - now : 0, 0);
}

void RedisClient::onTimer() {
  uint64_t now = uv_now(loop_);
  switch (state_) {
    case State::Resolving:
    case State::Connecting:
    case State::Handshaking:
      if (now >= connectDeadline_) {
        fail(RedisErrorKind::Connect, RedisStatus::Timeout, "connect timed out");
        return;
      }
      break;
    case State::Ready:
      if (!queue_.empty() && queue_.front()->deadline <= now) {
        // Replies come in order: nothing has come back for a whole timeout. Treat the
        // connection as dead rather than let every request wait for it.
        fail(RedisErrorKind::Timeout, RedisStatus::Timeout, "command timed out");
        return;
      }
      break;
    default:
      return;
  }
  armTimer();
}

}  // namespace sluice::middleware
