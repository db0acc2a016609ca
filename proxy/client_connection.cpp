// Downstream connection: request parsing, routing, the proxied exchange and local replies.
#include "proxy/client_connection.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>

#include "proxy/admin/health.h"
#include "proxy/net/client_ip.h"
#include "proxy/observe/access_log.h"
#include "proxy/observe/ids.h"
#include "proxy/worker.h"

namespace sluice {

using http::Http1Parser;
using observe::UpstreamErrorKind;

namespace {
constexpr size_t kHighWater = 256 * 1024;  // stop reading the other side above this
constexpr uint64_t kLingerMs = 2000;
constexpr size_t kMaxStash = 64 * 1024;
constexpr uint64_t kTrimMs = 1000;  // keep-alive quiet this long: give the stream back  //
                                    // pipelined bytes held while a request is in progress
// max_connections: requests that find every usable backend at its limit wait in a bounded
// per-worker queue (polled every kQueuePollMs) for at most the pool's connect_timeout.
constexpr uint32_t kMaxQueued = 1024;
constexpr uint64_t kQueuePollMs = 5;
thread_local uint32_t tQueued = 0;  // waiting requests on this worker

bool isIdempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "PUT" || m == "DELETE" || m == "TRACE";
}

// Keeps the peer address (v4 or v6, 28 bytes, not a 128-byte sockaddr_storage) and its text.
void formatPeer(uv_tcp_t* tcp, char* out, size_t outLen) {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    std::snprintf(out, outLen, "-");
    return;
  }
  if (ss.ss_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), out, outLen);
  } else {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
      sockaddr_in s4{};
      s4.sin_family = AF_INET;
      std::memcpy(&s4.sin_addr, s6->sin6_addr.s6_addr + 12, 4);
      uv_ip4_name(&s4, out, outLen);
    } else {
      uv_ip6_name(s6, out, outLen);
    }
  }
}
}  // namespace

ClientConnection::ClientConnection(Worker& w, SnapshotPtr snap, const ListenerSpec* listener)
    : net::Timer(&ClientConnection::onTimer),
      w_(w),
      snap_(std::move(snap)),
      listener_(listener),
      listenerKey_(nullptr) {
  uv_tcp_init(w_.loop(), &tcp_);
  tcp_.data = this;
}

ClientConnection::~ClientConnection() {
  w_.timers().cancel(this);
  if (s_) recycle(s_);
}

const std::string* ClientConnection::internListenerKey(const std::string& key) {
  static std::mutex mu;
  static std::set<std::string> keys;  // node-based: addresses stay valid
  std::lock_guard<std::mutex> lock(mu);
  return &*keys.insert(key).first;
}

namespace {
// Per worker thread: streams given back by idle connections, reused by busy ones.
constexpr size_t kMaxFreeStreams = 256;
struct FreeStreams {
  std::vector<void*> items;
  void (*destroy)(void*) = nullptr;
  ~FreeStreams() {  // worker thread exit
    for (void* p : items) destroy(p);
  }
};
thread_local FreeStreams tFree;
thread_local std::vector<void*>& tFreeStreams = tFree.items;
}  // namespace

ClientConnection::Stream& ClientConnection::stream() {
  if (s_) return *s_;
  if (!tFreeStreams.empty()) {
    s_ = static_cast<Stream*>(tFreeStreams.back());
    tFreeStreams.pop_back();
  } else {
    s_ = new Stream;
    tFree.destroy = [](void* p) { delete static_cast<Stream*>(p); };
  }
  s_->parser.init(Http1Parser::Kind::Request, this,
                  size_t(w_.snapshot()->config.server.maxHeaderSize));
  s_->out.bind(reinterpret_cast<uv_stream_t*>(&tcp_), this, onWriteDone);
  s_->out.setTls(tls_.get());
  return *s_;
}

void ClientConnection::recycle(Stream* st) {
  st->ex.reset();
  st->out.reset();
  st->stash.clear();
  st->stashWork.clear();
  if (tFreeStreams.size() < kMaxFreeStreams)
    tFreeStreams.push_back(st);
  else
    delete st;
}

void ClientConnection::releaseStreamIfIdle() {
  if (!s_ || state_ != State::ReadingHead || s_->parser.messageStarted() || !s_->stash.empty() ||
      !s_->out.idle() || !s_->ex.filters.empty())
    return;
  recycle(s_);
  s_ = nullptr;
  if (tls_) tls_->trim();
}

void ClientConnection::accept(Worker& w, uv_stream_t* server, const std::string* listenerKey) {
  const ListenerSpec* spec = w.snapshot()->listener(*listenerKey);
  auto* c = new ClientConnection(w, w.snapshot(), spec);
  if (!spec || uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp_)) != 0) {
    c->state_ = State::Closed;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp_), onClosed);
    return;
  }
  uv_tcp_nodelay(&c->tcp_, 1);
  if (spec->tls) {
    c->tls_ = std::make_unique<ServerTls>(spec->tls);
  }
  formatPeer(&c->tcp_, c->peerIp_, sizeof c->peerIp_);
  c->listenerKey_ = listenerKey;
  c->listenerNameId_ = spec->nameId;
  w.addConnection(c);
  w.metrics().connectionsActive[spec->nameId]++;
  w.metrics().connectionsTotal[spec->nameId]++;
  c->headTimer_ = true;
  c->armTimer(uint64_t(c->snap_->config.server.clientHeaderTimeout.count()));
  c->startReading();
}

// ---------------------------------------------------------------- reading and parsing

void ClientConnection::startReading() {
  if (!reading_ && state_ != State::Closed) {
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc, onRead);
    reading_ = true;
  }
}

void ClientConnection::stopReading() {
  if (reading_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  }
}

void ClientConnection::onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<ClientConnection*>(h->data);
  *buf = uv_buf_init(self->w_.readBuffer(), unsigned(Worker::kReadBufferSize));
}

void ClientConnection::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<ClientConnection*>(s->data);
  if (nread == 0 || self->state_ == State::Closed) return;
  if (nread < 0) {
    switch (self->state_) {
      case State::Lingering:
        self->close();
        return;
      case State::Tunnel:
        // Client finished sending: pass the half-close on; the backend's close ends it all.
        self->stopReading();
        if (self->s_->ex.up)
          self->s_->ex.up->shutdownWrite();
        else
          self->closeAfterFlush();
        return;
      default:
        // EOF or reset before the answer: the client is gone (like nginx without
        // proxy_ignore_client_abort). An upstream exchange in progress is abandoned (its
        // connection cannot be reused) and a pending filter is cancelled.
        self->close();
        return;
    }
  }
  if (self->state_ == State::Lingering) return;  // discard
  self->stream();
  if (self->tls_)
    self->onCiphertext(buf->base, size_t(nread));
  else
    self->onPlaintext(buf->base, size_t(nread));
  // End of the read callback: nothing up the stack uses the stream any more.
  if (self->state_ != State::Closed) self->releaseStreamIfIdle();
}

void ClientConnection::onCiphertext(const char* data, size_t len) {
  const bool wasDone = tls_->handshakeDone();
  auto r = tls_->feed(data, len, w_.plainBuffer(), Worker::kReadBufferSize,
                      [this](const char* p, size_t n) {
                        onPlaintext(p, n);
                        return state_ != State::Closed && state_ != State::Lingering;
                      });
  if (tls_->takeHandshakeEvent())
    w_.metrics().tlsHandshake(listenerNameId_, tls_->version(), tls_->resumed());
  if (r == tls::TlsSession::Result::Error) {
    tlsFailed_ = true;
    if (!wasDone && !tls_->handshakeDone()) {
      w_.metrics().tlsHandshakeError(listenerNameId_, tls_->errorReason());
      if (tls_->errorReason() == "http_request") {
        // Plain HTTP sent to the TLS port: say so in plain HTTP, like nginx does.
        std::string reply;
        w_.ids().requestId(s_->ex.requestId);
        http::serializeLocalReply(400, "plain_http_to_tls_port", s_->ex.requestId, false, false,
                                  reply);
        s_->out.writeRaw(reply);
        state_ = State::Lingering;
        closeAfterFlush_ = true;
        if (s_->out.queuedBytes() == 0) close();
        return;
      }
    }
    close();
    return;
  }
  if (r == tls::TlsSession::Result::Closed) {
    // close_notify: the client is done sending, like EOF.
    if (state_ == State::Tunnel && s_->ex.up) {
      s_->ex.up->shutdownWrite();
    } else if (state_ != State::Closed) {
      close();
      return;
    }
  }
  flushClient();  // handshake records, if nothing else
}

void ClientConnection::onPlaintext(const char* data, size_t len) {
  if (state_ == State::Lingering || state_ == State::Closed) return;
  if (state_ == State::Tunnel) {
    if (s_->ex.up) {
      s_->ex.up->out().ref(data, len);
      flushUpstream();
    }
    return;
  }
  if (state_ == State::Proxying && !s_->ex.bodyFlowing) {
    // The parser is paused (head waiting for its upstream, or request complete): keep the bytes
    // for later. Reading goes on, which saves two epoll_ctl calls per keep-alive request;
    // only a client that pipelines a lot is stopped.
    s_->stash.append(data, len);
    if (s_->stash.size() > kMaxStash) stopReading();
    return;
  }
  if (state_ == State::ReadingHead && !headTimer_) {
    headTimer_ = true;
    trimPending_ = false;
    armTimer(uint64_t(snap_->config.server.clientHeaderTimeout.count()));
  } else if (state_ == State::Proxying && !s_->ex.requestComplete) {
    armTimer(uint64_t(snap_->config.server.clientIdleTimeout.count()));
  }
  feed(data, len);
  flushUpstream();
  flushClient();
}

void ClientConnection::feed(const char* data, size_t len) {
  while (len > 0 && state_ != State::Closed && state_ != State::Lingering) {
    auto r = s_->parser.execute(data, len);
    data += r.consumed;
    len -= r.consumed;
    switch (r.status) {
      case Http1Parser::Status::NeedMore:
        return;
      case Http1Parser::Status::HeadComplete:
        s_->stash.append(data, len);
        stopReading();
        onRequestHead();
        return;
      case Http1Parser::Status::Upgrade:  // websocket: tunnel or close; others: next()
      case Http1Parser::Status::Complete:
        // Whatever follows is the next request: it waits until this one is answered.
        s_->stash.append(data, len);
        if (s_->stash.size() > kMaxStash) stopReading();
        s_->ex.requestComplete = true;
        s_->ex.bodyFlowing = false;
        if (!s_->ex.headProcessed) {
          onRequestHead();
        } else {
          // The body is in: the client timer has nothing left to guard, and the backend's
          // response_timeout starts now (a slow upload is not the backend's delay).
          disarmTimer();
          if (s_->ex.up) {
            s_->ex.up->armResponseTimer();
            flushUpstream();
          }
        }
        return;
      case Http1Parser::Status::Error:
        onParseError();
        return;
    }
  }
}

void ClientConnection::feedStash() {
  if (s_->stash.empty()) return;
  s_->stashWork.swap(s_->stash);
  s_->stash.clear();
  feed(s_->stashWork.data(), s_->stashWork.size());
  // Body pieces may point into s_->stashWork: write them out before it is reused.
  flushUpstream();
  flushClient();
  s_->stashWork.clear();
}

void ClientConnection::onParseError() {
  switch (s_->parser.error()) {
    case http::ParseError::HeadTooLarge:
    case http::ParseError::TooManyHeaders:
      sendLocalReply(431, "headers_too_large", true);
      break;
    case http::ParseError::Unsupported:
      sendLocalReply(501, "not_implemented", true);
      break;
    case http::ParseError::Aborted:
      // A callback already answered or closed.
      if (state_ != State::Closed && state_ != State::Lingering && !s_->ex.responseStarted)
        sendLocalReply(400, "bad_request", true);
      break;
    default:
      if (s_->ex.responseStarted || s_->ex.bodyStarted) {
        // Bad chunk framing mid-body: the upstream got a partial body; abandon both sides.
        abortUpstream();
        if (!s_->ex.responseStarted)
          sendLocalReply(400, "bad_request", true);
        else
          close();
      } else {
        sendLocalReply(400, "bad_request", true);
      }
  }
}

int ClientConnection::onHeadersComplete() {
  const http::RequestHead& req = s_->parser.request();
  // Stop after the head when a body follows, so the body is read only once an upstream
  // connection exists (and can be replayed to another backend if the connect fails).
  return req.hasBody() ? kPause : kBody;
}

bool ClientConnection::onBody(const char* data, size_t len) {
  s_->ex.requestBodyBytes += len;
  uint64_t max = snap_->config.server.maxBodySize;
  if (max && s_->ex.requestBodyBytes > max) {
    abortUpstream();
    if (!s_->ex.responseStarted)
      sendLocalReply(413, "payload_too_large", true);
    else
      close();
    return false;
  }
  if (!s_->ex.up) return false;
  net::OutQueue& o = s_->ex.up->out();
  if (s_->parser.request().chunked) {
    std::string& s = o.beginScratch();
    http::appendChunkHeader(len, s);
    o.endScratch();
    o.ref(data, len);
    o.copy("\r\n");
  } else {
    o.ref(data, len);
  }
  s_->ex.bodyStarted = true;
  return true;
}

void ClientConnection::onMessageComplete() {
  if (s_->ex.headProcessed && s_->ex.up && s_->parser.request().chunked)
    s_->ex.up->out().copy("0\r\n\r\n");
}

// ---------------------------------------------------------------- request phases

void ClientConnection::onRequestHead() {
  // Each request runs on the newest config generation; it keeps that one until it is done.
  if (w_.snapshot() != snap_) {
    if (const ListenerSpec* l = w_.snapshot()->listener(*listenerKey_)) {
      snap_ = w_.snapshot();
      listener_ = l;
    }
  }
  s_->ex.headProcessed = true;
  s_->ex.startNs = w_.nowNs();
  disarmTimer();
  state_ = State::Proxying;
  http::RequestHead& req = s_->parser.request();
  s_->ex.headRequest = req.method == "HEAD";
  s_->ex.clientIp = net::realClientIp(peerIp_, req.headers, snap_->config.server.trustedProxies,
                                      s_->ex.clientIpBuf);
  s_->ex.keepAlive = req.keepAlive && !shuttingDown_ && !w_.draining();
  std::string_view rid = req.headers.get(http::Hdr::XRequestId);
  if (observe::isSaneRequestId(rid))
    s_->ex.requestId.assign(rid);
  else
    w_.ids().requestId(s_->ex.requestId);
  routeRequest();
}

void ClientConnection::routeRequest() {
  http::RequestHead& req = s_->parser.request();
  if (req.method == "CONNECT") {
    sendLocalReply(405, "method_not_allowed", true);
    return;
  }
  std::string_view hostFromTarget, path, query;
  if (!router::splitTarget(req.target, hostFromTarget, path, query)) {
    sendLocalReply(400, "bad_request", true);
    return;
  }
  bool hasHost = false;
  std::string_view hostHeader = req.headers.get(http::Hdr::Host, &hasHost);
  router::normalizeHost(hostFromTarget.empty() ? hostHeader : hostFromTarget, s_->ex.host);
  s_->ex.authority.assign(hostFromTarget);

  if (!listener_->cfg.redirectHttps.empty()) {
    // Template: {host} = request host without port, {uri} = the request-target's path+query.
    std::string loc;
    std::string_view tpl = listener_->cfg.redirectHttps;
    std::string uri(path);
    uri.append(query);
    for (size_t i = 0; i < tpl.size();) {
      if (tpl.compare(i, 6, "{host}") == 0) {
        loc.append(s_->ex.host);
        i += 6;
      } else if (tpl.compare(i, 5, "{uri}") == 0) {
        loc.append(uri);
        i += 5;
      } else {
        loc.push_back(tpl[i++]);
      }
    }
    const bool closeConn = !s_->ex.keepAlive || (req.hasBody() && !s_->ex.requestComplete);
    s_->ex.status = 308;
    std::string& s = s_->out.beginScratch();
    size_t before = s.size();
    s.append("HTTP/1.1 308 Permanent Redirect\r\nLocation: ");
    s.append(loc);
    s.append("\r\nContent-Length: 0\r\nX-Request-Id: ");
    s.append(s_->ex.requestId);
    s.append(closeConn ? "\r\nConnection: close\r\n\r\n" : "\r\n\r\n");
    s_->ex.bytesSent += s.size() - before;
    s_->out.endScratch();
    finishRequest();
    if (closeConn)
      lingerClose();
    else
      startNextRequest();
    return;
  }

  uint64_t max = snap_->config.server.maxBodySize;
  if (max && req.hasContentLength && req.contentLength > max) {
    sendLocalReply(413, "payload_too_large", true);
    return;
  }

  s_->ex.route = snap_->routes.match(s_->ex.host, path, req.method);
  if (!s_->ex.route) {
    if (answerHealth(path)) return;
    sendLocalReply(404, "no_route", req.hasBody() && !s_->ex.requestComplete);
    return;
  }
  s_->ex.pool = s_->ex.route->pool;
  s_->ex.target.clear();
  if (s_->ex.route->stripPrefix && !s_->ex.route->exact) {
    std::string_view rest = path.substr(s_->ex.route->path.size());
    if (rest.empty() || rest[0] != '/') s_->ex.target.push_back('/');
    s_->ex.target.append(rest);
    s_->ex.target.append(query);
  } else {
    s_->ex.target.assign(req.target);
    if (!hostFromTarget.empty()) {  // absolute-form: send origin-form upstream
      s_->ex.target.assign(path);
      s_->ex.target.append(query);
    }
  }
  s_->ex.traceparent.clear();
  observe::nextTraceparent(req.headers.get(http::Hdr::Traceparent), w_.ids(), s_->ex.traceparent);
  std::string_view upgrade = req.headers.get(http::Hdr::Upgrade);
  s_->ex.websocket = req.upgrade && req.method == "GET" && http::iequals(upgrade, "websocket");
  // Other upgrades (h2c, ...) are not forwarded: without the Upgrade header the backend answers
  // in HTTP/1.1 and the connection simply goes on.
  std::string_view expect = req.headers.get(http::Hdr::Expect);
  if (!expect.empty()) {
    if (!http::iequals(expect, "100-continue")) {
      sendLocalReply(417, "expectation_failed", true);
      return;
    }
    s_->ex.expectContinue = req.hasBody();
  }
  if (s_->ex.route->filters.empty()) {
    pickAndConnect();
    return;
  }
  middleware::RequestContext& ctx = s_->ex.ctx;
  ctx.request = &req;
  ctx.clientIp = s_->ex.clientIp.empty() ? std::string_view(peerIp_) : s_->ex.clientIp;
  ctx.routeName = s_->ex.route->name;
  ctx.requestId = s_->ex.requestId;
  for (const auto& f : s_->ex.route->filters) s_->ex.filters.push_back(f->create(*this));
  runFilters();
}

void ClientConnection::runFilters() {
  const uint32_t exchange = exchangeSeq_;
  while (s_->ex.nextFilter < s_->ex.filters.size()) {
    middleware::Filter& f = *s_->ex.filters[s_->ex.nextFilter++];
    const middleware::Status st = f.onRequestHeaders(s_->ex.ctx);
    // A filter that answered itself (401, 429, ...) may already have ended this exchange and
    // destroyed the filters: look at nothing of it any more.
    if (exchange != exchangeSeq_ || s_->ex.responseStarted || state_ == State::Closed ||
        state_ == State::Lingering)
      return;
    if (st == middleware::Status::Stop) {
      s_->ex.filterWaiting = true;  // it calls resume() or sendLocalReply() later
      return;
    }
  }
  pickAndConnect();
}

void ClientConnection::resume() {
  if (!s_->ex.filterWaiting || state_ != State::Proxying) return;
  s_->ex.filterWaiting = false;
  runFilters();
  flushUpstream();
  flushClient();
}

void ClientConnection::sendLocalReply(int status, std::string_view code,
                                      std::string_view extraHeaders) {
  if (state_ != State::Proxying || s_->ex.responseStarted) return;
  s_->ex.filterWaiting = false;
  const http::RequestHead& req = s_->parser.request();
  sendLocalReply(status, code, req.hasBody() && !s_->ex.requestComplete, extraHeaders);
}

middleware::WorkerServices& ClientConnection::services() {
  return w_.services();
}

void ClientConnection::filtersOnResponse(int status) {
  if (s_->ex.filtersResponded) return;
  s_->ex.filtersResponded = true;
  for (auto& f : s_->ex.filters) f->onResponseHeaders(s_->ex.ctx, status);
}

void ClientConnection::destroyFilters() {
  for (auto& f : s_->ex.filters) f->onDestroy();
  s_->ex.filters.clear();
}

bool ClientConnection::answerHealth(std::string_view path) {
  int status;
  std::string body;
  if (!admin::healthResponse(path, *snap_, status, body)) return false;
  s_->ex.status = status;
  std::string& s = s_->out.beginScratch();
  s.append(status == 200 ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 503 Service Unavailable\r\n");
  s.append("Content-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: ");
  s.append(std::to_string(body.size()));
  s.append("\r\nX-Request-Id: ");
  s.append(s_->ex.requestId);
  s.append("\r\n");
  s.append(listener_->responseHeaders);
  bool close = !s_->ex.keepAlive || (s_->parser.request().hasBody() && !s_->ex.requestComplete);
  if (close) s.append("Connection: close\r\n");
  s.append("\r\n");
  if (!s_->ex.headRequest) s.append(body);
  s_->out.endScratch();
  s_->ex.bytesSent += s.size();
  finishRequest();
  if (close)
    closeAfterFlush();
  else
    startNextRequest();
  return true;
}

bool ClientConnection::waitForBackend(uint64_t nowMs) {
  if (!s_->ex.queued) {
    if (tQueued >= kMaxQueued) return false;
    s_->ex.queued = true;
    ++tQueued;
    s_->ex.queueDeadlineMs = nowMs + uint64_t(s_->ex.pool->settings.connectTimeout.count());
  }
  if (nowMs >= s_->ex.queueDeadlineMs) {
    s_->ex.queued = false;
    --tQueued;
    return false;
  }
  armTimer(kQueuePollMs);
  return true;
}

void ClientConnection::pickAndConnect() {
  const upstream::Pool* pool = s_->ex.pool;
  upstream::PickRequest pr;
  pr.skip = s_->ex.tried;
  pr.skipCount = s_->ex.triedCount;
  pr.nowMs = upstream::monotonicMs();
  if (pool->settings.balance == config::Balance::Hash)
    pr.hash = upstream::requestHash(
        pool->settings.hashKey, s_->parser.request().headers,
        s_->ex.clientIp.empty() ? std::string_view(peerIp_) : s_->ex.clientIp);
  upstream::PickResult picked = w_.balancer(pool).pick(*pool, pr);
  int idx = picked.index;
  if (idx < 0 && picked.saturated && waitForBackend(pr.nowMs)) return;
  if (s_->ex.queued) {
    s_->ex.queued = false;
    --tQueued;
  }
  if (idx < 0) {
    bool closeConn = s_->parser.request().hasBody() && !s_->ex.requestComplete;
    if (s_->ex.attempts == 0)
      sendLocalReply(503, "no_healthy_backend", closeConn);
    else
      sendLocalReply(502, "bad_gateway", closeConn);
    return;
  }
  s_->ex.backend = pool->backends[size_t(idx)];
  s_->ex.backend->active.fetch_add(1, std::memory_order_relaxed);
  if (s_->ex.upstreamStartNs == 0) s_->ex.upstreamStartNs = w_.nowNs();
  upstream::UpstreamConn* up = w_.connPool().acquire(s_->ex.backend.get(), pool->tls != nullptr);
  if (up) {
    s_->ex.up = up;
    up->attach(this);
    onUpstreamConnected(up);
    return;
  }
  up = new upstream::UpstreamConn(w_.loop(), w_.connPool(), s_->ex.backend, w_.readBuffer(),
                                  w_.plainBuffer(), Worker::kReadBufferSize);
  s_->ex.up = up;
  const auto& ps = pool->settings;
  up->connect(this, uint64_t(ps.connectTimeout.count()), pool->tls.get(),
              ps.tlsServerName.empty() ? s_->ex.backend->host : ps.tlsServerName);
}

void ClientConnection::onUpstreamConnected(upstream::UpstreamConn* up) {
  sendRequestHead();
  const auto& ps = s_->ex.pool->settings;
  up->startResponse(uint64_t(ps.responseTimeout.count()), s_->ex.headRequest,
                    s_->ex.requestComplete);
  if (s_->ex.websocket) {
    flushUpstream();  // the client's bytes wait in the stash until the 101
    return;
  }
  if (!s_->ex.requestComplete) {
    if (s_->ex.expectContinue && s_->stash.empty()) {
      s_->out.copy("HTTP/1.1 100 Continue\r\n\r\n");
      flushClient();
    }
    s_->parser.resume();
    s_->ex.bodyFlowing = true;
    feedStash();
    if (state_ == State::Proxying && !s_->ex.requestComplete) {
      armTimer(uint64_t(snap_->config.server.clientIdleTimeout.count()));
      if (!s_->ex.up || s_->ex.up->out().queuedBytes() < kHighWater) startReading();
    }
  }
  flushUpstream();
}

void ClientConnection::sendRequestHead() {
  http::UpstreamRequestInfo info;
  info.target = s_->ex.target;
  info.clientIp = peerIp_;  // the hop we saw; earlier hops are already in the list
  info.proto = tls_ ? "https" : "http";
  info.requestId = s_->ex.requestId;
  info.traceparent = s_->ex.traceparent;
  info.websocket = s_->ex.websocket;
  // An absolute-form target's authority wins over Host (RFC 9112 3.2.2); an HTTP/1.0 request
  // without Host gets the backend's address, since HTTP/1.1 upstream requires one.
  info.forwardedHost = s_->parser.request().headers.get(http::Hdr::Host);
  if (!s_->ex.authority.empty())
    info.hostOverride = info.forwardedHost = s_->ex.authority;
  else if (!s_->parser.request().headers.has(http::Hdr::Host))
    info.hostOverride = s_->ex.backend->address;
  net::OutQueue& o = s_->ex.up->out();
  http::serializeUpstreamRequest(s_->parser.request(), info, o.beginScratch());
  o.endScratch();
}

int ClientConnection::onUpstreamHead(upstream::UpstreamConn* up, http::ResponseHead& head) {
  (void)up;
  const http::RequestHead& req = s_->parser.request();
  s_->ex.upstreamEndNs = w_.nowNs();
  s_->ex.status = head.status;
  if (head.status >= 500)
    upstream::reportFailure(*s_->ex.pool, *s_->ex.backend, upstream::monotonicMs());
  else
    upstream::reportSuccess(*s_->ex.pool, *s_->ex.backend, upstream::monotonicMs());
  http::ClientResponseInfo info;
  info.requestId = s_->ex.requestId;
  info.http10Client = req.versionMinor == 0;
  info.extraHeaders = listener_->responseHeaders;
  if (head.status == 101) {
    if (!s_->ex.websocket) return kAbort;
    info.upgrade = true;
    info.framing = http::BodyFraming::None;
    std::string& s = s_->out.beginScratch();
    size_t before = s.size();
    http::serializeClientResponse(head, info, s);
    s_->ex.bytesSent += s.size() - before;
    s_->out.endScratch();
    s_->ex.responseStarted = true;
    return kUpgrade;
  }
  if (shuttingDown_ || w_.draining()) s_->ex.keepAlive = false;
  const bool noBody = s_->ex.headRequest || head.status == 204 || head.status == 304;
  if (noBody) {
    info.framing = http::BodyFraming::None;
    if (head.hasContentLength && head.status != 204) {
      info.framing = http::BodyFraming::ContentLength;
      info.contentLength = head.contentLength;
    }
  } else if (head.hasContentLength) {
    info.framing = http::BodyFraming::ContentLength;
    info.contentLength = head.contentLength;
  } else if (!info.http10Client) {
    info.framing = http::BodyFraming::Chunked;  // chunked or close-delimited upstream
  } else {
    info.framing = http::BodyFraming::Close;
    s_->ex.keepAlive = false;
  }
  // A request still sending its body when the answer comes cannot leave the connection in a
  // known state unless we drain it; closing is simpler and what nginx does too.
  if (!s_->ex.requestComplete || s_->ex.mustClose || s_->ex.websocket) s_->ex.keepAlive = false;
  info.keepAlive = s_->ex.keepAlive;
  if (!s_->ex.filters.empty()) {
    filtersOnResponse(head.status);
    info.extraHeaders2 = s_->ex.ctx.responseHeaders;
  }
  s_->ex.framing = noBody ? http::BodyFraming::None : info.framing;
  std::string& s = s_->out.beginScratch();
  size_t before = s.size();
  http::serializeClientResponse(head, info, s);
  s_->ex.bytesSent += s.size() - before;
  s_->out.endScratch();
  s_->ex.responseStarted = true;
  return noBody ? kNoBody : kBody;
}

bool ClientConnection::onUpstreamBody(upstream::UpstreamConn*, const char* data, size_t len) {
  if (s_->ex.framing == http::BodyFraming::Chunked) {
    std::string& s = s_->out.beginScratch();
    http::appendChunkHeader(len, s);
    s_->out.endScratch();
    s_->out.ref(data, len);
    s_->out.copy("\r\n");
  } else {
    s_->out.ref(data, len);
  }
  s_->ex.bytesSent += len;
  s_->ex.bodyBytesSent += len;
  return true;
}

void ClientConnection::onUpstreamComplete(upstream::UpstreamConn*) {
  if (s_->ex.framing == http::BodyFraming::Chunked) s_->out.copy("0\r\n\r\n");
  const bool reusable = s_->ex.requestComplete && !s_->ex.websocket;
  releaseUpstream(reusable);
  finishRequest();
  if (!s_->ex.keepAlive || s_->ex.mustClose) {
    closeAfterFlush();
    return;
  }
  startNextRequest();
}

void ClientConnection::onUpstreamError(upstream::UpstreamConn* up, UpstreamErrorKind kind,
                                       bool responseBytes) {
  (void)up;  // already closed by UpstreamConn
  w_.metrics().upstreamError(s_->ex.pool->nameId, s_->ex.backend->addressId, kind);
  s_->ex.backend->active.fetch_sub(1, std::memory_order_relaxed);
  const bool wasReused = s_->ex.up && s_->ex.up->reused();
  s_->ex.up = nullptr;
  // Passive health: every failure counts except a pooled connection the backend had already
  // closed (retried below without blame). A refused connect also re-resolves host names.
  if (!(wasReused && kind == UpstreamErrorKind::Reset && !s_->ex.responseStarted && !responseBytes))
    upstream::reportFailure(*s_->ex.pool, *s_->ex.backend, upstream::monotonicMs());
  if (kind == UpstreamErrorKind::ConnectFailed) upstream::requestResolve();
  if (state_ == State::Tunnel) {
    close();
    return;
  }
  if (s_->ex.responseStarted) {
    close();  // a truncated response must not look complete
    return;
  }
  const std::string_view method = s_->parser.request().method;
  const bool connectError = kind == UpstreamErrorKind::ConnectFailed ||
                            kind == UpstreamErrorKind::ConnectTimeout ||
                            kind == UpstreamErrorKind::TlsHandshake;
  const bool replayable = !s_->ex.bodyStarted && !responseBytes;
  // A pooled connection the backend closed just before we used it: not the backend's fault,
  // retry on a fresh connection without counting an attempt.
  if (wasReused && !s_->ex.staleRetried && kind == UpstreamErrorKind::Reset && replayable &&
      isIdempotent(method) && !s_->ex.websocket) {
    s_->ex.staleRetried = true;
    s_->ex.backend.reset();
    pickAndConnect();
    return;
  }
  const bool retryable =
      replayable && !s_->ex.websocket &&
      (connectError || (kind == UpstreamErrorKind::Reset && isIdempotent(method)));
  if (retryable && s_->ex.attempts < s_->ex.pool->settings.retries) {
    if (s_->ex.triedCount < std::size(s_->ex.tried))
      s_->ex.tried[s_->ex.triedCount++] = s_->ex.backend.get();
    s_->ex.attempts++;
    s_->ex.backend.reset();
    pickAndConnect();
    return;
  }
  s_->ex.attempts++;
  bool closeConn = !s_->ex.requestComplete;
  // 504 is for a backend that took the connection but did not answer in response_timeout; one
  // that could not be reached at all is a 502, like a refused connect.
  if (kind == UpstreamErrorKind::Timeout)
    sendLocalReply(504, "gateway_timeout", closeConn);
  else
    sendLocalReply(502, "bad_gateway", closeConn);
}

void ClientConnection::onUpstreamTunnelData(upstream::UpstreamConn*, const char* data, size_t len) {
  if (state_ != State::Tunnel) {
    // First bytes after the 101 arrived with its head.
    state_ = State::Tunnel;
  }
  s_->out.ref(data, len);
  s_->ex.bytesSent += len;
}

void ClientConnection::onUpstreamTunnelEof(upstream::UpstreamConn*) {
  closeAfterFlush();
}

void ClientConnection::afterUpstreamRead(upstream::UpstreamConn* up) {
  if (!s_ || state_ == State::Closed) return;  // already finished (and the stream given back)
  if (state_ == State::Proxying && s_->ex.up == up && s_->ex.status == 101 && s_->ex.websocket) {
    // The 101 went out: from now on both directions are raw bytes.
    state_ = State::Tunnel;
    disarmTimer();
    up->enterTunnel();
    if (!s_->stash.empty()) {
      up->out().copy(s_->stash);
      s_->stash.clear();
      flushUpstream();
    }
    startReading();
  }
  flushClient();
  if (s_->ex.up == up && s_->out.queuedBytes() > kHighWater) {
    up->pauseReading();
    upstreamPaused_ = true;
  }
  // The last thing UpstreamConn does with us in a read callback: a safe point to give the
  // stream back if the response is done and fully written.
  releaseStreamIfIdle();
}

void ClientConnection::onUpstreamDrained(upstream::UpstreamConn* up) {
  if (s_->ex.up != up) return;
  if ((state_ == State::Proxying && s_->ex.headProcessed && !s_->ex.requestComplete) ||
      state_ == State::Tunnel)
    startReading();
}

void ClientConnection::releaseUpstream(bool reusable) {
  if (!s_->ex.up) return;
  s_->ex.backend->active.fetch_sub(1, std::memory_order_relaxed);
  s_->ex.up->release(reusable, uint64_t(s_->ex.pool->settings.idleTimeout.count()));
  s_->ex.up = nullptr;
}

void ClientConnection::abortUpstream() {
  if (!s_->ex.up) return;
  s_->ex.backend->active.fetch_sub(1, std::memory_order_relaxed);
  s_->ex.up->close();
  s_->ex.up = nullptr;
}

void ClientConnection::sendLocalReply(int status, std::string_view code, bool closeConn,
                                      std::string_view extraHeaders) {
  if (s_->ex.requestId.empty()) w_.ids().requestId(s_->ex.requestId);
  if (shuttingDown_ || w_.draining()) closeConn = true;
  if (!s_->ex.keepAlive) closeConn = true;
  s_->ex.status = status;
  abortUpstream();
  std::string extras(listener_ ? std::string_view(listener_->responseHeaders) : "");
  if (!s_->ex.filters.empty()) {
    filtersOnResponse(status);
    extras.append(s_->ex.ctx.responseHeaders);
  }
  extras.append(extraHeaders);
  std::string& s = s_->out.beginScratch();
  size_t before = s.size();
  http::serializeLocalReply(status, code, s_->ex.requestId, !closeConn, s_->ex.headRequest, s,
                            extras);
  s_->ex.bytesSent += s.size() - before;
  s_->out.endScratch();
  s_->ex.responseStarted = true;
  finishRequest();
  if (closeConn) {
    lingerClose();
  } else {
    startNextRequest();
  }
}

void ClientConnection::finishRequest() {
  if (s_->ex.logged) return;
  s_->ex.logged = true;
  uint64_t end = w_.nowNs();
  if (s_->ex.startNs == 0) s_->ex.startNs = end;
  double seconds = double(end - s_->ex.startNs) / 1e9;
  uint32_t routeId = s_->ex.route ? s_->ex.route->nameId : 0;
  uint32_t poolId = s_->ex.pool ? s_->ex.pool->nameId : 0;
  w_.metrics().request(routeId, poolId, s_->ex.status, seconds);
  for (auto& f : s_->ex.filters) f->onComplete(s_->ex.ctx);
  if (observe::LogWriter::instance().accessEnabled()) {
    observe::AccessRecord rec;
    const http::RequestHead& req = s_->parser.request();
    rec.requestId = s_->ex.requestId;
    rec.clientIp = s_->ex.clientIp.empty() ? std::string_view(peerIp_) : s_->ex.clientIp;
    rec.method = req.method;
    rec.host = s_->ex.host;
    rec.path = req.target;
    rec.status = s_->ex.status;
    rec.bytesSent = s_->ex.bytesSent;
    rec.bodyBytesSent = s_->ex.bodyBytesSent;
    rec.durationMs = seconds * 1000.0;
    rec.upstream = s_->ex.backend ? std::string_view(s_->ex.backend->address) : std::string_view();
    rec.upstreamMs = s_->ex.upstreamStartNs && s_->ex.upstreamEndNs
                         ? double(s_->ex.upstreamEndNs - s_->ex.upstreamStartNs) / 1e6
                         : -1;
    rec.route = s_->ex.route ? std::string_view(s_->ex.route->name) : std::string_view();
    rec.pool = s_->ex.pool ? std::string_view(s_->ex.pool->name) : std::string_view();
    rec.userAgent = req.headers.get(http::Hdr::UserAgent);
    rec.referer = req.headers.get(http::Hdr::Referer);
    rec.httpMinor = req.versionMinor;
    if (tls_ && tls_->handshakeDone()) rec.tls = tls_->version();
    rec.ratelimit = s_->ex.ctx.ratelimit;
    observe::appendAccessLine(w_.accessBuffer(), rec);
  }
}

void ClientConnection::startNextRequest() {
  // The answer may have been produced outside a client read callback (upstream error, timer):
  // write it now.
  flushClient();
  if (state_ == State::Closed) return;
  destroyFilters();
  s_->ex.reset();
  ++exchangeSeq_;
  state_ = State::ReadingHead;
  s_->parser.next();
  s_->parser.setMaxHeadBytes(size_t(w_.snapshot()->config.server.maxHeaderSize));
  if (shuttingDown_ || w_.draining()) {
    closeAfterFlush();
    return;
  }
  headTimer_ = false;
  // Wait for the next request; after kTrimMs of quiet the stream goes back to the free list.
  const uint64_t idleMs = uint64_t(snap_->config.server.clientIdleTimeout.count());
  trimPending_ = idleMs > kTrimMs;
  armTimer(trimPending_ ? kTrimMs : idleMs);
  if (!s_->stash.empty()) {
    trimPending_ = false;
    headTimer_ = true;
    armTimer(uint64_t(snap_->config.server.clientHeaderTimeout.count()));
    feedStash();
  }
  if (state_ == State::ReadingHead) startReading();
}

// ---------------------------------------------------------------- timers, writes, closing

// Timers are re-armed lazily: most requests move the deadline later, which only updates a
// field; the libuv timer is restarted only when it must fire earlier, or when it fires early.
void ClientConnection::armTimer(uint64_t ms) {
  uint64_t now = uv_now(w_.loop());
  deadline_ = now + ms;
  if (!scheduled() || deadline_ < due) w_.timers().schedule(this, ms);
}

void ClientConnection::disarmTimer() {
  deadline_ = 0;
}

void ClientConnection::onTimer(net::Timer* t) {
  auto* self = static_cast<ClientConnection*>(t);
  if (self->deadline_ == 0) return;
  uint64_t now = uv_now(self->w_.loop());
  if (now < self->deadline_) {
    self->w_.timers().schedule(self, self->deadline_ - now);
    return;
  }
  self->deadline_ = 0;
  switch (self->state_) {
    case State::ReadingHead:
      if (self->trimPending_ && !self->headTimer_) {
        // Quiet keep-alive connection: give the stream back, then wait out the idle timeout.
        self->trimPending_ = false;
        self->releaseStreamIfIdle();
        uint64_t idleMs = uint64_t(self->snap_->config.server.clientIdleTimeout.count());
        // The trim timer fired kTrimMs (or a little more) into the idle time.
        self->armTimer(idleMs > kTrimMs ? idleMs - kTrimMs : 1);
        break;
      }
      if (self->tls_ && !self->tls_->handshakeDone())
        self->w_.metrics().tlsHandshakeError(self->listenerNameId_, "handshake_timeout");
      if (self->s_ && self->s_->parser.messageStarted())
        self->sendLocalReply(408, "request_timeout", true);
      else
        self->close();  // idle keep-alive, or a connection that never sent a byte
      break;
    case State::Proxying:
      if (self->s_->ex.queued) {  // waiting for a backend under max_connections: try again
        self->pickAndConnect();
        self->flushUpstream();
        self->flushClient();
        break;
      }
      if (self->s_->ex.requestComplete) break;
      // The client stopped sending its body.
      self->abortUpstream();
      if (!self->s_->ex.responseStarted)
        self->sendLocalReply(408, "request_timeout", true);
      else
        self->close();
      break;
    case State::Lingering:
      self->close();
      break;
    default:
      break;
  }
}

void ClientConnection::flushClient() {
  if (state_ == State::Closed || !s_) return;
  if (s_->out.flush() < 0) close();
}

void ClientConnection::flushUpstream() {
  if (!s_ || !s_->ex.up) return;
  upstream::UpstreamConn* up = s_->ex.up;
  if (up->flush() < 0) {
    // The write failed synchronously: treat like a reset.
    up->close();
    onUpstreamError(up, UpstreamErrorKind::Reset, false);
    return;
  }
  if (up->out().queuedBytes() > kHighWater) stopReading();
}

void ClientConnection::onWriteDone(void* p, int status) {
  auto* self = static_cast<ClientConnection*>(p);
  if (self->state_ == State::Closed || !self->s_) return;
  if (status < 0) {
    self->close();
    return;
  }
  if (self->s_->out.queuedBytes() == 0 && self->closeAfterFlush_) {
    self->closeAfterFlush_ = false;
    if (self->state_ == State::Lingering)
      self->lingerClose();
    else
      self->close();
    return;
  }
  if (self->upstreamPaused_ && self->s_->out.queuedBytes() < kHighWater / 4) {
    self->upstreamPaused_ = false;
    if (self->s_->ex.up) self->s_->ex.up->resumeReading();
  }
  self->releaseStreamIfIdle();  // a slow client just took the rest of a finished response
}

void ClientConnection::closeAfterFlush() {
  flushClient();
  if (tls_ && !tlsFailed_ && state_ != State::Closed) {
    tls_->shutdown();  // close_notify after the last response
    flushClient();
  }
  if (state_ == State::Closed) return;
  if (!s_ || s_->out.queuedBytes() == 0) {
    close();
  } else {
    closeAfterFlush_ = true;
    stopReading();
  }
}

void ClientConnection::lingerClose() {
  // Send what is queued, shut our side, then read and discard until the client closes (or
  // kLingerMs): closing with unread input would make the kernel send RST and could destroy the
  // error response before the client read it.
  flushClient();
  if (tls_ && !tlsFailed_ && state_ != State::Closed) {
    tls_->shutdown();
    flushClient();
  }
  if (state_ == State::Closed) return;
  abortUpstream();
  state_ = State::Lingering;
  if (s_->out.queuedBytes() > 0) {
    closeAfterFlush_ = true;
    return;
  }
  // The request is allocated only here: idle connections do not carry one.
  auto* req = new uv_shutdown_t;
  req->data = this;
  if (uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&tcp_), onShutdown) != 0) {
    delete req;
    close();
    return;
  }
  armTimer(kLingerMs);
  startReading();
}

void ClientConnection::onShutdown(uv_shutdown_t* req, int status) {
  // Always called, before the close callback (UV_ECANCELED when the handle closed first).
  auto* self = static_cast<ClientConnection*>(req->data);
  delete req;
  if (status < 0 && self->state_ != State::Closed) self->close();
}

void ClientConnection::beginShutdown() {
  shuttingDown_ = true;
  if (state_ == State::ReadingHead && (!s_ || (!s_->parser.messageStarted() && s_->stash.empty())))
    close();
}

void ClientConnection::close() {
  if (state_ == State::Closed) return;
  ++exchangeSeq_;
  if (s_) {
    if (s_->ex.headProcessed && !s_->ex.logged) {
      if (s_->ex.status == 0) s_->ex.status = 499;  // client went away first (nginx's convention)
      finishRequest();
    }
    abortUpstream();
    destroyFilters();
    if (s_->ex.queued) {
      s_->ex.queued = false;
      --tQueued;
    }
  }
  if (tls_ && !tlsFailed_ && tls_->handshakeDone()) {
    // Best effort: a clean TLS close keeps the session resumable from the server cache.
    tls_->shutdown();
    stream().out.flush();
  }
  state_ = State::Closed;
  reading_ = false;
  deadline_ = 0;
  w_.timers().cancel(this);
  w_.removeConnection(this);
  if (listenerNameId_) w_.metrics().connectionsActive[listenerNameId_]--;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), onClosed);
}

void ClientConnection::onClosed(uv_handle_t* h) {
  delete static_cast<ClientConnection*>(h->data);
}

}  // namespace sluice
