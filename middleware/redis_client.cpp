#include "middleware/redis_client.h"

#include <arpa/inet.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "config/units.h"
#include "proxy/observe/log.h"

namespace sluice::middleware {

using observe::RedisErrorKind;

RedisScript::RedisScript(std::string b) : body(std::move(b)) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(body.data(), body.size(), md, &len, EVP_sha1(), nullptr);
  static const char* kHex = "0123456789abcdef";
  for (unsigned i = 0; i < len; ++i) {
    sha.push_back(kHex[md[i] >> 4]);
    sha.push_back(kHex[md[i] & 15]);
  }
}

struct RedisClient::Resolve {
  RedisClient* owner = nullptr;
  uv_getaddrinfo_t req;
};

namespace {
constexpr uint64_t kBackoffMinMs = 50;
constexpr uint64_t kBackoffMaxMs = 2000;
constexpr uint64_t kMinConnectTimeoutMs = 1000;
}  // namespace

RedisClient::RedisClient(uv_loop_t* loop, observe::WorkerMetrics* metrics)
    : loop_(loop), metrics_(metrics) {
  uv_timer_init(loop_, &timer_);
  uv_timer_init(loop_, &retryTimer_);
  timer_.data = this;
  retryTimer_.data = this;
  cfg_.enabled = false;
}

RedisClient::~RedisClient() {
  for (Pending* p : queue_) delete p;
  for (Pending* p : free_) delete p;
}

void RedisClient::closeAndDelete() {
  state_ = State::Closing;
  setUp(false);
  if (metrics_ != nullptr) metrics_->redisClients = 0;
  if (redisAsyncContext* c = ctx_) {
    ctx_ = nullptr;
    redisAsyncFree(c);  // outstanding callbacks run now, with no user callback (Closing)
  }
  if (resolve_ != nullptr) {
    resolve_->owner = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_->req));
    resolve_ = nullptr;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), closeThunk);
  uv_close(reinterpret_cast<uv_handle_t*>(&retryTimer_), closeThunk);
}

void RedisClient::closeThunk(uv_handle_t* h) {
  auto* self = static_cast<RedisClient*>(h->data);
  if (--self->openHandles_ == 0) delete self;
}

void RedisClient::configure(const config::RedisSettings& s) {
  if (state_ == State::Closing) return;
  bool same = s.enabled == cfg_.enabled && s.url == cfg_.url && s.timeout == cfg_.timeout;
  if (same && state_ != State::Idle) return;
  if (same && !s.enabled) return;
  // Start over: drop whatever connection or attempt exists.
  if (ctx_ != nullptr) dropConnection(RedisStatus::Disconnected);
  if (resolve_ != nullptr) {
    resolve_->owner = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_->req));
    resolve_ = nullptr;
  }
  uv_timer_stop(&timer_);
  uv_timer_stop(&retryTimer_);
  setUp(false);
  state_ = State::Idle;
  backoffMs_ = 0;
  cfg_ = s;
  if (metrics_ != nullptr) metrics_->redisClients = s.enabled ? 1 : 0;
  if (s.enabled) connect();
}

void RedisClient::setUp(bool up) {
  if (metrics_ != nullptr) metrics_->redisConnected = up ? 1 : 0;
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
  // A host name (Docker / Kubernetes service): resolve on the libuv thread pool.
  state_ = State::Resolving;
  resolve_ = new Resolve();
  resolve_->owner = this;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(
      loop_, &resolve_->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* r = reinterpret_cast<Resolve*>(reinterpret_cast<char*>(req) - offsetof(Resolve, req));
        RedisClient* self = r->owner;
        std::string ip;
        if (status == 0 && res != nullptr) {
          char buf[INET6_ADDRSTRLEN] = {0};
          if (res->ai_family == AF_INET) {
            inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf,
                      sizeof buf);
          } else if (res->ai_family == AF_INET6) {
            inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr, buf,
                      sizeof buf);
          }
          ip = buf;
        }
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
      },
      cfg_.host.c_str(), nullptr, &hints);
  if (rc != 0) {
    delete resolve_;
    resolve_ = nullptr;
    fail(RedisErrorKind::Connect, RedisStatus::Disconnected, uv_strerror(rc));
    return;
  }
  armTimer();
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
  ctx_ = c;
  redisLibuvAttach(c, loop_);
  redisAsyncSetConnectCallback(c, connectThunk);
  redisAsyncSetDisconnectCallback(c, disconnectThunk);
  armTimer();
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
  std::string where = cfg_.unixSocket ? cfg_.path : cfg_.host + ":" + std::to_string(cfg_.port);
  observe::logEvent(config::LogLevel::Warn, "redis connection lost", {{"redis", where}});
  scheduleReconnect();
}

void RedisClient::fail(RedisErrorKind kind, RedisStatus status, const char* what) {
  if (state_ == State::Closing) return;
  bool wasReady = state_ == State::Ready;
  if (metrics_ != nullptr) metrics_->redisError(kind);
  if (wasReady || backoffMs_ == 0) {
    // Log transitions, not every retry of a long outage.
    std::string where = cfg_.unixSocket ? cfg_.path : cfg_.host + ":" + std::to_string(cfg_.port);
    observe::logEvent(config::LogLevel::Warn, "redis unavailable",
                      {{"redis", where}, {"reason", what}});
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

RedisClient::Pending* RedisClient::acquire() {
  Pending* p;
  if (free_.empty()) {
    p = new Pending();
    p->client = this;
  } else {
    p = free_.back();
    free_.pop_back();
  }
  p->seq = ++seq_;
  p->cb = nullptr;
  p->user = nullptr;
  p->script = nullptr;
  p->retried = false;
  p->kind = Kind::User;
  return p;
}

void RedisClient::release(Pending* p) {
  p->cb = nullptr;
  p->user = nullptr;
  if (free_.size() < 4096) {
    free_.push_back(p);
  } else {
    delete p;
  }
}

bool RedisClient::send(Pending* p) {
  if (ctx_ == nullptr) return false;
  const char* argv[16];
  size_t lens[16];
  size_t n = std::min<size_t>(p->argv.size(), 16);
  for (size_t i = 0; i < n; ++i) {
    argv[i] = p->argv[i].data();
    lens[i] = p->argv[i].size();
  }
  uint64_t timeout = uint64_t(cfg_.timeout.count());
  p->deadline = state_ == State::Ready ? uv_now(loop_) + timeout : connectDeadline_;
  if (redisAsyncCommandArgv(ctx_, replyThunk, p, int(n), argv, lens) != REDIS_OK) return false;
  queue_.push_back(p);
  if (queue_.size() == 1 && state_ == State::Ready) armTimer();
  return true;
}

bool RedisClient::sendInternal(std::initializer_list<std::string_view> args) {
  Pending* p = acquire();
  p->kind = Kind::Internal;
  p->argv.resize(args.size());
  size_t i = 0;
  for (auto a : args) p->argv[i++].assign(a);
  if (!send(p)) {
    release(p);
    return false;
  }
  ++handshakeLeft_;
  return true;
}

bool RedisClient::ensureScript(const RedisScript& s) {
  if (std::find(loaded_.begin(), loaded_.end(), &s) != loaded_.end()) return true;
  Pending* p = acquire();
  p->kind = Kind::ScriptLoad;
  p->argv.resize(3);
  p->argv[0] = "SCRIPT";
  p->argv[1] = "LOAD";
  p->argv[2] = s.body;
  if (!send(p)) {
    release(p);
    return false;
  }
  loaded_.push_back(&s);
  return true;
}

RedisClient::Handle RedisClient::evalsha(const RedisScript& script, std::string_view key,
                                         std::initializer_list<std::string_view> args, Callback cb,
                                         void* user) {
  if (!isUp() || args.size() > 11) return {};
  if (!ensureScript(script)) return {};
  Pending* p = acquire();
  p->cb = cb;
  p->user = user;
  p->script = &script;
  p->argv.resize(4 + args.size());
  p->argv[0] = "EVALSHA";
  p->argv[1] = script.sha;
  p->argv[2] = "1";
  p->argv[3].assign(key);
  size_t i = 4;
  for (auto a : args) p->argv[i++].assign(a);
  if (!send(p)) {
    release(p);
    return {};
  }
  return {p, p->seq};
}

RedisClient::Handle RedisClient::command(std::initializer_list<std::string_view> args, Callback cb,
                                         void* user) {
  if (!isUp() || args.size() > 16 || args.size() == 0) return {};
  Pending* p = acquire();
  p->cb = cb;
  p->user = user;
  p->argv.resize(args.size());
  size_t i = 0;
  for (auto a : args) p->argv[i++].assign(a);
  if (!send(p)) {
    release(p);
    return {};
  }
  return {p, p->seq};
}

void RedisClient::cancel(Handle h) {
  auto* p = static_cast<Pending*>(h.p);
  if (p != nullptr && p->seq == h.seq) {
    p->cb = nullptr;
    p->user = nullptr;
  }
}

void RedisClient::replyThunk(redisAsyncContext*, void* r, void* privdata) {
  auto* p = static_cast<Pending*>(privdata);
  p->client->onReply(p, static_cast<redisReply*>(r));
}

void RedisClient::onReply(Pending* p, redisReply* r) {
  if (!queue_.empty() && queue_.front() == p) {
    queue_.pop_front();
  } else if (auto it = std::find(queue_.begin(), queue_.end(), p); it != queue_.end()) {
    queue_.erase(it);
  }
  if (r == nullptr) {
    // The connection is going away (dropped by us, or lost: hiredis answers every outstanding
    // command before it reports the disconnect). From now on nobody should queue on it.
    if (state_ == State::Ready || state_ == State::Handshaking) {
      lostWhileReady_ = state_ == State::Ready;
      setUp(false);
      state_ = State::Backoff;
    }
    Callback cb = p->cb;
    void* user = p->user;
    RedisStatus st = failStatus_;
    release(p);
    if (cb != nullptr && state_ != State::Closing) cb(user, st, nullptr);
    return;
  }
  switch (p->kind) {
    case Kind::Internal: {
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
        if (backoffMs_ != 0 || reconnects_ == 0) {
          std::string where =
              cfg_.unixSocket ? cfg_.path : cfg_.host + ":" + std::to_string(cfg_.port);
          observe::logEvent(config::LogLevel::Info, "redis connected", {{"redis", where}});
        }
        backoffMs_ = 0;
        setUp(true);
        armTimer();
      }
      return;
    }
    case Kind::ScriptLoad:
      if (r->type == REDIS_REPLY_ERROR) {
        if (metrics_ != nullptr) metrics_->redisError(RedisErrorKind::Reply);
        observe::logEvent(config::LogLevel::Error, "redis SCRIPT LOAD failed",
                          {{"error", std::string_view(r->str, r->len)}});
        loaded_.clear();  // try again with the next command
      }
      release(p);
      armTimer();
      return;
    case Kind::User:
      break;
  }
  if (r->type == REDIS_REPLY_ERROR && p->script != nullptr && !p->retried &&
      std::string_view(r->str, r->len).starts_with("NOSCRIPT") && p->cb != nullptr &&
      state_ == State::Ready) {
    // The script cache was flushed: load it again and retry this command once (pipelined).
    p->retried = true;
    loaded_.erase(std::remove(loaded_.begin(), loaded_.end(), p->script), loaded_.end());
    if (ensureScript(*p->script) && send(p)) return;
  }
  if (r->type == REDIS_REPLY_ERROR && metrics_ != nullptr)
    metrics_->redisError(RedisErrorKind::Reply);
  Callback cb = p->cb;
  void* user = p->user;
  p->cb = nullptr;
  if (cb != nullptr) cb(user, RedisStatus::Ok, r);
  release(p);
  armTimer();
}

}  // namespace sluice::middleware
