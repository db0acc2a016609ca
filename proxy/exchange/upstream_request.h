// UpstreamRequest: the exchange's side toward the backends (Envoy's router upstream request).
// For one client request it picks a backend of the chosen pool (reserving one of its
// max_connections slots atomically, or waiting in the worker's SlotQueue), takes a pooled
// connection or dials one, sends the head, relays the body (re-chunked when the client sent it
// chunked), hands the response to the exchange, retries failed attempts as the pure retry
// policy says, and emits one AttemptOutcome per attempt.
#pragma once

#include <cstdint>
#include <string>

#include "proxy/http/rewrite.h"
#include "proxy/upstream/conn_pool.h"
#include "proxy/upstream/outcome.h"
#include "proxy/upstream/slot_queue.h"

namespace sluice {

class Worker;

// What the upstream request tells its exchange.
class UpstreamCallbacks {
 public:
  virtual ~UpstreamCallbacks() = default;
  // Connected and the head is queued: the request body may flow now.
  virtual void onUpstreamReady() = 0;
  // Response head; returns the parser action (Http1Parser::Handler codes).
  virtual int onUpstreamHeaders(http::ResponseHead& head) = 0;
  // An interim response to pass on (103 Early Hints), before the final head.
  virtual void onUpstreamInterim(const http::ResponseHead& head) = 0;
  virtual bool onUpstreamData(const char* data, size_t len) = 0;
  virtual void onUpstreamEnd() = 0;
  // No (more) attempt: the exchange answers `status` (502/503/504) unless a response started.
  virtual void onUpstreamFailed(int status, std::string_view code) = 0;
  // The response broke after it started (the client must see an abort).
  virtual void onUpstreamAborted() = 0;
  virtual void onUpstreamTunnelData(const char* data, size_t len) = 0;
  virtual void onUpstreamTunnelEnd() = 0;
  // End of one upstream read callback: flush toward the client, apply backpressure (only when
  // `current`: the connection still serves this exchange, which may have moved on).
  virtual void afterUpstreamRead(bool current) = 0;
  // The queue toward the backend drained below the high-water mark.
  virtual void onUpstreamDrained() = 0;
  // Arm (ms > 0) or clear (0) the exchange's deadline: waiting for a free slot.
  virtual void setUpstreamDeadline(uint64_t ms) = 0;
  // A plain-TCP response body has `remaining` bytes to come: true when the exchange takes them
  // with Upstream::spliceTo() from now on (it then hears onUpstreamReadable(), not
  // onUpstreamData()).
  virtual bool onUpstreamSpliceable(uint64_t /*remaining*/) { return false; }
  virtual void onUpstreamReadable() {}
};

// The exchange's handle on its upstream side (UpstreamRequest; a fake in the exchange's tests).
class Upstream {
 public:
  virtual ~Upstream() = default;
  // Starts attempt #1 toward `pool`. `head` and `info` stay valid for the exchange's life;
  // `info.hostOverride` is filled per backend when the client sent no Host. `sink` (a split
  // route's, or null) hears every attempt's outcome; it lives in the exchange's snapshot.
  virtual void start(const upstream::Pool* pool, const http::RequestHead* head,
                     const http::UpstreamRequestInfo& info, uint64_t hash, bool requestComplete,
                     const upstream::OutcomeSink* sink) = 0;
  virtual bool started() const = 0;
  virtual bool connected() const = 0;  // the head went out: body and tunnel bytes may follow
  virtual bool waiting() const = 0;    // for a max_connections slot
  // The waiting deadline passed: give up with a 503.
  virtual void onDeadline() = 0;
  // Request body toward the backend (views valid until the next flush).
  virtual void sendData(const char* data, size_t len) = 0;
  virtual void sendEnd() = 0;
  // The whole request is in: the response timeout starts now.
  virtual void requestComplete() = 0;
  // Tunnel bytes from the client, and its end.
  virtual void sendTunnelData(const char* data, size_t len) = 0;
  virtual void shutdownTunnel() = 0;
  // Flush toward the backend; false when the write failed (handled as a reset).
  virtual bool flush() = 0;
  virtual size_t queuedBytes() const = 0;
  virtual void pauseReading() = 0;
  virtual void resumeReading() = 0;
  // Backpressure from a slow client: pause reading and the response timeout (resumeReading()
  // restarts both); the client's progress is timed instead.
  virtual void holdForClient() { pauseReading(); }
  virtual void enterTunnel() = 0;
  // The response completed: the connection goes back to the pool when `reusable`.
  virtual void release(bool reusable) = 0;
  // Its pool was drained (drain_timeout): the connection of this request, now or after a
  // retry, is closed instead of pooled when the response ends.
  virtual void closeOnRelease() = 0;
  // Splicing the response body (after onUpstreamSpliceable): up to `max` bytes from the
  // backend's socket into the pipe `pipeWr`. Returns the bytes moved, 0 when there are none now,
  // -1 when the response broke (onUpstreamAborted was called).
  virtual long spliceTo(int /*pipeWr*/, size_t /*max*/) { return -1; }
  // The `n` spliced bytes reached the client: the response is complete (onUpstreamEnd follows).
  virtual void finishSplice(uint64_t /*n*/) {}
  // Drop the attempt (client gone, answered locally, broken response).
  virtual void abort() = 0;
  virtual void reset() = 0;  // back to a fresh request (after release/abort)
  virtual const upstream::Backend* backend() const = 0;
  virtual uint64_t startNs() const = 0;  // first connect
  virtual uint64_t headNs() const = 0;   // response head arrived
};

class UpstreamRequest final : public Upstream,
                              private upstream::UpstreamHandler,
                              private upstream::SlotWaiter {
 public:
  UpstreamRequest(Worker& w, UpstreamCallbacks& cb) : w_(w), cb_(cb) {}
  ~UpstreamRequest() override;

  void start(const upstream::Pool* pool, const http::RequestHead* head,
             const http::UpstreamRequestInfo& info, uint64_t hash, bool requestComplete,
             const upstream::OutcomeSink* sink) override;
  bool started() const override { return pool_ != nullptr; }
  bool connected() const override { return up_ != nullptr && ready_; }
  bool waiting() const override { return waitingSlot_; }
  void onDeadline() override;
  void sendData(const char* data, size_t len) override;
  void sendEnd() override;
  void requestComplete() override;
  void sendTunnelData(const char* data, size_t len) override;
  void shutdownTunnel() override;
  bool flush() override;
  size_t queuedBytes() const override;
  void pauseReading() override;
  void resumeReading() override;
  void holdForClient() override;
  void enterTunnel() override;
  void release(bool reusable) override;
  void closeOnRelease() override { closeOnRelease_ = true; }
  long spliceTo(int pipeWr, size_t max) override;
  void finishSplice(uint64_t n) override;
  void abort() override;
  void reset() override;
  const upstream::Backend* backend() const override { return backend_.get(); }
  uint64_t startNs() const override { return startNs_; }
  uint64_t headNs() const override { return headNs_; }

 private:
  // upstream::UpstreamHandler
  void onUpstreamConnected(upstream::UpstreamConn* up) override;
  int onUpstreamHead(upstream::UpstreamConn* up, http::ResponseHead& head) override;
  void onUpstreamInterim(upstream::UpstreamConn* up, const http::ResponseHead& head) override;
  bool onUpstreamBody(upstream::UpstreamConn* up, const char* data, size_t len) override;
  void onUpstreamComplete(upstream::UpstreamConn* up) override;
  void onUpstreamError(upstream::UpstreamConn* up, observe::UpstreamErrorKind kind,
                       bool responseBytes) override;
  void onUpstreamTunnelData(upstream::UpstreamConn* up, const char* data, size_t len) override;
  void onUpstreamTunnelEof(upstream::UpstreamConn* up) override;
  void afterUpstreamRead(upstream::UpstreamConn* up) override;
  void onUpstreamDrained(upstream::UpstreamConn* up) override;
  bool onUpstreamSpliceable(upstream::UpstreamConn* up, uint64_t remaining) override;
  void onUpstreamReadable(upstream::UpstreamConn* up) override;
  // upstream::SlotWaiter
  bool onSlotFreed() override;

  // One attempt: pick, reserve a slot, connect. False: waiting for a slot.
  bool attempt();
  void connect();
  void sendHead();
  void giveBackSlot();
  void emit(const upstream::AttemptOutcome& o);
  void stopWaiting();

  Worker& w_;
  UpstreamCallbacks& cb_;
  const upstream::Pool* pool_ = nullptr;
  const upstream::OutcomeSink* sink_ = nullptr;
  const http::RequestHead* head_ = nullptr;
  http::UpstreamRequestInfo info_;
  upstream::BackendPtr backend_;
  upstream::UpstreamConn* up_ = nullptr;
  const upstream::Backend* tried_[12] = {};  // retries <= 10; the first triedCount_ are valid
  size_t triedCount_ = 0;
  uint64_t hash_ = 0;
  uint64_t startNs_ = 0;    // first attempt
  uint64_t attemptNs_ = 0;  // current attempt
  uint64_t headNs_ = 0;     // response head arrived
  uint64_t waitDeadlineMs_ = 0;
  uint32_t attempts_ = 0;
  bool requestComplete_ = false;
  bool bodySent_ = false;
  bool staleRetried_ = false;
  bool ready_ = false;
  bool waitingSlot_ = false;
  bool headSeen_ = false;
  bool headRequest_ = false;
  bool hostFromBackend_ = false;  // no Host from the client: send the backend's address
  bool closeOnRelease_ = false;   // the pool was drained while this request was in flight
};

}  // namespace sluice
