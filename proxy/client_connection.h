// ClientConnection: one downstream HTTP/1.x connection and the one request it is working on
// (requests on a connection are handled in order, so pipelined requests wait in `stash_`
// and get their responses in order). It parses the request, routes it, drives the upstream
// exchange through UpstreamConn, streams bodies both ways with backpressure, and answers
// errors itself through sendLocalReply().
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

#include "proxy/http/http1_parser.h"
#include "proxy/http/rewrite.h"
#include "proxy/net/out_queue.h"
#include "proxy/net/timer_heap.h"
#include "proxy/snapshot.h"
#include "proxy/upstream/conn_pool.h"
#include "tls/tls_session.h"

namespace sluice {

class Worker;

class ClientConnection final : private net::Timer,  // its one deadline, in the worker's heap
                               private http::Http1Parser::Handler,
                               private upstream::UpstreamHandler,
                               private middleware::FilterCallbacks {
 public:
  // Accepts one connection from `server`; the connection owns itself from then on.
  // `listenerKey` must be interned (internListenerKey()).
  static void accept(Worker& w, uv_stream_t* server, const std::string* listenerKey);
  // A process-lifetime copy of a listener key (few distinct keys ever exist): connections
  // keep a pointer instead of a string.
  static const std::string* internListenerKey(const std::string& key);

  // Graceful shutdown: close now when idle, else after the current response.
  void beginShutdown();
  void forceClose() { close(); }

  ClientConnection* next = nullptr;  // worker's list
  ClientConnection* prev = nullptr;

 private:
  enum class State : uint8_t { ReadingHead, Proxying, Tunnel, Lingering, Closed };

  ClientConnection(Worker& w, SnapshotPtr snap, const ListenerSpec* listener);
  ~ClientConnection();

  // --- Http1Parser::Handler (request side) ---
  int onHeadersComplete() override;
  bool onBody(const char* data, size_t len) override;
  void onMessageComplete() override;

  // --- upstream::UpstreamHandler ---
  void onUpstreamConnected(upstream::UpstreamConn* up) override;
  int onUpstreamHead(upstream::UpstreamConn* up, http::ResponseHead& head) override;
  bool onUpstreamBody(upstream::UpstreamConn* up, const char* data, size_t len) override;
  void onUpstreamComplete(upstream::UpstreamConn* up) override;
  void onUpstreamError(upstream::UpstreamConn* up, observe::UpstreamErrorKind kind,
                       bool responseBytes) override;
  void onUpstreamTunnelData(upstream::UpstreamConn* up, const char* data, size_t len) override;
  void onUpstreamTunnelEof(upstream::UpstreamConn* up) override;
  void afterUpstreamRead(upstream::UpstreamConn* up) override;
  void onUpstreamDrained(upstream::UpstreamConn* up) override;

  // --- middleware::FilterCallbacks ---
  void resume() override;
  void sendLocalReply(int status, std::string_view code, std::string_view extraHeaders) override;
  middleware::RequestContext& context() override { return stream().ex.ctx; }
  middleware::WorkerServices& services() override;

  // Request phases.
  void runFilters();
  void proceedUpstream();
  void destroyFilters();
  void filtersOnResponse(int status);
  void onCiphertext(const char* data, size_t len);
  void onPlaintext(const char* data, size_t len);
  void feed(const char* data, size_t len);
  void feedStash();
  void onRequestHead();
  void routeRequest();
  void pickAndConnect();
  bool waitForBackend(uint64_t nowMs);
  void sendRequestHead();
  void finishRequest();
  void startNextRequest();
  void sendLocalReply(int status, std::string_view code, bool close,
                      std::string_view extraHeaders = {});
  bool answerHealth(std::string_view path);
  void onParseError();

  // I/O helpers.
  void startReading();
  void stopReading();
  void flushClient();
  void flushUpstream();
  void armTimer(uint64_t ms);
  void disarmTimer();
  void closeAfterFlush();
  void lingerClose();
  void close();
  void releaseUpstream(bool reusable);
  void abortUpstream();

  static void onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onTimer(net::Timer* t);
  static void onWriteDone(void* self, int status);
  static void onShutdown(uv_shutdown_t* req, int status);
  static void onClosed(uv_handle_t* h);

  Worker& w_;
  SnapshotPtr snap_;
  const ListenerSpec* listener_;    // in snap_
  const std::string* listenerKey_;  // interned (internListenerKey): lives for the process
  uv_tcp_t tcp_{};
  // TLS listeners: the session plus the context its SNI/ALPN callbacks use (kept alive by it;
  // one pointer per connection, nothing on plain listeners).
  struct ServerTls : tls::TlsSession {
    ServerTls(tls::ServerTlsContextPtr c)
        : tls::TlsSession(c->defaultCtx(), true), ctx(std::move(c)) {}
    tls::ServerTlsContextPtr ctx;
  };
  std::unique_ptr<ServerTls> tls_;
  // The peer address as text (trusted_proxies parses it back only when configured).
  char peerIp_[INET6_ADDRSTRLEN] = {0};
  State state_ = State::ReadingHead;
  bool reading_ = false;
  bool closeAfterFlush_ = false;
  bool shuttingDown_ = false;
  bool upstreamPaused_ = false;
  bool headTimer_ = false;
  bool trimPending_ = false;  // the timer will first release the stream of an idle connection
  bool tlsFailed_ = false;    // a fatal TLS error: no close_notify, the session is not reused
  uint32_t listenerNameId_ = 0;
  uint32_t exchangeSeq_ = 0;  // bumped whenever the current exchange ends (wraps: fine)
  uint64_t deadline_ = 0;     // loop ms; 0 = nothing to time (the heap entry may fire earlier)

  // The current request. The trivially copyable part is reset with one assignment; the rest
  // is cleared in place, keeping the strings' capacity (no allocation per request).
  struct ExchangeScalars {
    const router::Route* route = nullptr;
    const upstream::Pool* pool = nullptr;
    upstream::UpstreamConn* up = nullptr;
    size_t triedCount = 0;
    uint32_t attempts = 0;
    uint64_t startNs = 0, upstreamStartNs = 0, upstreamEndNs = 0;
    int status = 0;
    uint64_t bytesSent = 0;
    uint64_t bodyBytesSent = 0;
    uint64_t requestBodyBytes = 0;
    http::BodyFraming framing = http::BodyFraming::None;
    bool headProcessed = false;
    bool headRequest = false;
    bool requestComplete = false;
    bool bodyStarted = false;
    bool responseStarted = false;
    bool keepAlive = true;
    bool websocket = false;
    bool expectContinue = false;
    bool mustClose = false;  // after this response
    bool logged = false;
    bool staleRetried = false;
    bool bodyFlowing = false;    // the parser runs the request body (not paused)
    bool queued = false;         // waiting for a backend under max_connections
    bool filterWaiting = false;  // a filter returned Stop and will resume() or reply
    bool filtersResponded = false;
    uint64_t queueDeadlineMs = 0;
    std::string_view clientIp;  // peerIp_ or clientIpBuf (trusted_proxies)
    size_t nextFilter = 0;      // middleware: filters run in order from here
  };
  struct Exchange : ExchangeScalars {
    upstream::BackendPtr backend;
    const upstream::Backend* tried[12];  // retries <= 10; the first triedCount are valid
    std::string requestId;
    std::string traceparent;
    std::string host;  // normalized
    std::string target;
    std::string authority;  // from an absolute-form target
    std::string clientIpBuf;
    // Middleware: one filter per factory of the route.
    std::vector<std::unique_ptr<middleware::Filter>> filters;
    middleware::RequestContext ctx;

    void reset() {
      static_cast<ExchangeScalars&>(*this) = ExchangeScalars{};
      backend.reset();
      for (std::string* str : {&requestId, &traceparent, &host, &target, &authority, &clientIpBuf})
        str->clear();
      filters.clear();
      ctx.reset();
    }
  };

  // Everything a request needs and an idle keep-alive connection does not: taken from a
  // per-worker free list when bytes arrive and given back when the connection goes idle with
  // nothing queued, so 10k idle connections cost only their ClientConnection (no per-request
  // allocation either: streams are recycled).
  struct Stream {
    http::Http1Parser parser;
    net::OutQueue out;
    std::string stash;      // unparsed bytes (pipelined requests, body after a paused head)
    std::string stashWork;  // the stash being parsed right now
    Exchange ex;
  };
  Stream* s_ = nullptr;
  // Attaches a stream (parser ready for a request, out queue bound to the socket).
  Stream& stream();
  // Gives the stream back when nothing in it is still needed.
  void releaseStreamIfIdle();
  static void recycle(Stream* st);
};

}  // namespace sluice
