// Upstream connections and the per-worker keep-alive pool.
//
// UpstreamConn is one TCP connection to a backend with its response parser. Its exchange is an
// explicit sequence (nginx style): connect -> send request -> read head -> stream body ->
// release (back to the pool) or close. Its owner for the duration of one request is an
// UpstreamHandler (the client stream); while idle in the pool it has none and any byte or EOF
// from the backend closes it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/http/http1_parser.h"
#include "proxy/net/out_queue.h"
#include "proxy/net/timer_heap.h"
#include "proxy/observe/metrics.h"
#include "proxy/upstream/pool.h"
#include "tls/tls_session.h"

namespace sluice::upstream {

class UpstreamConn;
class ConnPool;

class UpstreamHandler {
 public:
  virtual ~UpstreamHandler() = default;
  virtual void onUpstreamConnected(UpstreamConn* up) = 0;
  // Parser action, as Http1Parser::Handler::onHeadersComplete.
  virtual int onUpstreamHead(UpstreamConn* up, http::ResponseHead& head) = 0;
  // A 103 Early Hints before the final head (other interim responses are dropped).
  virtual void onUpstreamInterim(UpstreamConn* up, const http::ResponseHead& head) = 0;
  virtual bool onUpstreamBody(UpstreamConn* up, const char* data, size_t len) = 0;
  virtual void onUpstreamComplete(UpstreamConn* up) = 0;
  // The exchange failed. `responseBytes`: whether any response byte had arrived.
  virtual void onUpstreamError(UpstreamConn* up, observe::UpstreamErrorKind kind,
                               bool responseBytes) = 0;
  // Raw bytes after a 101 (tunnel mode).
  virtual void onUpstreamTunnelData(UpstreamConn* up, const char* data, size_t len) = 0;
  virtual void onUpstreamTunnelEof(UpstreamConn* up) = 0;
  // End of one read callback: flush what was queued for the client.
  virtual void afterUpstreamRead(UpstreamConn* up) = 0;
  // The write queue to the backend drained (backpressure release).
  virtual void onUpstreamDrained(UpstreamConn* up) = 0;
  // Splicing (a plain-TCP response body with a Content-Length): after a read that left
  // `remaining` body bytes to come, whether the handler takes them with spliceTo() from now
  // on. It then hears onUpstreamReadable() instead of onUpstreamBody(), and ends the body with
  // finishSplice().
  virtual bool onUpstreamSpliceable(UpstreamConn* /*up*/, uint64_t /*remaining*/) { return false; }
  virtual void onUpstreamReadable(UpstreamConn* /*up*/) {}
};

class UpstreamConn final : private net::Timer,  // its deadline, in the worker's heap
                           private http::Http1Parser::Handler {
 public:
  // A plain-TCP response body with at least this much still to come after a read may be
  // spliced (UpstreamHandler::onUpstreamSpliceable); shorter rests take the copy path.
  static constexpr uint64_t kSpliceMin = 64 * 1024;

  // `plainBuf` (readBufSize bytes) receives decrypted input when the pool uses TLS.
  UpstreamConn(uv_loop_t* loop, ConnPool& pool, BackendPtr backend, char* readBuf, char* plainBuf,
               size_t readBufSize);

  // Starts connecting (and, with `tls`, the TLS handshake, within the same timeout); the
  // handler hears onUpstreamConnected or onUpstreamError.
  void connect(UpstreamHandler* h, uint64_t connectTimeoutMs,
               const tls::ClientTlsContext* tls = nullptr, const std::string& serverName = {});
  bool tls() const { return tls_ != nullptr; }
  // Takes an idle pooled connection for a new request.
  void attach(UpstreamHandler* h);
  bool connected() const { return state_ != State::Connecting; }
  bool reused() const { return reused_; }

  net::OutQueue& out() { return out_; }
  int flush();
  // The request head is queued: start reading the response. The response timeout (first byte
  // within `responseTimeoutMs`, then no more than that between two reads) starts now when
  // `requestSent`, else at armResponseTimer() once the body is through.
  void startResponse(uint64_t responseTimeoutMs, bool headRequest, bool requestSent);
  void armResponseTimer();
  void pauseReading();
  void resumeReading();
  // Backpressure from the client: stop reading, and stop timing the backend (it is not the one
  // late) until resumeReading(), which restarts the response timeout.
  void holdForClient();
  void enterTunnel();
  // Tunnel: the client finished sending; FIN the backend once queued bytes are written.
  void shutdownWrite();

  // Splicing (see UpstreamHandler::onUpstreamSpliceable): moves up to `max` body bytes from the
  // socket into the pipe `pipeWr`. Returns the bytes moved, 0 when the socket has none now
  // (onUpstreamReadable follows while reading), or -1 when the backend closed or failed: the
  // connection has then failed (onUpstreamError was called).
  long spliceTo(int pipeWr, size_t max);
  // The spliced bytes (`n` in all) reached the client: the response is complete
  // (onUpstreamComplete follows at once).
  void finishSplice(uint64_t n);

  // Back to the pool (reusable) or closed. The handler is detached either way.
  void release(bool reusable, uint64_t idleTimeoutMs);
  void close();

  Backend& backend() { return *backend_; }
  const BackendPtr& backendPtr() const { return backend_; }

 private:
  friend class ConnPool;
  enum class State { Connecting, Busy, Idle, Tunnel, Closed };

  // Http1Parser::Handler
  int onHeadersComplete() override;
  bool onBody(const char* data, size_t len) override;
  void onMessageComplete() override;

  void fail(observe::UpstreamErrorKind kind);
  // Lazy like the client's: the deadline is a field; the heap entry moves only when it must
  // fire earlier (or fired early), so a keep-alive request costs no heap operation.
  void armTimer(uint64_t ms);
  void disarmTimer() { deadline_ = 0; }
  void onData(const char* data, size_t len);
  void onCiphertext(ssize_t nread, const char* data);
  void onPlainRead(ssize_t nread, const char* data);
  static void onConnect(uv_connect_t* req, int status);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void onTimer(net::Timer* t);
  static void onWriteDone(void* self, int status);
  static void onClosed(uv_handle_t* h);

  uv_tcp_t tcp_{};
  uint64_t deadline_ = 0;  // loop ms; 0 = nothing to time
  uv_connect_t connectReq_{};
  uv_shutdown_t shutdownReq_{};
  ConnPool& pool_;
  BackendPtr backend_;
  char* readBuf_;
  char* plainBuf_;
  size_t readBufSize_;
  std::unique_ptr<tls::TlsSession> tls_;
  UpstreamHandler* handler_ = nullptr;
  http::Http1Parser parser_;
  net::OutQueue out_;
  State state_ = State::Connecting;
  uint64_t responseTimeoutMs_ = 0;
  bool reused_ = false;
  bool gotBytes_ = false;
  bool reading_ = false;
  bool connectFailed_ = false;
  bool trailingGarbage_ = false;
  bool splicing_ = false;
  bool heldForClient_ = false;  // holdForClient(): the response timer restarts on resume  //
                                // readability goes to onUpstreamReadable, nothing is read
  UpstreamConn* nextIdle_ = nullptr;
  UpstreamConn* prevIdle_ = nullptr;
};

// Per-worker pool of idle keep-alive connections, by backend. Lock-free: one thread.
class ConnPool {
 public:
  // An idle connection to `backend` (over TLS or not), or nullptr.
  UpstreamConn* acquire(const Backend* backend, bool tls);
  void putIdle(UpstreamConn* c);
  void remove(UpstreamConn* c);
  void closeAll();
  // Closes the idle connections to `backend` (it went down or was ejected).
  void closeBackend(const Backend* backend);
  // Closes the idle connections to every backend of the pool named `pool` (drain_timeout);
  // returns how many.
  size_t closePool(std::string_view pool);
  // The worker's timer heap (set once, before any connection exists).
  void setTimers(net::TimerHeap* t) { timers_ = t; }
  net::TimerHeap& timers() { return *timers_; }

 private:
  struct List {
    UpstreamConn* head = nullptr;
  };
  // Key: the Backend's address with bit 0 set for TLS connections (Backends are aligned).
  static uintptr_t key(const Backend* b, bool tls) { return uintptr_t(b) | (tls ? 1 : 0); }
  static void closeDetached(std::vector<UpstreamConn*>& conns);
  std::unordered_map<uintptr_t, List> idle_;
  net::TimerHeap* timers_ = nullptr;
};

}  // namespace sluice::upstream
