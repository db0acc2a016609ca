#include "proxy/exchange/upstream_request.h"

#include "proxy/upstream/retry_policy.h"
#include "proxy/worker.h"

namespace sluice {

using observe::UpstreamErrorKind;
using upstream::AttemptOutcome;

UpstreamRequest::~UpstreamRequest() {
  abort();
}

void UpstreamRequest::start(const upstream::Pool* pool, const http::RequestHead* head,
                            const http::UpstreamRequestInfo& info, uint64_t hash,
                            bool requestComplete, const upstream::OutcomeSink* sink) {
  pool_ = pool;
  sink_ = sink;
  head_ = head;
  info_ = info;
  headRequest_ = head->method == "HEAD";
  // An HTTP/1.0 request without Host gets the backend's address: HTTP/1.1 upstream needs one.
  hostFromBackend_ = info.hostOverride.empty() && !head->headers.has(http::Hdr::Host);
  hash_ = hash;
  requestComplete_ = requestComplete;
  attempt();
}

void UpstreamRequest::reset() {
  abort();
  stopWaiting();
  pool_ = nullptr;
  sink_ = nullptr;
  head_ = nullptr;
  backend_.reset();
  triedCount_ = 0;
  hash_ = startNs_ = attemptNs_ = headNs_ = waitDeadlineMs_ = 0;
  attempts_ = 0;
  requestComplete_ = bodySent_ = staleRetried_ = ready_ = headSeen_ = false;
  headRequest_ = hostFromBackend_ = closeOnRelease_ = false;
}

void UpstreamRequest::stopWaiting() {
  if (!waitingSlot_) return;
  waitingSlot_ = false;
  w_.slotQueue().remove(this);
  cb_.setUpstreamDeadline(0);
}

// ---------------------------------------------------------------- picking and connecting

bool UpstreamRequest::attempt() {
  upstream::PickRequest pr;
  pr.skip = tried_;
  pr.skipCount = triedCount_;
  pr.nowMs = upstream::monotonicMs();
  pr.hash = hash_;
  upstream::Balancer& balancer = w_.balancer(pool_);
  upstream::PickResult picked = balancer.pick(*pool_, pr);
  // The pick saw a free slot; another worker may take it first: reserve it atomically.
  const uint32_t max = pool_->settings.maxConnections;
  if (picked.index >= 0 && !pool_->backends[size_t(picked.index)]->tryAcquireSlot(max)) {
    picked.index = -1;
    picked.saturated = true;
  }
  if (picked.index < 0 && picked.saturated) {
    if (!waitingSlot_) {
      if (w_.slotQueue().add(this)) {
        waitingSlot_ = true;
        waitDeadlineMs_ = pr.nowMs + uint64_t(pool_->settings.connectTimeout.count());
        cb_.setUpstreamDeadline(uint64_t(pool_->settings.connectTimeout.count()));
        return false;
      }
    } else {
      return false;  // keeps its place in the queue
    }
  }
  stopWaiting();
  if (picked.index < 0) {
    if (attempts_ == 0)
      cb_.onUpstreamFailed(503, "no_healthy_backend");
    else
      cb_.onUpstreamFailed(502, "bad_gateway");
    return true;
  }
  backend_ = pool_->backends[size_t(picked.index)];
  connect();
  return true;
}

bool UpstreamRequest::onSlotFreed() {
  if (!waitingSlot_) return true;
  if (upstream::monotonicMs() >= waitDeadlineMs_) {
    onDeadline();
    return true;
  }
  const bool done = attempt();
  if (done) {
    flush();
    cb_.afterUpstreamRead(false);  // write what the attempt queued for the client (a reply)
  }
  return done;
}

void UpstreamRequest::onDeadline() {
  if (!waitingSlot_) return;
  stopWaiting();
  cb_.onUpstreamFailed(attempts_ == 0 ? 503 : 502,
                       attempts_ == 0 ? "no_healthy_backend" : "bad_gateway");
}

void UpstreamRequest::connect() {
  attemptNs_ = w_.nowNs();
  if (startNs_ == 0) startNs_ = attemptNs_;
  ready_ = false;
  upstream::UpstreamConn* up = w_.connPool().acquire(backend_.get(), pool_->tls != nullptr);
  if (up) {
    up_ = up;
    up->attach(this);
    onUpstreamConnected(up);
    return;
  }
  up = new upstream::UpstreamConn(w_.loop(), w_.connPool(), backend_, w_.readBuffer(),
                                  w_.plainBuffer(), Worker::kReadBufferSize);
  up_ = up;
  const auto& ps = pool_->settings;
  up->connect(this, uint64_t(ps.connectTimeout.count()), pool_->tls.get(),
              ps.tlsServerName.empty() ? backend_->host : ps.tlsServerName);
}

void UpstreamRequest::sendHead() {
  if (hostFromBackend_) info_.hostOverride = backend_->address;
  net::OutQueue& o = up_->out();
  http::serializeUpstreamRequest(*head_, info_, o.beginScratch());
  o.endScratch();
}

void UpstreamRequest::onUpstreamConnected(upstream::UpstreamConn* up) {
  sendHead();
  ready_ = true;
  up->startResponse(uint64_t(pool_->settings.responseTimeout.count()), headRequest_,
                    requestComplete_);
  cb_.onUpstreamReady();
}

// ---------------------------------------------------------------- request body

void UpstreamRequest::sendData(const char* data, size_t len) {
  if (!up_) return;
  net::OutQueue& o = up_->out();
  if (head_->chunked) {
    std::string& s = o.beginScratch();
    http::appendChunkHeader(len, s);
    o.endScratch();
    o.ref(data, len);
    o.copy("\r\n");
  } else {
    o.ref(data, len);
  }
  bodySent_ = true;
}

void UpstreamRequest::sendEnd() {
  if (up_ && head_->chunked) up_->out().copy("0\r\n\r\n");
}

void UpstreamRequest::requestComplete() {
  requestComplete_ = true;
  if (up_ && ready_) up_->armResponseTimer();
}

void UpstreamRequest::sendTunnelData(const char* data, size_t len) {
  if (up_) up_->out().ref(data, len);
}

void UpstreamRequest::shutdownTunnel() {
  if (up_) up_->shutdownWrite();
}

bool UpstreamRequest::flush() {
  if (!up_) return true;
  upstream::UpstreamConn* up = up_;
  if (up->flush() < 0) {
    // The write failed synchronously: treat like a reset.
    up->close();
    onUpstreamError(up, UpstreamErrorKind::Reset, false);
    return false;
  }
  return true;
}

size_t UpstreamRequest::queuedBytes() const {
  return up_ ? up_->out().queuedBytes() : 0;
}
void UpstreamRequest::pauseReading() {
  if (up_) up_->pauseReading();
}
void UpstreamRequest::resumeReading() {
  if (up_) up_->resumeReading();
}
void UpstreamRequest::holdForClient() {
  if (up_) up_->holdForClient();
}
void UpstreamRequest::enterTunnel() {
  if (up_) up_->enterTunnel();
}
long UpstreamRequest::spliceTo(int pipeWr, size_t max) {
  return up_ ? up_->spliceTo(pipeWr, max) : -1;
}
void UpstreamRequest::finishSplice(uint64_t n) {
  if (up_) up_->finishSplice(n);
}

// ---------------------------------------------------------------- response and outcome

void UpstreamRequest::emit(const AttemptOutcome& o) {
  if (o.kind == AttemptOutcome::Kind::Failure)
    w_.metrics().upstreamError(pool_->nameId, backend_->addressId, o.error);
  const uint64_t nowMs = upstream::monotonicMs();
  upstream::recordOutcome(*pool_, *backend_, o, nowMs);
  if (sink_ != nullptr) sink_->onOutcome(*pool_, o, nowMs);
}

int UpstreamRequest::onUpstreamHead(upstream::UpstreamConn*, http::ResponseHead& head) {
  headNs_ = w_.nowNs();
  headSeen_ = true;
  AttemptOutcome o;
  o.kind = AttemptOutcome::Kind::Response;
  o.status = head.status;
  o.latencyNs = headNs_ - attemptNs_;
  emit(o);
  w_.metrics().upstreamResponse(pool_->nameId, double(o.latencyNs) / 1e9);
  return cb_.onUpstreamHeaders(head);
}

void UpstreamRequest::onUpstreamInterim(upstream::UpstreamConn*, const http::ResponseHead& head) {
  cb_.onUpstreamInterim(head);
}

bool UpstreamRequest::onUpstreamBody(upstream::UpstreamConn*, const char* data, size_t len) {
  return cb_.onUpstreamData(data, len);
}

void UpstreamRequest::onUpstreamComplete(upstream::UpstreamConn*) {
  cb_.onUpstreamEnd();
}

void UpstreamRequest::giveBackSlot() {
  backend_->releaseSlot();
  w_.slotQueue().slotReleased();
}

void UpstreamRequest::release(bool reusable) {
  if (!up_) return;
  giveBackSlot();
  up_->release(reusable && !closeOnRelease_, uint64_t(pool_->settings.idleTimeout.count()));
  up_ = nullptr;
}

void UpstreamRequest::abort() {
  if (!up_) return;
  giveBackSlot();
  up_->close();
  up_ = nullptr;
}

void UpstreamRequest::onUpstreamError(upstream::UpstreamConn*, UpstreamErrorKind kind,
                                      bool responseBytes) {
  // The connection is already closed by UpstreamConn.
  upstream::AttemptFailure f;
  f.kind = kind;
  f.reusedConnection = up_ && up_->reused();
  f.staleRetried = staleRetried_;
  f.bodySent = bodySent_;
  f.responseBytes = responseBytes || headSeen_;
  f.idempotent = upstream::isIdempotentMethod(head_->method);
  f.websocket = info_.websocket;
  f.attempts = attempts_;
  f.maxRetries = pool_->settings.retries;
  up_ = nullptr;
  AttemptOutcome o;
  o.kind = AttemptOutcome::Kind::Failure;
  o.error = kind;
  o.blame = upstream::blameBackend(f);
  o.afterHead = headSeen_;
  o.latencyNs = w_.nowNs() - attemptNs_;
  emit(o);
  giveBackSlot();
  if (headSeen_) {
    cb_.onUpstreamAborted();  // a truncated response must not look complete
    return;
  }
  switch (upstream::decideRetry(f)) {
    case upstream::RetryDecision::RetryStale:
      staleRetried_ = true;
      backend_.reset();
      attempt();
      return;
    case upstream::RetryDecision::Retry:
      if (triedCount_ < std::size(tried_)) tried_[triedCount_++] = backend_.get();
      attempts_++;
      backend_.reset();
      attempt();
      return;
    case upstream::RetryDecision::Fail:
      attempts_++;
      cb_.onUpstreamFailed(upstream::failureStatus(kind),
                           kind == UpstreamErrorKind::Timeout ? "gateway_timeout" : "bad_gateway");
      return;
  }
}

void UpstreamRequest::onUpstreamTunnelData(upstream::UpstreamConn*, const char* data, size_t len) {
  cb_.onUpstreamTunnelData(data, len);
}

void UpstreamRequest::onUpstreamTunnelEof(upstream::UpstreamConn*) {
  cb_.onUpstreamTunnelEnd();
}

void UpstreamRequest::afterUpstreamRead(upstream::UpstreamConn* up) {
  cb_.afterUpstreamRead(up != nullptr && up == up_);
}

void UpstreamRequest::onUpstreamDrained(upstream::UpstreamConn* up) {
  if (up == up_) cb_.onUpstreamDrained();
}

bool UpstreamRequest::onUpstreamSpliceable(upstream::UpstreamConn* up, uint64_t remaining) {
  return up == up_ && cb_.onUpstreamSpliceable(remaining);
}

void UpstreamRequest::onUpstreamReadable(upstream::UpstreamConn* up) {
  if (up == up_) cb_.onUpstreamReadable();
}

}  // namespace sluice
