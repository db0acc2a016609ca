// HTTP/1.x server codec (see server_codec.h).
#include "proxy/http1/server_codec.h"

namespace sluice::http1 {

using http::Http1Parser;

namespace {
// Pipelined bytes held while a request is in progress; reading stops above this.
constexpr size_t kMaxStash = 64 * 1024;
}  // namespace

void ServerCodec::bind(Transport* t, RequestDecoder* decoder, bool headTimerArmed) {
  t_ = t;
  dec_ = decoder;
  headTimer_ = headTimerArmed;
  parser_.init(Http1Parser::Kind::Request, this, size_t(t->settings().maxHeaderSize));
}

void ServerCodec::recycle() {
  stash_.clear();
  stashWork_.clear();
  phase_ = Phase::ReadingHead;
  framing_ = http::BodyFraming::None;
  headTimer_ = headDelivered_ = requestComplete_ = bodyFlowing_ = closeAfter_ = lingerAfter_ =
      false;
}

bool ServerCodec::idle() const {
  return phase_ == Phase::ReadingHead && !parser_.messageStarted() && stash_.empty() &&
         !dec_->holdsResources();
}

bool ServerCodec::canCloseNow() const {
  return phase_ == Phase::ReadingHead && !parser_.messageStarted() && stash_.empty();
}

// ---------------------------------------------------------------- request side

void ServerCodec::onData(const char* data, size_t len) {
  switch (phase_) {
    case Phase::Tunnel:
      dec_->decodeTunnelData(data, len);
      return;
    case Phase::Active:
      if (!bodyFlowing_) {
        // The parser is paused (head waiting for its upstream, or request complete): keep the
        // bytes for later. Reading goes on, which saves two epoll_ctl calls per keep-alive
        // request; only a client that pipelines a lot is stopped.
        stash_.append(data, len);
        if (stash_.size() > kMaxStash) t_->stopReading();
        return;
      }
      if (!requestComplete_) t_->armTimer(uint64_t(t_->settings().clientIdleTimeout.count()));
      break;
    case Phase::ReadingHead:
      if (!headTimer_) {
        headTimer_ = true;
        t_->armTimer(uint64_t(t_->settings().clientHeaderTimeout.count()));
      }
      break;
  }
  feed(data, len);
  dec_->flushRequest();
  t_->flush();
}

void ServerCodec::feed(const char* data, size_t len) {
  while (len > 0 && !t_->closed()) {
    auto r = parser_.execute(data, len);
    data += r.consumed;
    len -= r.consumed;
    switch (r.status) {
      case Http1Parser::Status::NeedMore:
        return;
      case Http1Parser::Status::HeadComplete:
        // A body follows: it is read only once the exchange asks (readBody), so a failed
        // connect can still go to another backend.
        stash_.append(data, len);
        t_->stopReading();
        headDone(false);
        return;
      case Http1Parser::Status::Upgrade:  // websocket: tunnel or close; others: next()
      case Http1Parser::Status::Complete:
        // Whatever follows is the next request: it waits until this one is answered.
        stash_.append(data, len);
        if (stash_.size() > kMaxStash) t_->stopReading();
        requestComplete_ = true;
        bodyFlowing_ = false;
        if (!headDelivered_)
          headDone(true);
        else
          requestDone();
        return;
      case Http1Parser::Status::Error:
        onParseError();
        return;
    }
  }
}

void ServerCodec::feedStash() {
  if (stash_.empty()) return;
  stashWork_.swap(stash_);
  stash_.clear();
  feed(stashWork_.data(), stashWork_.size());
  // Body pieces may point into stashWork_: write them out before it is reused.
  dec_->flushRequest();
  t_->flush();
  stashWork_.clear();
}

void ServerCodec::headDone(bool complete) {
  headDelivered_ = true;
  phase_ = Phase::Active;
  t_->disarmTimer();
  dec_->decodeHeaders(parser_.request(), complete);
}

void ServerCodec::requestDone() {
  // The body is in: the client timer has nothing left to guard.
  t_->disarmTimer();
  dec_->decodeEnd();
}

void ServerCodec::onParseError() {
  switch (parser_.error()) {
    case http::ParseError::HeadTooLarge:
    case http::ParseError::TooManyHeaders:
      dec_->decodeError(431, "headers_too_large");
      return;
    case http::ParseError::Unsupported:
      dec_->decodeError(501, "not_implemented");
      return;
    case http::ParseError::Aborted:
      // The exchange stopped the body: it already answered or closed.
      if (!t_->closed() && !dec_->responseStarted()) dec_->decodeError(400, "bad_request");
      return;
    default:
      // Bad framing, perhaps mid-body (the upstream got a partial body): a response that
      // already started cannot be finished.
      if (dec_->responseStarted())
        t_->close();
      else
        dec_->decodeError(400, "bad_request");
  }
}

int ServerCodec::onHeadersComplete() {
  // Stop after the head when a body follows, so the body is read only once an upstream
  // connection exists (and can be replayed to another backend if the connect fails).
  return parser_.request().hasBody() ? kPause : kBody;
}

bool ServerCodec::onBody(const char* data, size_t len) {
  return dec_->decodeData(data, len);
}

void ServerCodec::onMessageComplete() {}

void ServerCodec::readBody() {
  const http::RequestHead& req = parser_.request();
  if (stash_.empty() && req.hasBody() &&
      http::iequals(req.headers.get(http::Hdr::Expect), "100-continue")) {
    t_->out().copy("HTTP/1.1 100 Continue\r\n\r\n");
    t_->flush();
  }
  parser_.resume();
  bodyFlowing_ = true;
  feedStash();
  if (phase_ == Phase::Active && !requestComplete_ && !t_->closed()) {
    t_->armTimer(uint64_t(t_->settings().clientIdleTimeout.count()));
    t_->startReading();
  }
}

void ServerCodec::pauseReading(bool pause) {
  if (pause)
    t_->stopReading();
  else if ((phase_ == Phase::Active && headDelivered_ && !requestComplete_) ||
           phase_ == Phase::Tunnel)
    t_->startReading();
}

void ServerCodec::setTimeout(uint64_t ms) {
  if (ms)
    t_->armTimer(ms);
  else
    t_->disarmTimer();
}

void ServerCodec::onTimeout() {
  switch (phase_) {
    case Phase::ReadingHead:
      if (parser_.messageStarted())
        dec_->decodeError(408, "request_timeout");
      else
        t_->close();  // idle keep-alive, or a connection that never sent a byte
      return;
    case Phase::Active:
      dec_->onTimeout();
      return;
    case Phase::Tunnel:
      return;
  }
}

void ServerCodec::onWritten() {
  dec_->onClientDrained();
}

// ---------------------------------------------------------------- response side

http::BodyFraming ServerCodec::framingFor(const http::ResponseHead& head,
                                          const ResponseInfo& info) const {
  if (info.noBody)
    return head.hasContentLength && head.status != 204 ? http::BodyFraming::ContentLength
                                                       : http::BodyFraming::None;
  if (head.hasContentLength) return http::BodyFraming::ContentLength;
  if (parser_.request().versionMinor != 0) return http::BodyFraming::Chunked;
  return http::BodyFraming::Close;  // an HTTP/1.0 client: the close ends the body
}

size_t ServerCodec::encodeHeaders(const http::ResponseHead& head, const ResponseInfo& info) {
  const http::RequestHead& req = parser_.request();
  http::ClientResponseInfo ci;
  ci.requestId = info.requestId;
  ci.extraHeaders = info.extraHeaders;
  ci.http10Client = req.versionMinor == 0;
  if (info.upgrade) {
    ci.upgrade = true;
    ci.framing = http::BodyFraming::None;
    framing_ = http::BodyFraming::None;
  } else {
    ci.framing = framingFor(head, info);
    ci.contentLength = head.contentLength;
    ci.keepAlive = req.keepAlive && !info.close && !t_->closing() &&
                   ci.framing != http::BodyFraming::Close && requestComplete_;
    closeAfter_ = !ci.keepAlive;
    lingerAfter_ = info.local;
    framing_ = info.noBody ? http::BodyFraming::None : ci.framing;
  }
  net::OutQueue& out = t_->out();
  std::string& s = out.beginScratch();
  const size_t before = s.size();
  http::serializeClientResponse(head, ci, s);
  const size_t n = s.size() - before;
  out.endScratch();
  return n;
}

size_t ServerCodec::encodeInterim(const http::ResponseHead& head) {
  // RFC 9110 15.2: no 1xx to an HTTP/1.0 client.
  if (parser_.request().versionMinor == 0) return 0;
  net::OutQueue& out = t_->out();
  std::string& s = out.beginScratch();
  const size_t before = s.size();
  http::serializeInterimResponse(head, s);
  const size_t n = s.size() - before;
  out.endScratch();
  return n;
}

size_t ServerCodec::encodeData(const char* data, size_t len) {
  if (len == 0) return 0;  // a zero-size chunk would end a chunked body
  net::OutQueue& out = t_->out();
  if (framing_ == http::BodyFraming::Chunked) {
    http::appendChunkHeader(len, out.beginScratch());
    out.endScratch();
    out.ref(data, len);
    out.copy("\r\n");
  } else {
    out.ref(data, len);
  }
  return len;
}

long ServerCodec::sendFile(int fd, uint64_t offset, size_t len) {
  // Only identity-framed bodies: a chunked one would need chunk headers around the file bytes
  // (file answers always carry a Content-Length).
  if (framing_ == http::BodyFraming::Chunked) return -1;
  return t_->sendFile(fd, offset, len);
}

long ServerCodec::splicePipe(int pipeRd, size_t len) {
  if (framing_ != http::BodyFraming::ContentLength) return -1;
  return t_->splicePipe(pipeRd, len);
}

void ServerCodec::encodeEnd() {
  if (framing_ == http::BodyFraming::Chunked) t_->out().copy("0\r\n\r\n");
  if (closeAfter_) {
    if (lingerAfter_)
      t_->lingerClose();
    else
      t_->closeAfterFlush();
    return;
  }
  startNextRequest();
}

void ServerCodec::startNextRequest() {
  // The answer may have been produced outside a client read callback (upstream error, timer):
  // write it now, before the exchange's buffers are reused.
  t_->flush();
  if (t_->closed()) return;
  dec_->reset();
  phase_ = Phase::ReadingHead;
  framing_ = http::BodyFraming::None;
  headDelivered_ = requestComplete_ = bodyFlowing_ = closeAfter_ = lingerAfter_ = false;
  parser_.next();
  parser_.setMaxHeadBytes(size_t(t_->settings().maxHeaderSize));
  if (t_->closing()) {
    t_->closeAfterFlush();
    return;
  }
  headTimer_ = false;
  t_->waitIdle(uint64_t(t_->settings().clientIdleTimeout.count()));
  if (!stash_.empty()) {
    headTimer_ = true;
    t_->armTimer(uint64_t(t_->settings().clientHeaderTimeout.count()));
    feedStash();
  }
  if (phase_ == Phase::ReadingHead && !t_->closed()) t_->startReading();
}

void ServerCodec::encodeTunnelData(const char* data, size_t len) {
  phase_ = Phase::Tunnel;
  t_->out().ref(data, len);
}

void ServerCodec::startTunnel() {
  phase_ = Phase::Tunnel;
  t_->disarmTimer();
  if (!stash_.empty()) {
    dec_->decodeTunnelData(stash_.data(), stash_.size());  // written or copied before return
    stash_.clear();
  }
  if (!t_->closed()) t_->startReading();
}

void ServerCodec::endTunnel() {
  t_->closeAfterFlush();
}

size_t ServerCodec::queuedBytes() const {
  return t_->out().queuedBytes();
}

void ServerCodec::flush() {
  t_->flush();
}

void ServerCodec::reset() {
  t_->close();
}

}  // namespace sluice::http1
