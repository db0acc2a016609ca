// Downstream connection: request parsing, routing, the proxied exchange and local replies.
#include "proxy/client_connection.h"

#include <cstring>

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
constexpr size_t kMaxStash = 64 * 1024;  // pipelined bytes held while a request is in progress
// max_connections: requests that find every usable backend at its limit wait in a bounded
// per-worker queue (polled every kQueuePollMs) for at most the pool's connect_timeout.
constexpr uint32_t kMaxQueued = 1024;
constexpr uint64_t kQueuePollMs = 5;
thread_local uint32_t tQueued = 0;  // waiting requests on this worker

bool isIdempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "PUT" || m == "DELETE" || m == "TRACE";
}

void formatPeer(uv_tcp_t* tcp, sockaddr_storage& ss, char* out, size_t outLen) {
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
    : w_(w), snap_(std::move(snap)), listener_(listener) {
  uv_tcp_init(w_.loop(), &tcp_);
  uv_timer_init(w_.loop(), &timer_);
  tcp_.data = this;
  timer_.data = this;
  shutdownReq_.data = this;
  const auto& s = snap_->config.server;
  parser_.init(Http1Parser::Kind::Request, this, size_t(s.maxHeaderSize));
  out_.bind(reinterpret_cast<uv_stream_t*>(&tcp_), this, onWriteDone);
}

void ClientConnection::accept(Worker& w, uv_stream_t* server, const std::string& listenerKey) {
  const ListenerSpec* spec = w.snapshot()->listener(listenerKey);
  auto* c = new ClientConnection(w, w.snapshot(), spec);
  if (!spec || uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp_)) != 0) {
    c->state_ = State::Closed;
    c->closing_ = 2;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp_), onClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->timer_), onClosed);
    return;
  }
  uv_tcp_nodelay(&c->tcp_, 1);
  if (spec->tls) {
    c->tlsCtx_ = spec->tls;
    c->tls_ = std::make_unique<tls::TlsSession>(spec->tls->defaultCtx(), true);
    c->out_.setTls(c->tls_.get());
  }
  formatPeer(&c->tcp_, c->peer_, c->peerIp_, sizeof c->peerIp_);
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
        if (self->ex_.up)
          self->ex_.up->shutdownWrite();
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
  if (self->tls_) {
    self->onCiphertext(buf->base, size_t(nread));
    return;
  }
  self->onPlaintext(buf->base, size_t(nread));
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
        w_.ids().requestId(ex_.requestId);
        http::serializeLocalReply(400, "plain_http_to_tls_port", ex_.requestId, false, false,
                                  reply);
        out_.writeRaw(reply);
        state_ = State::Lingering;
        closeAfterFlush_ = true;
        if (out_.queuedBytes() == 0) close();
        return;
      }
    }
    close();
    return;
  }
  if (r == tls::TlsSession::Result::Closed) {
    // close_notify: the client is done sending, like EOF.
    if (state_ == State::Tunnel && ex_.up) {
      ex_.up->shutdownWrite();
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
    if (ex_.up) {
      ex_.up->out().ref(data, len);
      flushUpstream();
    }
    return;
  }
  if (state_ == State::Proxying && !ex_.bodyFlowing) {
    // The parser is paused (head waiting for its upstream, or request complete): keep the bytes
    // for later. Reading goes on, which saves two epoll_ctl calls per keep-alive request;
    // only a client that pipelines a lot is stopped.
    stash_.append(data, len);
    if (stash_.size() > kMaxStash) stopReading();
    return;
  }
  if (state_ == State::ReadingHead && !headTimer_) {
    headTimer_ = true;
    armTimer(uint64_t(snap_->config.server.clientHeaderTimeout.count()));
  } else if (state_ == State::Proxying && !ex_.requestComplete) {
    armTimer(uint64_t(snap_->config.server.clientIdleTimeout.count()));
  }
  feed(data, len);
  flushUpstream();
  flushClient();
}

void ClientConnection::feed(const char* data, size_t len) {
  while (len > 0 && state_ != State::Closed && state_ != State::Lingering) {
    auto r = parser_.execute(data, len);
    data += r.consumed;
    len -= r.consumed;
    switch (r.status) {
      case Http1Parser::Status::NeedMore:
        return;
      case Http1Parser::Status::HeadComplete:
        stash_.append(data, len);
        stopReading();
        onRequestHead();
        return;
      case Http1Parser::Status::Upgrade:  // websocket: tunnel or close; others: next()
      case Http1Parser::Status::Complete:
        // Whatever follows is the next request: it waits until this one is answered.
        stash_.append(data, len);
        if (stash_.size() > kMaxStash) stopReading();
        ex_.requestComplete = true;
        ex_.bodyFlowing = false;
        if (!ex_.headProcessed) {
          onRequestHead();
        } else {
          // The body is in: the client timer has nothing left to guard, and the backend's
          // response_timeout starts now (a slow upload is not the backend's delay).
          disarmTimer();
          if (ex_.up) {
            ex_.up->armResponseTimer();
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
  if (stash_.empty()) return;
  stashWork_.swap(stash_);
  stash_.clear();
  feed(stashWork_.data(), stashWork_.size());
  // Body pieces may point into stashWork_: write them out before it is reused.
  flushUpstream();
  flushClient();
  stashWork_.clear();
}

void ClientConnection::onParseError() {
  switch (parser_.error()) {
    case http::ParseError::HeadTooLarge:
    case http::ParseError::TooManyHeaders:
      sendLocalReply(431, "headers_too_large", true);
      break;
    case http::ParseError::Unsupported:
      sendLocalReply(501, "not_implemented", true);
      break;
    case http::ParseError::Aborted:
      // A callback already answered or closed.
      if (state_ != State::Closed && state_ != State::Lingering && !ex_.responseStarted)
        sendLocalReply(400, "bad_request", true);
      break;
    default:
      if (ex_.responseStarted || ex_.bodyStarted) {
        // Bad chunk framing mid-body: the upstream got a partial body; abandon both sides.
        abortUpstream();
        if (!ex_.responseStarted)
          sendLocalReply(400, "bad_request", true);
        else
          close();
      } else {
        sendLocalReply(400, "bad_request", true);
      }
  }
}

int ClientConnection::onHeadersComplete() {
  const http::RequestHead& req = parser_.request();
  // Stop after the head when a body follows, so the body is read only once an upstream
  // connection exists (and can be replayed to another backend if the connect fails).
  return req.hasBody() ? kPause : kBody;
}

bool ClientConnection::onBody(const char* data, size_t len) {
  ex_.requestBodyBytes += len;
  uint64_t max = snap_->config.server.maxBodySize;
  if (max && ex_.requestBodyBytes > max) {
    abortUpstream();
    if (!ex_.responseStarted)
      sendLocalReply(413, "payload_too_large", true);
    else
      close();
    return false;
  }
  if (!ex_.up) return false;
  net::OutQueue& o = ex_.up->out();
  if (parser_.request().chunked) {
    std::string& s = o.beginScratch();
    http::appendChunkHeader(len, s);
    o.endScratch();
    o.ref(data, len);
    o.copy("\r\n");
  } else {
    o.ref(data, len);
  }
  ex_.bodyStarted = true;
  return true;
}

void ClientConnection::onMessageComplete() {
  if (ex_.headProcessed && ex_.up && parser_.request().chunked) ex_.up->out().copy("0\r\n\r\n");
}

// ---------------------------------------------------------------- request phases

void ClientConnection::onRequestHead() {
  // Each request runs on the newest config generation; it keeps that one until it is done.
  if (w_.snapshot() != snap_) {
    if (const ListenerSpec* l = w_.snapshot()->listener(listenerKey_)) {
      snap_ = w_.snapshot();
      listener_ = l;
    }
  }
  ex_.headProcessed = true;
  ex_.startNs = uv_hrtime();
  disarmTimer();
  state_ = State::Proxying;
  http::RequestHead& req = parser_.request();
  ex_.headRequest = req.method == "HEAD";
  ex_.clientIp = net::realClientIp(reinterpret_cast<const sockaddr*>(&peer_), peerIp_, req.headers,
                                   snap_->config.server.trustedProxies, ex_.clientIpBuf);
  ex_.keepAlive = req.keepAlive && !shuttingDown_ && !w_.draining();
  std::string_view rid = req.headers.get("x-request-id");
  if (observe::isSaneRequestId(rid))
    ex_.requestId.assign(rid);
  else
    w_.ids().requestId(ex_.requestId);
  routeRequest();
}

void ClientConnection::routeRequest() {
  http::RequestHead& req = parser_.request();
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
  std::string_view hostHeader = req.headers.get("host", &hasHost);
  router::normalizeHost(hostFromTarget.empty() ? hostHeader : hostFromTarget, ex_.host);
  ex_.authority.assign(hostFromTarget);

  if (!listener_->cfg.redirectHttps.empty()) {
    // Template: {host} = request host without port, {uri} = the request-target's path+query.
    std::string loc;
    std::string_view tpl = listener_->cfg.redirectHttps;
    std::string uri(path);
    uri.append(query);
    for (size_t i = 0; i < tpl.size();) {
      if (tpl.compare(i, 6, "{host}") == 0) {
        loc.append(ex_.host);
        i += 6;
      } else if (tpl.compare(i, 5, "{uri}") == 0) {
        loc.append(uri);
        i += 5;
      } else {
        loc.push_back(tpl[i++]);
      }
    }
    const bool closeConn = !ex_.keepAlive || (req.hasBody() && !ex_.requestComplete);
    ex_.status = 308;
    std::string& s = out_.beginScratch();
    size_t before = s.size();
    s.append("HTTP/1.1 308 Permanent Redirect\r\nLocation: ");
    s.append(loc);
    s.append("\r\nContent-Length: 0\r\nX-Request-Id: ");
    s.append(ex_.requestId);
    s.append(closeConn ? "\r\nConnection: close\r\n\r\n" : "\r\n\r\n");
    ex_.bytesSent += s.size() - before;
    out_.endScratch();
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

  ex_.route = snap_->routes.match(ex_.host, path, req.method);
  if (!ex_.route) {
    if (answerHealth(path)) return;
    sendLocalReply(404, "no_route", req.hasBody() && !ex_.requestComplete);
    return;
  }
  ex_.pool = ex_.route->pool;
  ex_.target.clear();
  if (ex_.route->stripPrefix && !ex_.route->exact) {
    std::string_view rest = path.substr(ex_.route->path.size());
    if (rest.empty() || rest[0] != '/') ex_.target.push_back('/');
    ex_.target.append(rest);
    ex_.target.append(query);
  } else {
    ex_.target.assign(req.target);
    if (!hostFromTarget.empty()) {  // absolute-form: send origin-form upstream
      ex_.target.assign(path);
      ex_.target.append(query);
    }
  }
  ex_.traceparent.clear();
  observe::nextTraceparent(req.headers.get("traceparent"), w_.ids(), ex_.traceparent);
  std::string_view upgrade = req.headers.get("upgrade");
  ex_.websocket = req.upgrade && req.method == "GET" && http::iequals(upgrade, "websocket");
  // Other upgrades (h2c, ...) are not forwarded: without the Upgrade header the backend answers
  // in HTTP/1.1 and the connection simply goes on.
  std::string_view expect = req.headers.get("expect");
  if (!expect.empty()) {
    if (!http::iequals(expect, "100-continue")) {
      sendLocalReply(417, "expectation_failed", true);
      return;
    }
    ex_.expectContinue = req.hasBody();
  }
  if (ex_.route->filters.empty()) {
    pickAndConnect();
    return;
  }
  middleware::RequestContext& ctx = ex_.ctx;
  ctx.request = &req;
  ctx.clientIp = ex_.clientIp.empty() ? std::string_view(peerIp_) : ex_.clientIp;
  ctx.routeName = ex_.route->name;
  ctx.requestId = ex_.requestId;
  for (const auto& f : ex_.route->filters) ex_.filters.push_back(f->create(*this));
  runFilters();
}

void ClientConnection::runFilters() {
  const uint64_t exchange = exchangeSeq_;
  while (ex_.nextFilter < ex_.filters.size()) {
    middleware::Filter& f = *ex_.filters[ex_.nextFilter++];
    const middleware::Status st = f.onRequestHeaders(ex_.ctx);
    // A filter that answered itself (401, 429, ...) may already have ended this exchange and
    // destroyed the filters: look at nothing of it any more.
    if (exchange != exchangeSeq_ || ex_.responseStarted || state_ == State::Closed ||
        state_ == State::Lingering)
      return;
    if (st == middleware::Status::Stop) {
      ex_.filterWaiting = true;  // it calls resume() or sendLocalReply() later
      return;
    }
  }
  pickAndConnect();
}

void ClientConnection::resume() {
  if (!ex_.filterWaiting || state_ != State::Proxying) return;
  ex_.filterWaiting = false;
  runFilters();
  flushUpstream();
  flushClient();
}

void ClientConnection::sendLocalReply(int status, std::string_view code,
                                      std::string_view extraHeaders) {
  if (state_ != State::Proxying || ex_.responseStarted) return;
  ex_.filterWaiting = false;
  const http::RequestHead& req = parser_.request();
  sendLocalReply(status, code, req.hasBody() && !ex_.requestComplete, extraHeaders);
}

middleware::WorkerServices& ClientConnection::services() { return w_.services(); }

void ClientConnection::filtersOnResponse(int status) {
  if (ex_.filtersResponded) return;
  ex_.filtersResponded = true;
  for (auto& f : ex_.filters) f->onResponseHeaders(ex_.ctx, status);
}

void ClientConnection::destroyFilters() {
  for (auto& f : ex_.filters) f->onDestroy();
  ex_.filters.clear();
}

bool ClientConnection::answerHealth(std::string_view path) {
  int status;
  std::string body;
  if (!admin::healthResponse(path, *snap_, status, body)) return false;
  ex_.status = status;
  std::string& s = out_.beginScratch();
  s.append(status == 200 ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 503 Service Unavailable\r\n");
  s.append("Content-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: ");
  s.append(std::to_string(body.size()));
  s.append("\r\nX-Request-Id: ");
  s.append(ex_.requestId);
  s.append("\r\n");
  s.append(listener_->responseHeaders);
  bool close = !ex_.keepAlive || (parser_.request().hasBody() && !ex_.requestComplete);
  if (close) s.append("Connection: close\r\n");
  s.append("\r\n");
  if (!ex_.headRequest) s.append(body);
  out_.endScratch();
  ex_.bytesSent += s.size();
  finishRequest();
  if (close)
    closeAfterFlush();
  else
    startNextRequest();
  return true;
}

bool ClientConnection::waitForBackend(uint64_t nowMs) {
  if (!ex_.queued) {
    if (tQueued >= kMaxQueued) return false;
    ex_.queued = true;
    ++tQueued;
    ex_.queueDeadlineMs = nowMs + uint64_t(ex_.pool->settings.connectTimeout.count());
  }
  if (nowMs >= ex_.queueDeadlineMs) {
    ex_.queued = false;
    --tQueued;
    return false;
  }
  armTimer(kQueuePollMs);
  return true;
}

void ClientConnection::pickAndConnect() {
  const upstream::Pool* pool = ex_.pool;
  upstream::PickRequest pr;
  pr.skip = ex_.tried;
  pr.skipCount = ex_.triedCount;
  pr.nowMs = upstream::monotonicMs();
  if (pool->settings.balance == config::Balance::Hash)
    pr.hash = upstream::requestHash(pool->settings.hashKey, parser_.request().headers,
                                    ex_.clientIp.empty() ? std::string_view(peerIp_) : ex_.clientIp);
  upstream::PickResult picked = w_.balancer(pool).pick(*pool, pr);
  int idx = picked.index;
  if (idx < 0 && picked.saturated && waitForBackend(pr.nowMs)) return;
  if (ex_.queued) {
    ex_.queued = false;
    --tQueued;
  }
  if (idx < 0) {
    bool closeConn = parser_.request().hasBody() && !ex_.requestComplete;
    if (ex_.attempts == 0)
      sendLocalReply(503, "no_healthy_backend", closeConn);
    else
      sendLocalReply(502, "bad_gateway", closeConn);
    return;
  }
  ex_.backend = pool->backends[size_t(idx)];
  ex_.backend->active.fetch_add(1, std::memory_order_relaxed);
  if (ex_.upstreamStartNs == 0) ex_.upstreamStartNs = uv_hrtime();
  upstream::UpstreamConn* up = w_.connPool().acquire(ex_.backend.get(), pool->tls != nullptr);
  if (up) {
    ex_.up = up;
    up->attach(this);
    onUpstreamConnected(up);
    return;
  }
  up = new upstream::UpstreamConn(w_.loop(), w_.connPool(), ex_.backend, w_.readBuffer(),
                                  w_.plainBuffer(), Worker::kReadBufferSize);
  ex_.up = up;
  const auto& ps = pool->settings;
  up->connect(this, uint64_t(ps.connectTimeout.count()), pool->tls.get(),
              ps.tlsServerName.empty() ? ex_.backend->host : ps.tlsServerName);
}

void ClientConnection::onUpstreamConnected(upstream::UpstreamConn* up) {
  sendRequestHead();
  const auto& ps = ex_.pool->settings;
  up->startResponse(uint64_t(ps.responseTimeout.count()), ex_.headRequest, ex_.requestComplete);
  if (ex_.websocket) {
    flushUpstream();  // the client's bytes wait in the stash until the 101
    return;
  }
  if (!ex_.requestComplete) {
    if (ex_.expectContinue && stash_.empty()) {
      out_.copy("HTTP/1.1 100 Continue\r\n\r\n");
      flushClient();
    }
    parser_.resume();
    ex_.bodyFlowing = true;
    feedStash();
    if (state_ == State::Proxying && !ex_.requestComplete) {
      armTimer(uint64_t(snap_->config.server.clientIdleTimeout.count()));
      if (!ex_.up || ex_.up->out().queuedBytes() < kHighWater) startReading();
    }
  }
  flushUpstream();
}

void ClientConnection::sendRequestHead() {
  http::UpstreamRequestInfo info;
  info.target = ex_.target;
  info.clientIp = peerIp_;  // the hop we saw; earlier hops are already in the list
  info.proto = tls_ ? "https" : "http";
  info.requestId = ex_.requestId;
  info.traceparent = ex_.traceparent;
  info.websocket = ex_.websocket;
  // An absolute-form target's authority wins over Host (RFC 9112 3.2.2); an HTTP/1.0 request
  // without Host gets the backend's address, since HTTP/1.1 upstream requires one.
  info.forwardedHost = parser_.request().headers.get("host");
  if (!ex_.authority.empty())
    info.hostOverride = info.forwardedHost = ex_.authority;
  else if (!parser_.request().headers.has("host"))
    info.hostOverride = ex_.backend->address;
  net::OutQueue& o = ex_.up->out();
  http::serializeUpstreamRequest(parser_.request(), info, o.beginScratch());
  o.endScratch();
}

int ClientConnection::onUpstreamHead(upstream::UpstreamConn* up, http::ResponseHead& head) {
  (void)up;
  const http::RequestHead& req = parser_.request();
  ex_.upstreamEndNs = uv_hrtime();
  ex_.status = head.status;
  if (head.status >= 500)
    upstream::reportFailure(*ex_.pool, *ex_.backend, upstream::monotonicMs());
  else
    upstream::reportSuccess(*ex_.pool, *ex_.backend, upstream::monotonicMs());
  http::ClientResponseInfo info;
  info.requestId = ex_.requestId;
  info.http10Client = req.versionMinor == 0;
  info.extraHeaders = listener_->responseHeaders;
  if (head.status == 101) {
    if (!ex_.websocket) return kAbort;
    info.upgrade = true;
    info.framing = http::BodyFraming::None;
    std::string& s = out_.beginScratch();
    size_t before = s.size();
    http::serializeClientResponse(head, info, s);
    ex_.bytesSent += s.size() - before;
    out_.endScratch();
    ex_.responseStarted = true;
    return kUpgrade;
  }
  if (shuttingDown_ || w_.draining()) ex_.keepAlive = false;
  const bool noBody = ex_.headRequest || head.status == 204 || head.status == 304;
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
    ex_.keepAlive = false;
  }
  // A request still sending its body when the answer comes cannot leave the connection in a
  // known state unless we drain it; closing is simpler and what nginx does too.
  if (!ex_.requestComplete || ex_.mustClose || ex_.websocket) ex_.keepAlive = false;
  info.keepAlive = ex_.keepAlive;
  if (!ex_.filters.empty()) {
    filtersOnResponse(head.status);
    info.extraHeaders2 = ex_.ctx.responseHeaders;
  }
  ex_.framing = noBody ? http::BodyFraming::None : info.framing;
  std::string& s = out_.beginScratch();
  size_t before = s.size();
  http::serializeClientResponse(head, info, s);
  ex_.bytesSent += s.size() - before;
  out_.endScratch();
  ex_.responseStarted = true;
  return noBody ? kNoBody : kBody;
}

bool ClientConnection::onUpstreamBody(upstream::UpstreamConn*, const char* data, size_t len) {
  if (ex_.framing == http::BodyFraming::Chunked) {
    std::string& s = out_.beginScratch();
    http::appendChunkHeader(len, s);
    out_.endScratch();
    out_.ref(data, len);
    out_.copy("\r\n");
  } else {
    out_.ref(data, len);
  }
  ex_.bytesSent += len;
  ex_.bodyBytesSent += len;
  return true;
}

void ClientConnection::onUpstreamComplete(upstream::UpstreamConn*) {
  if (ex_.framing == http::BodyFraming::Chunked) out_.copy("0\r\n\r\n");
  const bool reusable = ex_.requestComplete && !ex_.websocket;
  releaseUpstream(reusable);
  finishRequest();
  if (!ex_.keepAlive || ex_.mustClose) {
    closeAfterFlush();
    return;
  }
  startNextRequest();
}

void ClientConnection::onUpstreamError(upstream::UpstreamConn* up, UpstreamErrorKind kind,
                                       bool responseBytes) {
  (void)up;  // already closed by UpstreamConn
  w_.metrics().upstreamError(ex_.pool->nameId, ex_.backend->addressId, kind);
  ex_.backend->active.fetch_sub(1, std::memory_order_relaxed);
  const bool wasReused = ex_.up && ex_.up->reused();
  ex_.up = nullptr;
  // Passive health: every failure counts except a pooled connection the backend had already
  // closed (retried below without blame). A refused connect also re-resolves host names.
  if (!(wasReused && kind == UpstreamErrorKind::Reset && !ex_.responseStarted && !responseBytes))
    upstream::reportFailure(*ex_.pool, *ex_.backend, upstream::monotonicMs());
  if (kind == UpstreamErrorKind::ConnectFailed) upstream::requestResolve();
  if (state_ == State::Tunnel) {
    close();
    return;
  }
  if (ex_.responseStarted) {
    close();  // a truncated response must not look complete
    return;
  }
  const std::string_view method = parser_.request().method;
  const bool connectError = kind == UpstreamErrorKind::ConnectFailed ||
                            kind == UpstreamErrorKind::ConnectTimeout ||
                            kind == UpstreamErrorKind::TlsHandshake;
  const bool replayable = !ex_.bodyStarted && !responseBytes;
  // A pooled connection the backend closed just before we used it: not the backend's fault,
  // retry on a fresh connection without counting an attempt.
  if (wasReused && !ex_.staleRetried && kind == UpstreamErrorKind::Reset && replayable &&
      isIdempotent(method) && !ex_.websocket) {
    ex_.staleRetried = true;
    ex_.backend.reset();
    pickAndConnect();
    return;
  }
  const bool retryable =
      replayable && !ex_.websocket &&
      (connectError || (kind == UpstreamErrorKind::Reset && isIdempotent(method)));
  if (retryable && ex_.attempts < ex_.pool->settings.retries) {
    if (ex_.triedCount < std::size(ex_.tried)) ex_.tried[ex_.triedCount++] = ex_.backend.get();
    ex_.attempts++;
    ex_.backend.reset();
    pickAndConnect();
    return;
  }
  ex_.attempts++;
  bool closeConn = !ex_.requestComplete;
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
  out_.ref(data, len);
  ex_.bytesSent += len;
}

void ClientConnection::onUpstreamTunnelEof(upstream::UpstreamConn*) {
  closeAfterFlush();
}

void ClientConnection::afterUpstreamRead(upstream::UpstreamConn* up) {
  if (state_ == State::Proxying && ex_.up == up && ex_.status == 101 && ex_.websocket) {
    // The 101 went out: from now on both directions are raw bytes.
    state_ = State::Tunnel;
    disarmTimer();
    up->enterTunnel();
    if (!stash_.empty()) {
      up->out().copy(stash_);
      stash_.clear();
      flushUpstream();
    }
    startReading();
  }
  flushClient();
  if (ex_.up == up && out_.queuedBytes() > kHighWater) {
    up->pauseReading();
    upstreamPaused_ = true;
  }
}

void ClientConnection::onUpstreamDrained(upstream::UpstreamConn* up) {
  if (ex_.up != up) return;
  if ((state_ == State::Proxying && ex_.headProcessed && !ex_.requestComplete) ||
      state_ == State::Tunnel)
    startReading();
}

void ClientConnection::releaseUpstream(bool reusable) {
  if (!ex_.up) return;
  ex_.backend->active.fetch_sub(1, std::memory_order_relaxed);
  ex_.up->release(reusable, uint64_t(ex_.pool->settings.idleTimeout.count()));
  ex_.up = nullptr;
}

void ClientConnection::abortUpstream() {
  if (!ex_.up) return;
  ex_.backend->active.fetch_sub(1, std::memory_order_relaxed);
  ex_.up->close();
  ex_.up = nullptr;
}

void ClientConnection::sendLocalReply(int status, std::string_view code, bool closeConn,
                                      std::string_view extraHeaders) {
  if (ex_.requestId.empty()) w_.ids().requestId(ex_.requestId);
  if (shuttingDown_ || w_.draining()) closeConn = true;
  if (!ex_.keepAlive) closeConn = true;
  ex_.status = status;
  abortUpstream();
  std::string extras(listener_ ? std::string_view(listener_->responseHeaders) : "");
  if (!ex_.filters.empty()) {
    filtersOnResponse(status);
    extras.append(ex_.ctx.responseHeaders);
  }
  extras.append(extraHeaders);
  std::string& s = out_.beginScratch();
  size_t before = s.size();
  http::serializeLocalReply(status, code, ex_.requestId, !closeConn, ex_.headRequest, s,
                            extras);
  ex_.bytesSent += s.size() - before;
  out_.endScratch();
  ex_.responseStarted = true;
  finishRequest();
  if (closeConn) {
    lingerClose();
  } else {
    startNextRequest();
  }
}

void ClientConnection::finishRequest() {
  if (ex_.logged) return;
  ex_.logged = true;
  uint64_t end = uv_hrtime();
  if (ex_.startNs == 0) ex_.startNs = end;
  double seconds = double(end - ex_.startNs) / 1e9;
  uint32_t routeId = ex_.route ? ex_.route->nameId : 0;
  uint32_t poolId = ex_.pool ? ex_.pool->nameId : 0;
  w_.metrics().request(routeId, poolId, ex_.status, seconds);
  for (auto& f : ex_.filters) f->onComplete(ex_.ctx);
  if (observe::LogWriter::instance().accessEnabled()) {
    observe::AccessRecord rec;
    const http::RequestHead& req = parser_.request();
    rec.requestId = ex_.requestId;
    rec.clientIp = ex_.clientIp.empty() ? std::string_view(peerIp_) : ex_.clientIp;
    rec.method = req.method;
    rec.host = ex_.host;
    rec.path = req.target;
    rec.status = ex_.status;
    rec.bytesSent = ex_.bytesSent;
    rec.bodyBytesSent = ex_.bodyBytesSent;
    rec.durationMs = seconds * 1000.0;
    rec.upstream = ex_.backend ? std::string_view(ex_.backend->address) : std::string_view();
    rec.upstreamMs = ex_.upstreamStartNs && ex_.upstreamEndNs
                         ? double(ex_.upstreamEndNs - ex_.upstreamStartNs) / 1e6
                         : -1;
    rec.route = ex_.route ? std::string_view(ex_.route->name) : std::string_view();
    rec.pool = ex_.pool ? std::string_view(ex_.pool->name) : std::string_view();
    rec.userAgent = req.headers.get("user-agent");
    rec.referer = req.headers.get("referer");
    rec.httpMinor = req.versionMinor;
    if (tls_ && tls_->handshakeDone()) rec.tls = tls_->version();
    rec.ratelimit = ex_.ctx.ratelimit;
    observe::appendAccessLine(w_.accessBuffer(), rec);
  }
}

void ClientConnection::startNextRequest() {
  // The answer may have been produced outside a client read callback (upstream error, timer):
  // write it now.
  flushClient();
  if (state_ == State::Closed) return;
  destroyFilters();
  ex_.reset();
  ++exchangeSeq_;
  state_ = State::ReadingHead;
  parser_.next();
  parser_.setMaxHeadBytes(size_t(w_.snapshot()->config.server.maxHeaderSize));
  if (shuttingDown_ || w_.draining()) {
    closeAfterFlush();
    return;
  }
  headTimer_ = false;
  if (tls_) tls_->trim();
  armTimer(uint64_t(snap_->config.server.clientIdleTimeout.count()));
  if (!stash_.empty()) {
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
  if (!timerRunning_ || deadline_ < timerDue_) {
    uv_timer_start(&timer_, onTimer, ms, 0);
    timerRunning_ = true;
    timerDue_ = deadline_;
  }
}

void ClientConnection::disarmTimer() { deadline_ = 0; }

void ClientConnection::onTimer(uv_timer_t* t) {
  auto* self = static_cast<ClientConnection*>(t->data);
  self->timerRunning_ = false;
  if (self->deadline_ == 0) return;
  uint64_t now = uv_now(self->w_.loop());
  if (now < self->deadline_) {
    self->timerDue_ = self->deadline_;
    self->timerRunning_ = true;
    uv_timer_start(&self->timer_, onTimer, self->deadline_ - now, 0);
    return;
  }
  self->deadline_ = 0;
  switch (self->state_) {
    case State::ReadingHead:
      if (self->tls_ && !self->tls_->handshakeDone())
        self->w_.metrics().tlsHandshakeError(self->listenerNameId_, "handshake_timeout");
      if (self->parser_.messageStarted())
        self->sendLocalReply(408, "request_timeout", true);
      else
        self->close();  // idle keep-alive, or a connection that never sent a byte
      break;
    case State::Proxying:
      if (self->ex_.queued) {  // waiting for a backend under max_connections: try again
        self->pickAndConnect();
        self->flushUpstream();
        self->flushClient();
        break;
      }
      if (self->ex_.requestComplete) break;
      // The client stopped sending its body.
      self->abortUpstream();
      if (!self->ex_.responseStarted)
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
  if (state_ == State::Closed) return;
  if (out_.flush() < 0) close();
}

void ClientConnection::flushUpstream() {
  if (!ex_.up) return;
  upstream::UpstreamConn* up = ex_.up;
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
  if (self->state_ == State::Closed) return;
  if (status < 0) {
    self->close();
    return;
  }
  if (self->out_.queuedBytes() == 0 && self->closeAfterFlush_) {
    self->closeAfterFlush_ = false;
    if (self->state_ == State::Lingering)
      self->lingerClose();
    else
      self->close();
    return;
  }
  if (self->upstreamPaused_ && self->out_.queuedBytes() < kHighWater / 4) {
    self->upstreamPaused_ = false;
    if (self->ex_.up) self->ex_.up->resumeReading();
  }
}

void ClientConnection::closeAfterFlush() {
  flushClient();
  if (tls_ && !tlsFailed_ && state_ != State::Closed) {
    tls_->shutdown();  // close_notify after the last response
    flushClient();
  }
  if (state_ == State::Closed) return;
  if (out_.queuedBytes() == 0) {
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
  if (out_.queuedBytes() > 0) {
    closeAfterFlush_ = true;
    return;
  }
  if (uv_shutdown(&shutdownReq_, reinterpret_cast<uv_stream_t*>(&tcp_), onShutdown) != 0) {
    close();
    return;
  }
  armTimer(kLingerMs);
  startReading();
}

void ClientConnection::onShutdown(uv_shutdown_t* req, int status) {
  auto* self = static_cast<ClientConnection*>(req->data);
  if (status < 0 && self->state_ != State::Closed) self->close();
}

void ClientConnection::beginShutdown() {
  shuttingDown_ = true;
  if (state_ == State::ReadingHead && !parser_.messageStarted() && stash_.empty()) close();
}

void ClientConnection::close() {
  if (state_ == State::Closed) return;
  if (ex_.headProcessed && !ex_.logged) {
    if (ex_.status == 0) ex_.status = 499;  // client went away first (nginx's convention)
    finishRequest();
  }
  abortUpstream();
  ++exchangeSeq_;
  destroyFilters();
  if (tls_ && !tlsFailed_ && tls_->handshakeDone()) {
    // Best effort: a clean TLS close keeps the session resumable from the server cache.
    tls_->shutdown();
    out_.flush();
  }
  if (ex_.queued) {
    ex_.queued = false;
    --tQueued;
  }
  state_ = State::Closed;
  reading_ = false;
  closing_ = 2;
  w_.removeConnection(this);
  if (listenerNameId_) w_.metrics().connectionsActive[listenerNameId_]--;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), onClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), onClosed);
}

void ClientConnection::onClosed(uv_handle_t* h) {
  auto* self = static_cast<ClientConnection*>(h->data);
  if (--self->closing_ == 0) delete self;
}

}  // namespace sluice
