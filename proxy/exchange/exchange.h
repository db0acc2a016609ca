// Exchange: one request and its response, protocol-neutral (Envoy's ActiveStream, h2o's
// h2o_req_t). The codec delivers the request (RequestDecoder) and encodes what the exchange
// answers (ServerStream). The exchange pins the config snapshot and runs the named phases in
// order:
//
//   begin            snapshot, start time, request id, client IP
//   normalizeTarget  CONNECT, target form and dot-segments, host, Expect, Content-Length limit
//   redirectHttps    the listener's redirect policy (a local reply), when it has one
//   matchRoute       route table (exact, ^~ prefix, regex, prefix), /health* fallback, 404;
//                    upstream target (rewrite, strip_prefix)
//   runFilters       the route's filters: edit the head, stop/resume, answer locally
//   answerRoute      a route with `return`: its fixed answer (a local reply), nothing upstream
//   serveFiles       a route with `static`: files::FileResponder answers from the directory
//   choosePool       the pool, from the route and the request context after the filters
//   startUpstream    UpstreamRequest: pick, connect, send head, relay, retry, outcome
//   response         response filters, then the codec encodes head and body
//   finish           metrics, filters' onComplete, the trace span ([tracing]), access log
//
// Every answer the proxy makes itself goes through sendLocalReply() (http::LocalReply), so
// listener headers, response filters, request id, metrics and the access log apply to all.
#pragma once

#include <cstdint>
#include <string>

#include "middleware/filter.h"
#include "proxy/exchange/filter_chain.h"
#include "proxy/exchange/upstream_request.h"
#include "proxy/files/file_responder.h"
#include "proxy/http/server_stream.h"
#include "proxy/net/pipe_pool.h"
#include "proxy/observe/ids.h"
#include "proxy/snapshot.h"

namespace sluice {

namespace tls {
class TlsSession;
}
class Worker;

// What the exchange knows of the connection it runs on (owned by the connection).
struct DownstreamInfo {
  const char* peerIp = "";                   // text form of the TCP peer
  const tls::TlsSession* tls = nullptr;      // TLS listeners
  const std::string* listenerKey = nullptr;  // interned "ip:port"
};

class Exchange final : public RequestDecoder,
                       private UpstreamCallbacks,
                       private files::FileCallbacks,
                       private middleware::FilterCallbacks {
 public:
  explicit Exchange(Worker& w) : w_(w), request_(w, *this), upstream_(&request_) {}
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  void bind(ServerStream* stream, const DownstreamInfo* down) {
    stream_ = stream;
    down_ = down;
  }

  // --- RequestDecoder ---
  void decodeHeaders(http::RequestHead& head, bool endOfRequest) override;
  bool decodeData(const char* data, size_t len) override;
  void decodeEnd() override;
  void flushRequest() override;
  void decodeTunnelData(const char* data, size_t len) override;
  void decodeTunnelEnd() override;
  void onTimeout() override;
  void onClientDrained() override;

  // The proxy's own answer; `close` ends the connection afterwards (it also ends when the
  // request is not fully read).
  void sendLocalReply(const http::LocalReply& reply, bool close);
  void decodeError(int status, std::string_view code) override {
    sendLocalReply({status, code}, true);
  }
  void abandon() override;
  void reset() override;
  // Drops the pinned snapshot (the stream goes back to the worker's free list).
  void releaseSnapshot() {
    snap_.reset();
    listener_ = nullptr;
    listenerKey_ = nullptr;
  }
  // A request id for a reply made before the head was parsed.
  const std::string& requestId();

  // drain_timeout: the pool `poolNameId` was drained. A tunnel through it ends now (both
  // sides, as when its backend closes); a request in flight to it finishes, and its upstream
  // connection is closed instead of pooled. The exchange may be gone when this returns.
  enum class Drained : uint8_t { None, Tunnel, Request };
  Drained drainPool(uint32_t poolNameId);

  bool started() const { return s_.started; }
  // Something happened since the last reset() (a request began, a reply went out, an id was
  // made): reset() before reuse.
  bool dirty() const { return dirty_; }
  bool responseStarted() const override { return s_.responseStarted; }
  bool holdsResources() const override {
    return !filters_.empty() || upstream_->started() || files_.active();
  }
  const ListenerSpec* listener() const { return listener_; }
  const SnapshotPtr& snapshot() const { return snap_; }
  const Worker& worker() const { return w_; }

  // Tests: a fake upstream side (nullptr: the real UpstreamRequest again).
  void setUpstreamForTest(Upstream* u) { upstream_ = u ? u : &request_; }
  UpstreamCallbacks& upstreamCallbacks() { return *this; }

 private:
  // Phases.
  void begin(http::RequestHead& head);
  bool normalizeTarget(std::string_view& path, std::string_view& query,
                       std::string_view& hostFromTarget);
  void redirectHttps(std::string_view path, std::string_view query);
  bool matchRoute(std::string_view path, std::string_view query, std::string_view hostFromTarget);
  void runFilters();
  void answerOrProxy();  // after the filters: answerRoute() or startUpstream()
  void answerRoute();
  void serveFiles();
  const upstream::Pool* choosePool();
  const upstream::Pool* pickPool();
  void startUpstream();
  void finish();
  // A sampled request's span record, into the worker's ring ([tracing]).
  void recordSpan(uint64_t endNs);

  // Response helpers.
  size_t encodeHeaders(http::ResponseHead& head, ResponseInfo& info);
  void endExchange();
  bool alive(uint32_t generation) const { return generation == generation_ && !s_.ended; }

  // --- UpstreamCallbacks ---
  void onUpstreamReady() override;
  int onUpstreamHeaders(http::ResponseHead& head) override;
  void onUpstreamInterim(const http::ResponseHead& head) override;
  bool onUpstreamData(const char* data, size_t len) override;
  void onUpstreamEnd() override;
  void onUpstreamFailed(int status, std::string_view code) override;
  void onUpstreamAborted() override;
  void onUpstreamTunnelData(const char* data, size_t len) override;
  void onUpstreamTunnelEnd() override;
  void afterUpstreamRead(bool current) override;
  void onUpstreamDrained() override;
  void setUpstreamDeadline(uint64_t ms) override;
  bool onUpstreamSpliceable(uint64_t remaining) override;
  void onUpstreamReadable() override;

  // Backpressure from the client on the response (see holdUpstream in exchange.cpp).
  void holdUpstream();
  void releaseUpstream();

  // Splicing a response body (exchange_splice.cpp).
  void pumpSplice();
  void endSplice();

  // --- files::FileCallbacks (always from the loop, outside the codec's callbacks) ---
  void fileHead(http::ResponseHead& head, bool noBody) override;
  void fileReply(const http::LocalReply& reply) override;
  void fileBodySent(size_t n) override;
  void fileEnd() override;
  void fileBroken() override;

  // --- middleware::FilterCallbacks ---
  void resume() override;
  void sendLocalReply(const http::LocalReply& reply) override;
  middleware::RequestContext& context() override { return ctx_; }
  middleware::WorkerServices& services() override;

  Worker& w_;
  ServerStream* stream_ = nullptr;
  const DownstreamInfo* down_ = nullptr;
  SnapshotPtr snap_;  // pinned at begin(); kept across requests while unchanged
  const ListenerSpec* listener_ = nullptr;
  const std::string* listenerKey_ = nullptr;  // the (interned) key listener_ was found for
  http::RequestHead* req_ = nullptr;

  // The trivially copyable part is reset with one assignment; the rest keeps its capacity.
  struct Scalars {
    const router::Route* route = nullptr;
    const upstream::Pool* pool = nullptr;
    uint64_t startNs = 0;
    uint64_t bytesSent = 0;
    uint64_t bodyBytesSent = 0;
    uint64_t requestBodyBytes = 0;
    int status = 0;
    bool started = false;  // decodeHeaders ran
    bool headRequest = false;
    bool requestComplete = false;
    bool responseStarted = false;
    bool websocket = false;
    bool tunnel = false;  // raw bytes both ways since the 101
    bool logged = false;
    bool ended = false;           // the response is complete (or the exchange was abandoned)
    bool upstreamPaused = false;  // holdUpstream(): the client is slow
    size_t sendMark = 0;          // unsent client bytes when the client was last timed
    bool traced = false;          // [tracing] sampled this request: trace_ holds its span ids
    std::string_view clientIp;    // peer or clientIpBuf_
  } s_;
  uint32_t generation_ = 0;  // bumped by reset(): stale filter callbacks see a new one
  bool dirty_ = false;
  std::string requestId_;
  std::string traceparent_;
  observe::TraceStart trace_;  // valid while s_.traced
  std::string host_;           // normalized
  std::string target_;
  std::string authority_;  // from an absolute-form target
  std::string clientIpBuf_;
  std::string newCohort_;         // sticky = "auto": a cohort id issued to this request
  std::string setCookie_;         // its Set-Cookie value (capacity reused)
  http::ResponseHead localHead_;  // a local reply's head, capacity reused
  std::string localBody_;
  FilterChain filters_;
  middleware::RequestContext ctx_;
  UpstreamRequest request_;
  Upstream* upstream_;  // &request_ (tests substitute a fake)
  files::FileResponder files_;
  // A response body spliced backend -> pipe -> client (plain TCP both sides, Content-Length):
  // the worker's pipe it holds, the body bytes still to come from the backend, in all, and
  // waiting in the pipe.
  struct Splice {
    net::Pipe pipe;
    uint64_t remaining = 0;
    uint64_t total = 0;
    size_t inPipe = 0;
  } splice_;
  bool filesInline_ = false;  // inside files_.start(): its callbacks come from the codec's
};

}  // namespace sluice
