// The exchange's phases (see exchange.h) and its response path.
#include "proxy/exchange/exchange.h"

#include "proxy/admin/health.h"
#include "proxy/net/client_ip.h"
#include "proxy/observe/access_log.h"
#include "proxy/observe/ids.h"
#include "proxy/worker.h"
#include "tls/tls_session.h"

namespace sluice {

namespace {
constexpr size_t kHighWater = 256 * 1024;  // stop reading the other side above this
}

// ---------------------------------------------------------------- phases

void Exchange::decodeHeaders(http::RequestHead& head, bool endOfRequest) {
  s_.requestComplete = endOfRequest;
  begin(head);
  std::string_view path, query, hostFromTarget;
  if (!normalizeTarget(path, query, hostFromTarget)) return;
  if (listener_ && !listener_->cfg.redirectHttps.empty()) {
    redirectHttps(path, query);
    return;
  }
  if (!matchRoute(path, query, hostFromTarget)) return;
  runFilters();
}

void Exchange::begin(http::RequestHead& head) {
  // Each request runs on the newest config generation; it keeps that one until it is done.
  // A stream (and this exchange) moves between connections, possibly of other listeners.
  const SnapshotPtr& newest = w_.snapshot();
  const bool otherListener = down_->listenerKey != listenerKey_;
  if (newest != snap_ || otherListener) {
    const ListenerSpec* l = newest->listener(*down_->listenerKey);
    // A listener removed by a reload: its connections finish on the generation they had.
    if (l != nullptr || !snap_ || otherListener) {
      snap_ = newest;
      listener_ = l;
      listenerKey_ = down_->listenerKey;
    }
  }
  req_ = &head;
  dirty_ = true;
  s_.started = true;
  s_.startNs = w_.nowNs();
  s_.headRequest = head.method == "HEAD";
  s_.clientIp = net::realClientIp(down_->peerIp, head.headers, snap_->config.server.trustedProxies,
                                  clientIpBuf_);
  if (s_.clientIp.empty()) s_.clientIp = down_->peerIp;
  std::string_view rid = head.headers.get(http::Hdr::XRequestId);
  if (observe::isSaneRequestId(rid))
    requestId_.assign(rid);
  else
    w_.ids().requestId(requestId_);
}

bool Exchange::normalizeTarget(std::string_view& path, std::string_view& query,
                               std::string_view& hostFromTarget) {
  http::RequestHead& req = *req_;
  if (req.method == "CONNECT") {
    sendLocalReply({405, "method_not_allowed"}, true);
    return false;
  }
  if (!router::splitTarget(req.target, hostFromTarget, path, query)) {
    sendLocalReply({400, "bad_request"}, true);
    return false;
  }
  std::string_view hostHeader = req.headers.get(http::Hdr::Host);
  router::normalizeHost(hostFromTarget.empty() ? hostHeader : hostFromTarget, host_);
  authority_.assign(hostFromTarget);
  std::string_view expect = req.headers.get(http::Hdr::Expect);
  if (!expect.empty() && !http::iequals(expect, "100-continue")) {
    sendLocalReply({417, "expectation_failed"}, true);
    return false;
  }
  const uint64_t max = snap_->config.server.maxBodySize;
  if (max && req.hasContentLength && req.contentLength > max) {
    sendLocalReply({413, "payload_too_large"}, true);
    return false;
  }
  std::string_view upgrade = req.headers.get(http::Hdr::Upgrade);
  // Other upgrades (h2c, ...) are not forwarded: without the Upgrade header the backend answers
  // in HTTP/1.1 and the connection simply goes on.
  s_.websocket = req.upgrade && req.method == "GET" && http::iequals(upgrade, "websocket");
  return true;
}

void Exchange::redirectHttps(std::string_view path, std::string_view query) {
  // Template: {host} = request host without port, {uri} = the request-target's path+query.
  std::string loc;
  std::string_view tpl = listener_->cfg.redirectHttps;
  for (size_t i = 0; i < tpl.size();) {
    if (tpl.compare(i, 6, "{host}") == 0) {
      loc.append(host_);
      i += 6;
    } else if (tpl.compare(i, 5, "{uri}") == 0) {
      loc.append(path);
      loc.append(query);
      i += 5;
    } else {
      loc.push_back(tpl[i++]);
    }
  }
  http::LocalReply r;
  r.status = 308;
  r.header("Location", loc);
  sendLocalReply(r, false);
}

bool Exchange::matchRoute(std::string_view path, std::string_view query,
                          std::string_view hostFromTarget) {
  http::RequestHead& req = *req_;
  router::Captures caps;
  s_.route = snap_->routes.match(host_, path, req.method, &caps);
  if (!s_.route) {
    int status;
    std::string body;
    if (admin::healthResponse(path, *snap_, status, body)) {
      http::LocalReply r;
      r.status = status;
      r.body = body;
      r.contentType = "application/json";
      r.header("Cache-Control", "no-store");
      sendLocalReply(r, false);
    } else {
      sendLocalReply({404, "no_route"}, false);
    }
    return false;
  }
  // The upstream target: rewrite, strip_prefix, and origin-form for an absolute-form request.
  target_.clear();
  if (!s_.route->rewrite.empty()) {
    router::expandRewrite(s_.route->rewrite, caps, query, target_);
  } else if (s_.route->stripPrefix && !s_.route->exact) {
    std::string_view rest = path.substr(s_.route->path.size());
    if (rest.empty() || rest[0] != '/') target_.push_back('/');
    target_.append(rest);
    target_.append(query);
  } else if (!hostFromTarget.empty()) {
    target_.assign(path);
    target_.append(query);
  } else {
    target_.assign(req.target);
  }
  const std::string_view incoming = req.headers.get(http::Hdr::Traceparent);
  const config::TracingSettings& tracing = snap_->config.tracing;
  if (!tracing.enabled) {
    observe::nextTraceparent(incoming, w_.ids(), traceparent_);
  } else {
    observe::startTrace(incoming, w_.ids(), observe::sampleThreshold(tracing.sampleRatio),
                        traceparent_, trace_);
    s_.traced = trace_.sampled && w_.spanRing() != nullptr;
  }
  return true;
}

void Exchange::runFilters() {
  if (s_.route->filters.empty()) {
    answerOrProxy();
    return;
  }
  if (filters_.empty()) {
    ctx_.request = req_;
    ctx_.clientIp = s_.clientIp;
    ctx_.routeName = s_.route->name;
    ctx_.requestId = requestId_;
    ctx_.host = host_;
    ctx_.tls = down_->tls != nullptr;
    filters_.create(s_.route->filters, *this);
  }
  const uint32_t gen = generation_;
  if (filters_.runRequest(ctx_, [this, gen] { return alive(gen) && !s_.responseStarted; }) ==
      FilterChain::Result::Done)
    answerOrProxy();
}

void Exchange::answerOrProxy() {
  if (s_.route->answer)
    answerRoute();
  else if (s_.route->files)
    serveFiles();
  else
    startUpstream();
}

void Exchange::answerRoute() {
  // `return = {...}`: the proxy's own answer, no pool (access log and metrics show pool "-").
  const router::FixedAnswer& a = *s_.route->answer;
  http::LocalReply r;
  r.status = a.status;
  r.body = a.body;
  r.contentType = a.contentType;
  std::string location;
  if (!a.location.empty()) {
    // {uri}: the path and query as the client sent them (origin-form of an absolute target).
    std::string_view hostFromTarget, path, query;
    std::string_view uri = req_->target;
    if (router::splitTarget(req_->target, hostFromTarget, path, query))
      uri = std::string_view(path.data(), path.size() + query.size());
    router::expandLocation(a.location, host_, uri, down_->tls ? "https" : "http", location);
    r.header("Location", location);
  }
  sendLocalReply(r, false);
}

const upstream::Pool* Exchange::choosePool() {
  const upstream::Pool* pool = pickPool();
  if (!filters_.empty()) ctx_.poolName = pool->name;  // for the response filters
  return pool;
}

const upstream::Pool* Exchange::pickPool() {
  const router::Route& r = *s_.route;
  if (!r.split) return r.pool;
  // After the filters: a verified JWT claim or a cookie can steer the choice.
  router::SplitRequest sr;
  sr.head = req_;
  sr.clientIp = s_.clientIp;
  sr.attributes = filters_.empty() ? nullptr : &ctx_.attributes;
  const upstream::Pool* pool = w_.splitter().pick(*r.split, sr, w_.ids(), newCohort_);
  w_.metrics().splitRequest(r.nameId, pool->nameId);
  return pool;
}

void Exchange::startUpstream() {
  s_.pool = choosePool();
  http::UpstreamRequestInfo info;
  info.target = target_;
  info.clientIp = down_->peerIp;  // the hop we saw; earlier hops are already in the list
  info.proto = down_->tls ? "https" : "http";
  info.requestId = requestId_;
  info.traceparent = traceparent_;
  info.websocket = s_.websocket;
  // An absolute-form target's authority wins over Host (RFC 9112 3.2.2).
  info.forwardedHost = req_->headers.get(http::Hdr::Host);
  if (!authority_.empty()) info.hostOverride = info.forwardedHost = authority_;
  uint64_t hash = 0;
  if (s_.pool->settings.balance == config::Balance::Hash)
    hash = upstream::requestHash(s_.pool->settings.hashKey, req_->headers, s_.clientIp);
  upstream_->start(s_.pool, req_, info, hash, s_.requestComplete, s_.route->split.get());
}

void Exchange::finish() {
  if (s_.logged) return;
  s_.logged = true;
  const uint64_t end = w_.nowNs();
  if (s_.startNs == 0) s_.startNs = end;
  const double seconds = double(end - s_.startNs) / 1e9;
  const uint32_t routeId = s_.route ? s_.route->nameId : 0;
  const uint32_t poolId = s_.pool ? s_.pool->nameId : 0;
  w_.metrics().request(routeId, poolId, s_.status, seconds);
  filters_.complete(ctx_);
  if (s_.traced) recordSpan(end);
  if (!observe::LogWriter::instance().accessEnabled()) return;
  observe::AccessRecord rec;
  rec.requestId = requestId_;
  if (traceparent_.size() >= 35) rec.traceId = std::string_view(traceparent_).substr(3, 32);
  rec.clientIp = s_.clientIp.empty() ? std::string_view(down_->peerIp) : s_.clientIp;
  if (req_) {
    rec.method = req_->method;
    rec.path = req_->target;
    rec.userAgent = req_->headers.get(http::Hdr::UserAgent);
    rec.referer = req_->headers.get(http::Hdr::Referer);
    rec.httpMinor = req_->versionMinor;
  }
  rec.host = host_;
  rec.status = s_.status;
  rec.bytesSent = s_.bytesSent;
  rec.bodyBytesSent = s_.bodyBytesSent;
  rec.durationMs = seconds * 1000.0;
  if (const upstream::Backend* b = upstream_->backend()) rec.upstream = b->address;
  rec.upstreamMs = upstream_->startNs() && upstream_->headNs()
                       ? double(upstream_->headNs() - upstream_->startNs()) / 1e6
                       : -1;
  rec.route = s_.route ? std::string_view(s_.route->name) : std::string_view();
  rec.pool = s_.pool ? std::string_view(s_.pool->name) : std::string_view();
  if (down_->tls && down_->tls->handshakeDone()) rec.tls = down_->tls->version();
  if (const std::string* rl = ctx_.attributes.get("log", "ratelimit")) rec.ratelimit = *rl;
  observe::appendAccessLine(w_.accessBuffer(), rec);
}

// ---------------------------------------------------------------- request body and tunnel

bool Exchange::decodeData(const char* data, size_t len) {
  s_.requestBodyBytes += len;
  const uint64_t max = snap_->config.server.maxBodySize;
  if (max && s_.requestBodyBytes > max) {
    upstream_->abort();
    if (!s_.responseStarted)
      sendLocalReply({413, "payload_too_large"}, true);
    else
      stream_->reset();
    return false;
  }
  if (!upstream_->connected()) return false;
  upstream_->sendData(data, len);
  return true;
}

void Exchange::decodeEnd() {
  s_.requestComplete = true;
  upstream_->sendEnd();
  // The body is in: the backend's response_timeout starts now (a slow upload is not the
  // backend's delay).
  upstream_->requestComplete();
  upstream_->flush();
}

void Exchange::flushRequest() {
  if (upstream_->flush() && upstream_->queuedBytes() > kHighWater) stream_->pauseReading(true);
}

void Exchange::decodeTunnelData(const char* data, size_t len) {
  upstream_->sendTunnelData(data, len);
  if (upstream_->flush() && upstream_->queuedBytes() > kHighWater) stream_->pauseReading(true);
}

void Exchange::decodeTunnelEnd() {
  upstream_->shutdownTunnel();
}

void Exchange::onTimeout() {
  if (files_.active()) {  // the client took no file bytes for client_idle_timeout
    files_.cancel();
    stream_->reset();
    return;
  }
  if (upstream_->waiting()) {
    upstream_->onDeadline();
    stream_->flush();
    return;
  }
  if (s_.upstreamPaused && s_.requestComplete && !s_.tunnel) {
    const size_t unsent = stream_->unsentBytes();
    if (unsent < s_.sendMark) {  // slow, but taking bytes: wait again
      s_.sendMark = unsent;
      stream_->setTimeout(uint64_t(snap_->config.server.clientIdleTimeout.count()));
      return;
    }
    // The client took nothing for client_idle_timeout: end it (not the backend's fault).
    upstream_->abort();
    stream_->reset();
    return;
  }
  if (s_.requestComplete) return;
  // The client stopped sending its body.
  upstream_->abort();
  if (!s_.responseStarted)
    sendLocalReply({408, "request_timeout"}, true);
  else
    stream_->reset();
}

// ---------------------------------------------------------------- upstream callbacks

void Exchange::onUpstreamReady() {
  if (s_.websocket) {
    upstream_->flush();  // the client's bytes wait until the 101
    return;
  }
  const uint32_t gen = generation_;
  if (!s_.requestComplete) stream_->readBody();  // may complete (or end) the request
  if (!alive(gen)) return;
  if (upstream_->flush() && !s_.requestComplete && upstream_->queuedBytes() > kHighWater)
    stream_->pauseReading(true);
}

int Exchange::onUpstreamHeaders(http::ResponseHead& head) {
  s_.status = head.status;
  ResponseInfo info;
  if (head.status == 101) {
    if (!s_.websocket) return http::Http1Parser::Handler::kAbort;
    info.upgrade = true;
    encodeHeaders(head, info);
    return http::Http1Parser::Handler::kUpgrade;
  }
  info.noBody = s_.headRequest || head.status == 204 || head.status == 304;
  // A request still sending its body when the answer comes cannot leave the connection in a
  // known state unless we drain it; closing is simpler and what nginx does too.
  info.close = !s_.requestComplete || s_.websocket;
  encodeHeaders(head, info);
  return info.noBody ? http::Http1Parser::Handler::kNoBody : http::Http1Parser::Handler::kBody;
}

void Exchange::onUpstreamInterim(const http::ResponseHead& head) {
  // Response filters and listener headers are for the final response only.
  if (s_.responseStarted || s_.ended) return;
  s_.bytesSent += stream_->encodeInterim(head);
}

bool Exchange::onUpstreamData(const char* data, size_t len) {
  s_.bytesSent += stream_->encodeData(data, len);
  s_.bodyBytesSent += len;
  return true;
}

void Exchange::onUpstreamEnd() {
  upstream_->release(s_.requestComplete && !s_.websocket);
  finish();
  endExchange();
}

void Exchange::onUpstreamFailed(int status, std::string_view code) {
  sendLocalReply({status, code}, !s_.requestComplete);
}

void Exchange::onUpstreamAborted() {
  if (s_.responseStarted)
    stream_->reset();  // a truncated response must not look complete
  else
    sendLocalReply({502, "bad_gateway"}, !s_.requestComplete);
}

void Exchange::onUpstreamTunnelData(const char* data, size_t len) {
  // The first bytes may arrive with the 101's head, before afterUpstreamRead switches over.
  stream_->encodeTunnelData(data, len);
  s_.bytesSent += len;
}

void Exchange::onUpstreamTunnelEnd() {
  stream_->endTunnel();
}

void Exchange::afterUpstreamRead(bool current) {
  // Pieces queued for the client may point into the upstream read buffer: write them now,
  // whether or not this exchange has ended meanwhile.
  const uint32_t gen = generation_;
  if (current && s_.status == 101 && s_.websocket && !s_.tunnel) {
    s_.tunnel = true;
    upstream_->enterTunnel();
    stream_->startTunnel();
    if (!alive(gen)) {
      stream_->safePoint();
      return;
    }
  }
  stream_->flush();
  if (current && alive(gen) && upstream_->connected() && stream_->queuedBytes() > kHighWater)
    holdUpstream();
  stream_->safePoint();  // the last thing done with this exchange in the read callback
}

void Exchange::onClientDrained() {
  if (splice_.pipe.valid()) {
    pumpSplice();  // may end this exchange: touch nothing after
    return;
  }
  if (files_.active()) {
    stream_->setTimeout(uint64_t(snap_->config.server.clientIdleTimeout.count()));
    files_.onWritable();  // may end this exchange: touch nothing after
    return;
  }
  if (s_.upstreamPaused && stream_->queuedBytes() < kHighWater / 4) releaseUpstream();
}

// The client cannot take more: stop reading the backend. While the response streams (the
// request is in, not a tunnel), the backend's response_timeout stops too and the client is
// timed instead: client_idle_timeout without taking a byte ends the exchange (onTimeout),
// as nginx's send_timeout. Called again on each progress, it pushes the deadline on.
void Exchange::holdUpstream() {
  upstream_->holdForClient();
  s_.upstreamPaused = true;
  if (s_.requestComplete && !s_.tunnel) {
    s_.sendMark = stream_->unsentBytes();
    stream_->setTimeout(uint64_t(snap_->config.server.clientIdleTimeout.count()));
  }
}

void Exchange::releaseUpstream() {
  s_.upstreamPaused = false;
  if (s_.requestComplete && !s_.tunnel) stream_->setTimeout(0);
  upstream_->resumeReading();
}

void Exchange::onUpstreamDrained() {
  if ((s_.started && !s_.requestComplete) || s_.tunnel) stream_->pauseReading(false);
}

void Exchange::setUpstreamDeadline(uint64_t ms) {
  stream_->setTimeout(ms);
}

Exchange::Drained Exchange::drainPool(uint32_t poolNameId) {
  if (!s_.started || s_.ended || s_.pool == nullptr || s_.pool->nameId != poolNameId)
    return Drained::None;
  if (!s_.tunnel) {
    upstream_->closeOnRelease();
    return Drained::Request;
  }
  upstream_->abort();    // the backend side now,
  stream_->endTunnel();  // the client's once its queued bytes are out: touch nothing after
  return Drained::Tunnel;
}

// ---------------------------------------------------------------- filters

void Exchange::resume() {
  if (!filters_.resume() || s_.ended || s_.responseStarted) return;
  runFilters();
  upstream_->flush();
  stream_->flush();
}

void Exchange::sendLocalReply(const http::LocalReply& reply) {
  if (s_.ended || s_.responseStarted) return;
  filters_.takeWaiting();
  sendLocalReply(reply, !s_.requestComplete);
}

middleware::WorkerServices& Exchange::services() {
  return w_.services();
}

// ---------------------------------------------------------------- responses

const std::string& Exchange::requestId() {
  dirty_ = true;
  if (requestId_.empty()) w_.ids().requestId(requestId_);
  return requestId_;
}

size_t Exchange::encodeHeaders(http::ResponseHead& head, ResponseInfo& info) {
  if (!newCohort_.empty()) {
    // sticky = "auto": the cohort this request was placed by, for the user's next requests.
    setCookie_.assign(router::kCohortCookie);
    setCookie_.append("=")
        .append(newCohort_)
        .append("; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax");
    if (down_->tls) setCookie_.append("; Secure");
    head.headers.add("Set-Cookie", setCookie_);
  }
  filters_.runResponse(ctx_, head);
  info.requestId = requestId_;
  if (listener_) info.extraHeaders = listener_->responseHeaders;
  const size_t n = stream_->encodeHeaders(head, info);
  s_.bytesSent += n;
  s_.responseStarted = true;
  return n;
}

void Exchange::sendLocalReply(const http::LocalReply& reply, bool close) {
  requestId();
  s_.status = reply.status;
  upstream_->abort();
  http::buildLocalReply(reply, requestId_, localHead_, localBody_);
  ResponseInfo info;
  info.local = true;
  info.close = close || !s_.requestComplete;
  // A 204 / 304 is the head only, like an upstream's (no Content-Length: 0 on a 204).
  info.noBody = s_.headRequest || reply.status == 204 || reply.status == 304;
  encodeHeaders(localHead_, info);
  if (!info.noBody && !localBody_.empty()) {
    s_.bytesSent += stream_->encodeData(localBody_.data(), localBody_.size());
    s_.bodyBytesSent += localBody_.size();
  }
  finish();
  endExchange();
}

void Exchange::endExchange() {
  s_.ended = true;
  stream_->encodeEnd();  // may reset() this exchange for the next request: touch nothing after
}

void Exchange::abandon() {
  dirty_ = true;
  if (s_.started && !s_.logged) {
    if (s_.status == 0) s_.status = 499;  // client went away first (nginx's convention)
    finish();
  }
  endSplice();
  upstream_->abort();
  upstream_->reset();
  files_.cancel();
  filters_.destroy();
  s_.ended = true;
}

void Exchange::reset() {
  dirty_ = false;
  endSplice();
  files_.cancel();
  filters_.destroy();
  upstream_->reset();
  s_ = Scalars{};
  ++generation_;
  req_ = nullptr;
  for (std::string* str :
       {&requestId_, &traceparent_, &host_, &target_, &authority_, &clientIpBuf_, &newCohort_})
    str->clear();
  if (ctx_.request) ctx_.reset();  // set only for routes with filters
}

}  // namespace sluice
