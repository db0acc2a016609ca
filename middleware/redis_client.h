// One asynchronous Redis connection per worker (hiredis async API on the worker's uv_loop, with
// our own event adapter instead of <hiredis/adapters/libuv.h>). Everything runs on that loop;
// nothing blocks:
//  - connect over TCP (host names resolved with uv_getaddrinfo, never a blocking lookup) or a
//    unix socket, then AUTH / SELECT from the url and a PING; only then isUp() is true;
//  - writes are deferred to the end of the loop turn: commands only append to hiredis' output
//    buffer, and a uv_check handle (plus a uv_prepare one, for anything queued after the check
//    ran) writes whatever the turn produced with one write(2). The uv_poll on the socket is
//    touched only when the wanted events really change (libuv's uv_poll_start costs an
//    epoll_ctl DEL + ADD each time), so a connected client normally just keeps polling for
//    reads and polls for writability only when a write could not finish;
//  - batchEval(): calls of one RedisBatchScript made during a loop turn are collected and sent
//    at that flush as ONE EVALSHA (KEYS = the calls' keys, ARGV = their args, in order; at most
//    kMaxBatch calls each); the reply, a flat array, is split back into one slice per call;
//  - one timer enforces [redis] timeout on the oldest outstanding command (replies come in
//    order, so the oldest always expires first). A timeout, a broken connection or a failed
//    handshake drops the connection: every outstanding command fails at once, isUp() turns
//    false (callers then skip Redis entirely instead of waiting) and a reconnect is scheduled
//    with exponential backoff (50 ms doubling to 2 s, with jitter);
//  - EVALSHA: each script is SCRIPT LOADed once per connection (pipelined before its first
//    EVALSHA); a NOSCRIPT answer (SCRIPT FLUSH, failover) re-loads it and retries once.
// Callbacks are plain function pointers + user pointer (no allocation per command) and can be
// cancelled: a request that goes away calls cancel(handle) and never hears back.
// Where: redis_client.cpp (commands, the end-of-turn flush, replies), redis_connection.cpp
// (connect, handshake, timeouts, reconnect), redis_script.cpp (scripts and batches),
// redis_events.cpp (the event adapter).
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/schema.h"
#include "middleware/redis_events.h"
#include "middleware/redis_script.h"
#include "proxy/observe/metrics.h"

struct redisAsyncContext;
struct redisReply;

namespace sluice::middleware {

enum class RedisStatus {
  Ok,            // `reply` is the answer (may be an error reply: check reply->type)
  Timeout,       // no answer within the timeout (the connection is dropped)
  Disconnected,  // the connection broke or was reconfigured before the answer
  Error,         // batchEval only: Redis answered the batch with an error (or a reply of the
                 // wrong shape); command() gets Ok and the error reply instead
};

class RedisClient final : private RedisEvents::Owner {
 public:
  // `reply` is valid only during the call (nullptr unless status == Ok).
  using Callback = void (*)(void* user, RedisStatus status, const redisReply* reply);
  // `reply` = this call's `repliesPerCall` elements when status == Ok (valid only during the
  // call), empty otherwise.
  using BatchCallback = void (*)(void* user, RedisStatus status,
                                 std::span<const redisReply* const> reply);

  struct Handle {
    static constexpr uint32_t kNoIndex = UINT32_MAX;
    void* p = nullptr;
    uint64_t seq = 0;
    uint32_t index = kNoIndex;  // batch calls: the slot in their batch
    explicit operator bool() const { return p != nullptr; }
  };

  // Most calls in one batch EVALSHA; more in one loop turn make several.
  static constexpr size_t kMaxBatch = 256;

  // `metrics` (optional) receives redisClients / redisConnected / redisErrors.
  RedisClient(uv_loop_t* loop, observe::WorkerMetrics* metrics);
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Applies [redis] settings: connects on first call; when url or timeout changed, drops the
  // connection (outstanding commands fail with Disconnected) and reconnects; `!s.enabled`
  // disconnects and stays idle. Cheap no-op when nothing changed, so call it on every new
  // snapshot.
  void configure(const config::RedisSettings& s);

  bool isUp() const { return state_ == State::Ready; }

  // Queues one call of `script` (`key` + exactly script.argsPerCall args) for the batch sent
  // at the end of this loop turn. Returns an empty handle (and never calls `cb`) when not up or
  // the arg count is wrong; otherwise `cb` is called exactly once, later (never from inside
  // batchEval), unless cancel() comes first: with Ok and this call's slice of the reply, or
  // with Timeout / Disconnected / Error, like every other call of the batch. A call cancelled
  // before the batch is sent is left out of it (a batch with no call left is not sent).
  Handle batchEval(const RedisBatchScript& script, std::string_view key,
                   std::initializer_list<std::string_view> args, BatchCallback cb, void* user);
  // Generic command (for tests and tools), same contract.
  Handle command(std::initializer_list<std::string_view> argv, Callback cb, void* user);

  // The callback of `h` will not be called. Safe with stale or empty handles.
  void cancel(Handle h);

  // Closes the connection and the timers; the object deletes itself once libuv has closed its
  // handles, so the loop must run on (uv_run until it has no handles does that). Outstanding
  // callbacks are NOT called. Call on the loop thread, instead of `delete`.
  void closeAndDelete();

  uint64_t reconnects() const { return reconnects_; }
  // Batch EVALSHAs sent so far (retries included), for tests.
  uint64_t batchesSent() const { return batchesSent_; }

 private:
  enum class State { Idle, Resolving, Connecting, Handshaking, Ready, Backoff, Closing };
  enum class Kind { User, Internal, ScriptLoad, Batch };
  struct BatchCall {
    uint64_t seq = 0;
    BatchCallback cb = nullptr;  // nullptr once cancelled or answered
    void* user = nullptr;
    bool sent = false;  // part of the EVALSHA on the wire (has a slice of the reply)
  };
  struct Pending {
    RedisClient* client = nullptr;
    uint64_t seq = 0;
    Kind kind = Kind::User;
    Callback cb = nullptr;
    void* user = nullptr;
    uint64_t deadline = 0;  // uv_now() ms
    bool retried = false;
    std::vector<std::string> argv;  // kept for a retry (capacity reused)
    // Kind::Batch: the calls, their keys and args (call i: key i, args i*A .. i*A+A-1, each
    // ending at the offset in *Ends; capacity reused).
    const RedisBatchScript* batch = nullptr;
    std::vector<BatchCall> calls;
    std::string keys, args;
    std::vector<uint32_t> keyEnds, argEnds;
    char numkeys[12] = {0};
  };
  struct Resolve;

  ~RedisClient();
  static void closeThunk(uv_handle_t* h);

  // Commands (redis_client.cpp).
  Pending* acquire();
  void release(Pending* p);
  bool send(Pending* p);
  // send(), or release(p) and false.
  bool sendOrRelease(Pending* p);
  Handle submit(Pending* p);  // sendOrRelease() for the public calls
  void armFlush();
  void onFlush();
  void unqueue(Pending* p);
  void onReply(Pending* p, redisReply* r);
  void onLost(Pending* p);
  void onUserReply(Pending* p, redisReply* r);
  static void replyThunk(redisAsyncContext* c, void* r, void* privdata);

  // The connection (redis_connection.cpp).
  void connect();
  void resolve();
  static void onResolved(uv_getaddrinfo_t* req, int status, addrinfo* res);
  void cancelResolve();
  void startTcp(const std::string& ip);
  // Takes a new hiredis context (or reports why there is none) and starts the handshake.
  void adopt(redisAsyncContext* c);
  bool attach(redisAsyncContext* c);
  void onConnected(int status);
  bool sendInternal(std::initializer_list<std::string_view> argv);
  void onHandshakeReply(Pending* p, const redisReply* r);
  void onDisconnected(int status);
  void fail(observe::RedisErrorKind kind, RedisStatus status, const char* what);
  void dropConnection(RedisStatus status);
  void scheduleReconnect();
  void onRetryTimer();
  void armTimer();
  void onTimer();
  void setUp(bool up);
  std::string where() const;            // for the log
  const char* failureModeText() const;  // the configured failure_mode, for the log
  static void connectThunk(const redisAsyncContext* c, int status);
  static void disconnectThunk(const redisAsyncContext* c, int status);
  void onWritePending() override;
  void onEventsDetached(RedisEvents* e) override;
  void onEventsClosed() override;

  // Scripts and batches (redis_script.cpp).
  bool ensureScript(const RedisScript& s);
  void onScriptLoaded(Pending* p, const redisReply* r);
  // Reloads the script after a NOSCRIPT answer and sends `p` again, once; false when `r` is
  // not that or the retry could not be sent.
  bool retryAfterNoscript(Pending* p, const RedisScript& s, const redisReply* r);
  // The argv of a batch EVALSHA (calls not cancelled by now); false when none is left.
  bool pushBatchArgv(Pending* p);
  void pushArg(const char* d, size_t n);
  void dispatchBatch(Pending* p);
  void onBatchReply(Pending* p, redisReply* r);
  void finishBatch(Pending* p, RedisStatus status, const redisReply* r);

  uv_loop_t* loop_;
  observe::WorkerMetrics* metrics_;
  config::RedisSettings cfg_;
  State state_ = State::Idle;
  redisAsyncContext* ctx_ = nullptr;
  Resolve* resolve_ = nullptr;
  uv_timer_t timer_;       // command / connect deadlines
  uv_timer_t retryTimer_;  // reconnect backoff
  uv_check_t check_;       // end-of-turn flush: batches, then the write
  uv_prepare_t prepare_;   // the same before the loop blocks (work queued after the check)
  bool flushArmed_ = false;
  RedisEvents* ev_ = nullptr;  // adapter of ctx_
  int openHandles_ = 4;        // + 1 per RedisEvents whose uv_poll is not closed yet
  uint64_t connectDeadline_ = 0;
  uint64_t backoffMs_ = 0;
  uint64_t reconnects_ = 0;
  uint64_t seq_ = 0;
  RedisStatus failStatus_ = RedisStatus::Disconnected;
  std::deque<Pending*> queue_;         // outstanding, in send order
  std::vector<Pending*> free_;         // never shrunk: stale handles stay safe to cancel
  std::vector<Pending*> collecting_;   // batches of this turn, not sent yet
  std::vector<const char*> argvPtrs_;  // argv of the command being sent (reused)
  std::vector<size_t> argvLens_;
  uint64_t batchesSent_ = 0;
  std::vector<const RedisScript*> loaded_;  // scripts loaded on this connection
  int handshakeLeft_ = 0;
  bool handshakeFailed_ = false;
  bool lostWhileReady_ = false;  // outstanding commands failed before the disconnect report
};

}  // namespace sluice::middleware
