#include "middleware/redis_client.h"

#include <arpa/inet.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
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

RedisBatchScript::RedisBatchScript(std::string body, unsigned args, unsigned replies)
    : script(std::move(body)), argsPerCall(args), repliesPerCall(replies) {}

// hiredis' event hooks for one connection, in place of <hiredis/adapters/libuv.h>, which calls
// uv_poll_start on every command and after every write (each one an epoll_ctl DEL, failing
// with ENOENT, then an ADD on the next poll). Here:
//  - the uv_poll is started / stopped only when the wanted events change;
//  - once connected, addWrite (every command) only marks output pending: the client's
//    end-of-turn flush writes it with redisAsyncHandleWrite(); only a write that could not
//    finish there (hiredis calls addWrite again from inside it) polls for writability;
//  - while connecting, addWrite polls for writability (that is how hiredis sees the connect
//    complete).
// The object lives until libuv has closed its uv_poll (after hiredis' cleanup hook), and the
// client counts it in openHandles_, so neither outlives the other.
struct RedisClient::Events {
  RedisClient* owner = nullptr;
  redisAsyncContext* ac = nullptr;  // nullptr once hiredis has cleaned up
  uv_poll_t poll;
  int mask = 0;               // events the uv_poll is started with
  bool writePending = false;  // output waits for the end-of-turn flush
  bool flushing = false;      // inside the flush's redisAsyncHandleWrite

  void setMask(int m) {
    if (m == mask) return;
    mask = m;
    if (m != 0) {
      uv_poll_start(&poll, m, onPoll);
    } else {
      uv_poll_stop(&poll);
    }
  }

  static void onPoll(uv_poll_t* h, int status, int events) {
    auto* e = static_cast<Events*>(h->data);
    if (e->ac == nullptr) return;
    if (status < 0) {
      // POLLERR: libuv has stopped the poll. Let hiredis read (or check the connect) for
      // whatever it was waiting for, so it finds the error now rather than at the timeout.
      events = e->mask;
      e->mask = 0;
    }
    if (events & UV_READABLE) redisAsyncHandleRead(e->ac);
    // `e` stays valid (freed in the uv_close callback), `e->ac` may be gone.
    if (e->ac != nullptr && (events & UV_WRITABLE)) redisAsyncHandleWrite(e->ac);
  }
  static void addRead(void* d) {
    auto* e = static_cast<Events*>(d);
    e->setMask(e->mask | UV_READABLE);
  }
  static void delRead(void* d) {
    auto* e = static_cast<Events*>(d);
    e->setMask(e->mask & ~UV_READABLE);
  }
  static void addWrite(void* d) {
    auto* e = static_cast<Events*>(d);
    if (e->mask & UV_WRITABLE) return;  // a write already waits for the socket: it takes this
    if (e->flushing || !(e->ac->c.flags & REDIS_CONNECTED)) {
      e->setMask(e->mask | UV_WRITABLE);
      return;
    }
    if (!e->writePending) {
      e->writePending = true;
      e->owner->armFlush();
    }
  }
  static void delWrite(void* d) {
    auto* e = static_cast<Events*>(d);
    e->setMask(e->mask & ~UV_WRITABLE);
  }
  static void cleanup(void* d) {
    // hiredis is freeing the context (the socket is closed right after this).
    auto* e = static_cast<Events*>(d);
    e->ac = nullptr;
    e->writePending = false;
    if (e->owner->ev_ == e) e->owner->ev_ = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&e->poll), [](uv_handle_t* h) {
      auto* ev = static_cast<Events*>(h->data);
      RedisClient* owner = ev->owner;
      delete ev;
      if (--owner->openHandles_ == 0) delete owner;
    });
  }
};

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
  uv_check_init(loop_, &check_);
  uv_prepare_init(loop_, &prepare_);
  timer_.data = this;
  retryTimer_.data = this;
  check_.data = this;
  prepare_.data = this;
  cfg_.enabled = false;
}

RedisClient::~RedisClient() {
  for (Pending* p : queue_) delete p;
  for (Pending* p : free_) delete p;
  for (Pending* p : collecting_) delete p;
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
  // Batches not sent yet are dropped unanswered (deleted with the client).
  flushArmed_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), closeThunk);
  uv_close(reinterpret_cast<uv_handle_t*>(&retryTimer_), closeThunk);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), closeThunk);
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), closeThunk);
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
  auto* e = new Events();
  e->owner = this;
  e->ac = c;
  if (uv_poll_init(loop_, &e->poll, c->c.fd) != 0) {
    delete e;  // not initialised: nothing to close
    return false;
  }
  e->poll.data = e;
  ++openHandles_;
  c->ev.data = e;
  c->ev.addRead = Events::addRead;
  c->ev.delRead = Events::delRead;
  c->ev.addWrite = Events::addWrite;
  c->ev.delWrite = Events::delWrite;
  c->ev.cleanup = Events::cleanup;
  ev_ = e;
  return true;
}

void RedisClient::armFlush() {
  if (flushArmed_ || state_ == State::Closing) return;
  flushArmed_ = true;
  uv_check_start(&check_, [](uv_check_t* h) { static_cast<RedisClient*>(h->data)->onFlush(); });
  uv_prepare_start(&prepare_,
                   [](uv_prepare_t* h) { static_cast<RedisClient*>(h->data)->onFlush(); });
}

void RedisClient::onFlush() {
  // Normally one round; callbacks of a failed batch may queue more (another rate_limit of the
  // same route), which the next round sends.
  for (int round = 0; round < 4; ++round) {
    // Batches first, so their EVALSHAs go out with the same write as everything else.
    while (!collecting_.empty()) {
      Pending* p = collecting_.front();
      collecting_.erase(collecting_.begin());
      dispatchBatch(p);
    }
    if (Events* e = ev_; e != nullptr && e->writePending) {
      e->writePending = false;
      e->flushing = true;
      redisAsyncHandleWrite(e->ac);  // may drop the connection; `e` stays valid
      e->flushing = false;
    }
    if (collecting_.empty() && (ev_ == nullptr || !ev_->writePending)) {
      flushArmed_ = false;
      uv_check_stop(&check_);
      uv_prepare_stop(&prepare_);
      return;
    }
  }
  // Still armed: the next prepare / check goes on.
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
  p->batch = nullptr;
  p->calls.clear();
  p->keys.clear();
  p->args.clear();
  p->keyEnds.clear();
  p->argEnds.clear();
  return p;
}

void RedisClient::release(Pending* p) {
  p->cb = nullptr;
  p->user = nullptr;
  free_.push_back(p);  // never deleted before the client: a stale handle may still point here
}

bool RedisClient::send(Pending* p) {
  if (ctx_ == nullptr) return false;
  argvPtrs_.clear();
  argvLens_.clear();
  auto push = [this](const char* d, size_t n) {
    argvPtrs_.push_back(d);
    argvLens_.push_back(n);
  };
  if (p->kind == Kind::Batch) {
    // EVALSHA sha N key.. args..: only the calls not cancelled by now.
    size_t live = 0;
    for (BatchCall& c : p->calls) {
      c.sent = c.cb != nullptr;
      live += c.sent ? 1 : 0;
    }
    if (live == 0) return false;
    const std::string& sha = p->batch->script.sha;
    auto nk = std::to_chars(p->numkeys, p->numkeys + sizeof p->numkeys, live);
    push("EVALSHA", 7);
    push(sha.data(), sha.size());
    push(p->numkeys, size_t(nk.ptr - p->numkeys));
    uint32_t from = 0;
    for (size_t i = 0; i < p->calls.size(); ++i) {
      uint32_t to = p->keyEnds[i];
      if (p->calls[i].sent) push(p->keys.data() + from, to - from);
      from = to;
    }
    const size_t per = p->batch->argsPerCall;
    from = 0;
    for (size_t i = 0; i < p->calls.size(); ++i) {
      for (size_t j = 0; j < per; ++j) {
        uint32_t to = p->argEnds[i * per + j];
        if (p->calls[i].sent) push(p->args.data() + from, to - from);
        from = to;
      }
    }
  } else {
    for (const std::string& a : p->argv) push(a.data(), a.size());
  }
  uint64_t timeout = uint64_t(cfg_.timeout.count());
  p->deadline = state_ == State::Ready ? uv_now(loop_) + timeout : connectDeadline_;
  if (redisAsyncCommandArgv(ctx_, replyThunk, p, int(argvPtrs_.size()), argvPtrs_.data(),
                            argvLens_.data()) != REDIS_OK)
    return false;
  if (p->kind == Kind::Batch) ++batchesSent_;
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

RedisClient::Handle RedisClient::batchEval(const RedisBatchScript& script, std::string_view key,
                                           std::initializer_list<std::string_view> args,
                                           BatchCallback cb, void* user) {
  if (!isUp() || cb == nullptr || args.size() != script.argsPerCall) return {};
  Pending* p = nullptr;
  for (auto it = collecting_.rbegin(); it != collecting_.rend(); ++it) {
    if ((*it)->batch == &script) {
      p = *it;
      break;
    }
  }
  if (p == nullptr || p->calls.size() >= kMaxBatch) {
    p = acquire();
    p->kind = Kind::Batch;
    p->batch = &script;
    collecting_.push_back(p);
    armFlush();
  }
  uint64_t seq = ++seq_;
  p->calls.push_back({seq, cb, user, false});
  p->keys.append(key);
  p->keyEnds.push_back(uint32_t(p->keys.size()));
  for (std::string_view a : args) {
    p->args.append(a);
    p->argEnds.push_back(uint32_t(p->args.size()));
  }
  return {p, seq, uint32_t(p->calls.size() - 1)};
}

void RedisClient::dispatchBatch(Pending* p) {
  bool live = std::any_of(p->calls.begin(), p->calls.end(),
                          [](const BatchCall& c) { return c.cb != nullptr; });
  if (!live) {  // every call was cancelled: nothing to send
    release(p);
    return;
  }
  if (isUp() && ensureScript(p->batch->script) && send(p)) return;
  // The connection went away since the calls were queued.
  finishBatch(p, RedisStatus::Disconnected, nullptr);
  release(p);
}

void RedisClient::finishBatch(Pending* p, RedisStatus status, const redisReply* r) {
  // With a reply: each call sent gets its slice (or Error when the reply is not an array of
  // the declared size). Without: every call still waiting gets `status`.
  const size_t per = p->batch->repliesPerCall;
  if (r != nullptr) {
    size_t sent = size_t(
        std::count_if(p->calls.begin(), p->calls.end(), [](const BatchCall& c) { return c.sent; }));
    if (r->type != REDIS_REPLY_ARRAY || r->elements != sent * per) {
      if (metrics_ != nullptr) metrics_->redisError(RedisErrorKind::Reply);
      r = nullptr;
      status = RedisStatus::Error;
    }
  }
  size_t slot = 0;
  for (size_t i = 0; i < p->calls.size(); ++i) {
    BatchCall& c = p->calls[i];  // callbacks may cancel other calls; none are added
    if (r != nullptr && !c.sent) continue;
    std::span<const redisReply* const> slice;
    if (r != nullptr) slice = {r->element + (slot++) * per, per};
    BatchCallback cb = c.cb;
    void* user = c.user;
    c.cb = nullptr;
    c.user = nullptr;
    if (cb != nullptr) cb(user, status, slice);
  }
}

void RedisClient::onBatchReply(Pending* p, redisReply* r) {
  if (r->type == REDIS_REPLY_ERROR && !p->retried && state_ == State::Ready &&
      std::string_view(r->str, r->len).starts_with("NOSCRIPT")) {
    // The script cache was flushed: load it again and retry the batch once (pipelined). Not
    // run at all, so no decision was made yet. send() fails when every call is cancelled.
    p->retried = true;
    const RedisScript* s = &p->batch->script;
    loaded_.erase(std::remove(loaded_.begin(), loaded_.end(), s), loaded_.end());
    if (ensureScript(*s) && send(p)) return;
  }
  finishBatch(p, RedisStatus::Ok, r);
  release(p);
  armTimer();
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
  if (p == nullptr) return;
  if (h.index != Handle::kNoIndex) {
    // A batch call: sequence numbers are never reused, so a stale handle matches nothing.
    if (h.index < p->calls.size() && p->calls[h.index].seq == h.seq) {
      p->calls[h.index].cb = nullptr;
      p->calls[h.index].user = nullptr;
    }
    return;
  }
  if (p->seq == h.seq) {
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
    RedisStatus st = failStatus_;
    if (p->kind == Kind::Batch) {
      if (state_ != State::Closing) finishBatch(p, st, nullptr);
      release(p);
      return;
    }
    Callback cb = p->cb;
    void* user = p->user;
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
    case Kind::Batch:
      onBatchReply(p, r);
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
