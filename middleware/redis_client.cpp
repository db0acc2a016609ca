// RedisClient: configuration and teardown, the pool of outstanding commands, the end-of-turn
// flush (batches, then one write) and reply dispatch. The connection lifecycle is in
// redis_connection.cpp, scripts and batches in redis_script.cpp.
#include "middleware/redis_client.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>

namespace sluice::middleware {

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
  cancelResolve();
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
  cfg_.failureMode = s.failureMode;  // named in the log; no reconnect needed for it
  bool same = s.enabled == cfg_.enabled && s.url == cfg_.url && s.timeout == cfg_.timeout;
  if (same && state_ != State::Idle) return;
  if (same && !s.enabled) return;
  // Start over: drop whatever connection or attempt exists.
  if (ctx_ != nullptr) dropConnection(RedisStatus::Disconnected);
  cancelResolve();
  uv_timer_stop(&timer_);
  uv_timer_stop(&retryTimer_);
  setUp(false);
  state_ = State::Idle;
  backoffMs_ = 0;
  cfg_ = s;
  if (metrics_ != nullptr) metrics_->redisClients = s.enabled ? 1 : 0;
  if (s.enabled) connect();
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
    if (ev_ != nullptr) ev_->flush();  // the one write of this turn
    if (collecting_.empty() && (ev_ == nullptr || !ev_->writePending())) {
      flushArmed_ = false;
      uv_check_stop(&check_);
      uv_prepare_stop(&prepare_);
      return;
    }
  }
  // Still armed: the next prepare / check goes on.
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
  if (p->kind == Kind::Batch) {
    if (!pushBatchArgv(p)) return false;
  } else {
    for (const std::string& a : p->argv) pushArg(a.data(), a.size());
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

bool RedisClient::sendOrRelease(Pending* p) {
  if (send(p)) return true;
  release(p);
  return false;
}

RedisClient::Handle RedisClient::submit(Pending* p) {
  if (!sendOrRelease(p)) return {};
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
  return submit(p);
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

void RedisClient::unqueue(Pending* p) {
  if (!queue_.empty() && queue_.front() == p) {
    queue_.pop_front();
  } else if (auto it = std::find(queue_.begin(), queue_.end(), p); it != queue_.end()) {
    queue_.erase(it);
  }
}

void RedisClient::onReply(Pending* p, redisReply* r) {
  unqueue(p);
  if (r == nullptr) {
    onLost(p);
    return;
  }
  switch (p->kind) {
    case Kind::Internal:
      onHandshakeReply(p, r);
      return;
    case Kind::ScriptLoad:
      onScriptLoaded(p, r);
      return;
    case Kind::Batch:
      onBatchReply(p, r);
      return;
    case Kind::User:
      onUserReply(p, r);
      return;
  }
}

void RedisClient::onLost(Pending* p) {
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
}

void RedisClient::onUserReply(Pending* p, redisReply* r) {
  if (r->type == REDIS_REPLY_ERROR && metrics_ != nullptr)
    metrics_->redisError(observe::RedisErrorKind::Reply);
  Callback cb = p->cb;
  void* user = p->user;
  p->cb = nullptr;
  if (cb != nullptr) cb(user, RedisStatus::Ok, r);
  release(p);
  armTimer();
}

}  // namespace sluice::middleware
