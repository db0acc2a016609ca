// DownstreamConnection: one accepted client connection as a transport — the socket, the TLS
// session, reading into the worker's buffer, the write queue, its one deadline (header, idle,
// body, linger, trim) in the worker's timer heap, lingering close and close. The HTTP/1 codec
// above it turns bytes into exchanges (proxy/http1/server_codec.*); the exchange
// (proxy/exchange/exchange.*) does the proxying.
//
// Everything a request needs and an idle keep-alive connection does not (codec buffers, out
// queue, exchange) lives in a Stream taken from a per-worker free list when bytes arrive and
// given back when the connection goes quiet, so 10k idle connections cost only this object.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "proxy/exchange/exchange.h"
#include "proxy/http1/server_codec.h"
#include "proxy/net/out_queue.h"
#include "proxy/net/peer_counts.h"
#include "proxy/net/timer_heap.h"
#include "tls/tls_session.h"

namespace sluice {

class Worker;
struct ListenerSpec;

class DownstreamConnection final : private net::Timer,  // its one deadline, in the worker's heap
                                   private http1::Transport {
 public:
  // Takes the accepted socket `fd` from `peer` on the listener `spec`; the connection owns
  // itself from then on. `listenerKey` must be interned (internListenerKey()). `place` (may
  // be null) is the connection's place in the per-address counts, given back when it is gone.
  static void accept(Worker& w, int fd, const sockaddr_storage& peer,
                     const std::string* listenerKey, const ListenerSpec& spec,
                     net::PeerCounts::Place place);
  // The peer address as text (v4 or v6; v4-mapped v6 shown as v4; "-" when unknown).
  static void formatPeer(const sockaddr_storage& ss, char* out, size_t outLen);
  // A process-lifetime copy of a listener key (few distinct keys ever exist): connections
  // keep a pointer instead of a string.
  static const std::string* internListenerKey(const std::string& key);

  // After a reload (worker thread): streams in the free list let go of older snapshots.
  static void dropStaleSnapshots(const Worker& w);

  // Graceful shutdown: close now when idle, else after the current response.
  void beginShutdown();
  void forceClose() { close(); }
  // drain_timeout (worker thread): ends a tunnel through the pool, or marks a request in flight
  // to it so that its upstream connection is not pooled (Exchange::drainPool).
  Exchange::Drained drainPool(uint32_t poolNameId);

  DownstreamConnection* next = nullptr;  // worker's list
  DownstreamConnection* prev = nullptr;

 private:
  enum class State : uint8_t { Open, Lingering, Closed };
  struct Stream;

  DownstreamConnection(Worker& w, const std::string* listenerKey);
  ~DownstreamConnection() override;

  // --- http1::Transport ---
  net::OutQueue& out() override;
  void startReading() override;
  void stopReading() override;
  void flush() override;
  void closeAfterFlush() override;
  void lingerClose() override;
  void close() override;
  bool closed() const override { return state_ != State::Open; }
  void armTimer(uint64_t ms) override;
  void disarmTimer() override { deadline_ = 0; }
  void waitIdle(uint64_t idleMs) override;
  bool closing() const override;
  void safePoint() override { releaseStreamIfIdle(); }
  const config::ServerSettings& settings() const override;
  bool canSendFile() const override { return !tls_; }
  long sendFile(int fd, uint64_t offset, size_t len) override;
  long splicePipe(int pipeRd, size_t len) override;
  void awaitWritable() override;
  size_t unsentBytes() const override;

  void onCiphertext(const char* data, size_t len);
  void onPlaintext(const char* data, size_t len);
  void onEof();
  void answerPlainHttpOnTls();
  void onTimeout();
  // The answer is complete but the client has not taken all of it: wait client_idle_timeout,
  // again as long as bytes keep leaving (nginx's send_timeout), else close.
  void awaitDrain();

  static void onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onTimer(net::Timer* t);
  static void onWriteDone(void* self, int status);
  static void onShutdown(uv_shutdown_t* req, int status);
  static void onClosed(uv_handle_t* h);

  // Attaches a stream (codec ready for a request, out queue bound to the socket).
  Stream& stream();
  // Gives the stream back when nothing in it is still needed.
  void releaseStreamIfIdle();
  static void recycle(Stream* st);
  long sendFromFd(int fd, const uint64_t* offset, size_t len);

  Worker& w_;
  uv_tcp_t tcp_{};
  // TLS listeners: the session plus the context its SNI/ALPN callbacks use (kept alive by it;
  // one pointer per connection, nothing on plain listeners).
  struct ServerTls : tls::TlsSession {
    explicit ServerTls(tls::ServerTlsContextPtr c)
        : tls::TlsSession(c->defaultCtx(), true), ctx(std::move(c)) {}
    tls::ServerTlsContextPtr ctx;
  };
  std::unique_ptr<ServerTls> tls_;
  // sendfile(2) and splice(2) bypass libuv's write queue, so libuv cannot say when the socket is
  // writable again: a poll handle on a dup() of the socket does (made the first time a file send
  // blocks, kept until the connection closes).
  struct WritablePoll;
  WritablePoll* writable_ = nullptr;
  static void onWritable(uv_poll_t* p, int status, int events);
  Stream* s_ = nullptr;
  // What exchanges read about this connection (the peer address as text: trusted_proxies
  // parses it back only when configured).
  DownstreamInfo info_;
  char peerIp_[INET6_ADDRSTRLEN] = {0};
  State state_ = State::Open;
  bool reading_ = false;
  bool closeAfterFlush_ = false;
  bool shuttingDown_ = false;
  bool trimPending_ = false;   // the timer will first release the stream of an idle connection
  bool drainPending_ = false;  // the timer guards a finished answer still being written
  bool tlsFailed_ = false;     // a fatal TLS error: no close_notify, the session is not reused
  bool served_ = false;        // a stream was attached before (the accept header timer is over)
  uint32_t listenerNameId_ = 0;
  net::PeerCounts::Place peerPlace_ = nullptr;  // max_connections_per_ip
  uint64_t deadline_ = 0;  // loop ms; 0 = nothing to time (the heap entry may fire earlier)
  size_t drainMark_ = 0;   // unsentBytes() when awaitDrain() armed the timer
};

}  // namespace sluice
