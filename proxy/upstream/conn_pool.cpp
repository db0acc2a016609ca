// UpstreamConn state machine and the idle pool.
#include "proxy/upstream/conn_pool.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

namespace sluice::upstream {

using observe::UpstreamErrorKind;

UpstreamConn::UpstreamConn(uv_loop_t* loop, ConnPool& pool, BackendPtr backend, char* readBuf,
                           char* plainBuf, size_t readBufSize)
    : net::Timer(&UpstreamConn::onTimer),
      pool_(pool),
      backend_(std::move(backend)),
      readBuf_(readBuf),
      plainBuf_(plainBuf),
      readBufSize_(readBufSize) {
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
  connectReq_.data = this;
  // Response heads from our own backends: generous limits, they are trusted more than clients.
  parser_.init(http::Http1Parser::Kind::Response, this, 64 * 1024, 200);
  out_.bind(reinterpret_cast<uv_stream_t*>(&tcp_), this, onWriteDone);
}

void UpstreamConn::connect(UpstreamHandler* h, uint64_t connectTimeoutMs,
                           const tls::ClientTlsContext* tls, const std::string& serverName) {
  handler_ = h;
  state_ = State::Connecting;
  if (tls) {
    tls_ = std::make_unique<tls::TlsSession>(tls->ctx(), false);
    tls_->setServerName(serverName, tls->verify());
    out_.setTls(tls_.get());
  }
  uv_tcp_nodelay(&tcp_, 1);
  int rc = uv_tcp_connect(&connectReq_, &tcp_, reinterpret_cast<const sockaddr*>(&backend_->addr),
                          onConnect);
  if (rc < 0) {
    // Report on the next turn so the caller's stack is not re-entered.
    state_ = State::Busy;
    connectFailed_ = true;
    armTimer(0);
    return;
  }
  armTimer(connectTimeoutMs);
}

void UpstreamConn::attach(UpstreamHandler* h) {
  handler_ = h;
  state_ = State::Busy;
  reused_ = true;
  gotBytes_ = false;
  disarmTimer();
  parser_.next();
}

void UpstreamConn::onConnect(uv_connect_t* req, int status) {
  auto* self = static_cast<UpstreamConn*>(req->data);
  if (self->state_ == State::Closed) return;
  if (!self->tls_) self->disarmTimer();
  if (status < 0) {
    self->fail(UpstreamErrorKind::ConnectFailed);
    return;
  }
  if (self->tls_) {
    // Connected is "handshake done" for TLS: the connect timeout keeps running until then.
    if (self->tls_->startHandshake() != tls::TlsSession::Result::Ok || self->out_.flush() < 0) {
      self->fail(UpstreamErrorKind::ConnectFailed);
      return;
    }
    self->resumeReading();
    return;
  }
  self->state_ = State::Busy;
  if (self->handler_) self->handler_->onUpstreamConnected(self);
}

int UpstreamConn::flush() {
  return out_.flush();
}

void UpstreamConn::startResponse(uint64_t responseTimeoutMs, bool headRequest, bool requestSent) {
  responseTimeoutMs_ = responseTimeoutMs;
  parser_.setExpectNoBody(headRequest);
  if (requestSent) armTimer(responseTimeoutMs);
  resumeReading();
}

void UpstreamConn::armResponseTimer() {
  if (state_ == State::Busy && !gotBytes_) armTimer(responseTimeoutMs_);
}

void UpstreamConn::pauseReading() {
  if (reading_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  }
}

void UpstreamConn::resumeReading() {
  if (!reading_ && state_ != State::Closed) {
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc, onRead);
    reading_ = true;
  }
  if (heldForClient_) {
    heldForClient_ = false;
    if (state_ == State::Busy && responseTimeoutMs_) armTimer(responseTimeoutMs_);
  }
}

void UpstreamConn::holdForClient() {
  pauseReading();
  if (state_ == State::Busy && deadline_ != 0) {
    disarmTimer();  // the heap entry may still fire: onTimer sees no deadline
    heldForClient_ = true;
  }
}

void UpstreamConn::enterTunnel() {
  state_ = State::Tunnel;
  disarmTimer();
}

void UpstreamConn::shutdownWrite() {
  if (state_ != State::Tunnel) return;
  shutdownReq_.data = this;
  if (uv_shutdown(&shutdownReq_, reinterpret_cast<uv_stream_t*>(&tcp_),
                  [](uv_shutdown_t*, int) {}) != 0)
    fail(observe::UpstreamErrorKind::Reset);
}

void UpstreamConn::armTimer(uint64_t ms) {
  deadline_ = uv_now(tcp_.loop) + ms;
  if (!scheduled() || deadline_ < due) pool_.timers().schedule(this, ms);
}

void UpstreamConn::onTimer(net::Timer* t) {
  auto* self = static_cast<UpstreamConn*>(t);
  if (self->deadline_ == 0) return;
  const uint64_t now = uv_now(self->tcp_.loop);
  if (now < self->deadline_) {
    self->pool_.timers().schedule(self, self->deadline_ - now);
    return;
  }
  self->deadline_ = 0;
  switch (self->state_) {
    case State::Connecting:
      self->fail(UpstreamErrorKind::ConnectTimeout);
      break;
    case State::Busy:
      self->fail(self->connectFailed_ ? UpstreamErrorKind::ConnectFailed
                                      : UpstreamErrorKind::Timeout);
      break;
    case State::Idle:
      self->pool_.remove(self);
      self->close();
      break;
    default:
      break;
  }
}

void UpstreamConn::fail(UpstreamErrorKind kind) {
  UpstreamHandler* h = handler_;
  handler_ = nullptr;
  bool bytes = gotBytes_;
  close();
  if (h) h->onUpstreamError(this, kind, bytes);
}

void UpstreamConn::onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<UpstreamConn*>(h->data);
  // Splicing: no buffer, so libuv reads nothing and reports UV_ENOBUFS: the readability.
  *buf = self->splicing_ ? uv_buf_init(nullptr, 0)
                         : uv_buf_init(self->readBuf_, unsigned(self->readBufSize_));
}

void UpstreamConn::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<UpstreamConn*>(s->data);
  if (nread == 0 || self->state_ == State::Closed) return;
  if (nread == UV_ENOBUFS && self->splicing_) {
    if (self->handler_) self->handler_->onUpstreamReadable(self);
    return;
  }
  if (self->tls_)
    self->onCiphertext(nread, buf->base);
  else
    self->onPlainRead(nread, buf->base);
}

void UpstreamConn::onCiphertext(ssize_t nread, const char* data) {
  if (nread < 0) {
    if (state_ == State::Connecting) {
      fail(UpstreamErrorKind::ConnectFailed);
      return;
    }
    onPlainRead(nread, data);
    return;
  }
  UpstreamHandler* h = handler_;
  bool plainSeen = false;
  auto r = tls_->feed(data, size_t(nread), plainBuf_, readBufSize_,
                      [this, h, &plainSeen](const char* p, size_t n) {
                        // Data while idle (or before the handshake finished) is unexpected;
                        // a response that just completed and released us to the pool is not.
                        if (state_ == State::Idle || state_ == State::Connecting) {
                          plainSeen = true;
                          return false;
                        }
                        onPlainRead(ssize_t(n), p);
                        // `p` is overwritten by the next record: flush what referenced it.
                        if (h && state_ != State::Closed) h->afterUpstreamRead(this);
                        return state_ != State::Closed;
                      });
  if (state_ == State::Closed) return;
  if (r == tls::TlsSession::Result::Error) {
    if (state_ == State::Idle) {
      pool_.remove(this);
      close();
      return;
    }
    fail(state_ == State::Connecting ? UpstreamErrorKind::TlsHandshake
                                     : UpstreamErrorKind::BadResponse);
    return;
  }
  if (state_ == State::Idle) {
    // Post-handshake messages (TLS 1.3 tickets) are fine on an idle connection; data is not.
    if (plainSeen || r == tls::TlsSession::Result::Closed || out_.flush() < 0) {
      pool_.remove(this);
      close();
    }
    return;
  }
  if (r == tls::TlsSession::Result::Closed) {
    onPlainRead(UV_EOF, nullptr);
    return;
  }
  if (out_.flush() < 0) {
    fail(UpstreamErrorKind::Reset);
    return;
  }
  if (state_ == State::Connecting && tls_->handshakeDone()) {
    tls_->takeHandshakeEvent();
    disarmTimer();
    state_ = State::Busy;
    pauseReading();  // startResponse() resumes
    if (handler_) handler_->onUpstreamConnected(this);
  }
}

void UpstreamConn::onPlainRead(ssize_t nread, const char* data) {
  UpstreamConn* self = this;
  UpstreamHandler* h = self->handler_;
  if (self->state_ == State::Idle) {
    // A pooled connection must stay silent: data or EOF means it is unusable.
    self->pool_.remove(self);
    self->close();
    return;
  }
  if (nread < 0) {
    if (self->state_ == State::Tunnel) {
      self->pauseReading();
      if (h) h->onUpstreamTunnelEof(self);
      return;
    }
    if (nread == UV_EOF && self->parser_.finish() == http::Http1Parser::Status::Complete) {
      // A close-delimited response ended: complete, and this connection cannot be reused.
      self->trailingGarbage_ = true;
      if (h) {
        h->onUpstreamComplete(self);
        h->afterUpstreamRead(self);
      }
      return;
    }
    self->fail(self->parser_.headComplete() ? UpstreamErrorKind::Reset
               : self->gotBytes_            ? UpstreamErrorKind::BadResponse
                                            : UpstreamErrorKind::Reset);
    return;
  }
  self->gotBytes_ = true;
  if (self->state_ == State::Tunnel) {
    if (h) {
      h->onUpstreamTunnelData(self, data, size_t(nread));
      h->afterUpstreamRead(self);
    }
    return;
  }
  if (self->responseTimeoutMs_) self->armTimer(self->responseTimeoutMs_);
  self->onData(data, size_t(nread));
  // A long Content-Length body still to come: the handler may splice the rest.
  if (h != nullptr && h == self->handler_ && self->state_ == State::Busy && !self->tls_) {
    const uint64_t rest = self->parser_.bodyRemaining();
    if (rest >= kSpliceMin && h->onUpstreamSpliceable(self, rest)) self->splicing_ = true;
  }
  if (h) h->afterUpstreamRead(self);
}

long UpstreamConn::spliceTo(int pipeWr, size_t max) {
  uv_os_fd_t fd;
  if (state_ != State::Busy || uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &fd) != 0)
    return -1;
  for (;;) {
    const ssize_t n =
        ::splice(fd, nullptr, pipeWr, nullptr, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      if (responseTimeoutMs_) armTimer(responseTimeoutMs_);
      return long(n);
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    break;
  }
  // End of stream before the Content-Length, or a socket error: a truncated response.
  fail(UpstreamErrorKind::Reset);
  return -1;
}

void UpstreamConn::finishSplice(uint64_t n) {
  splicing_ = false;
  const auto r = parser_.skipBody(n);
  if (r.status != http::Http1Parser::Status::Complete) {
    fail(UpstreamErrorKind::BadResponse);
    return;
  }
  if (handler_) handler_->onUpstreamComplete(this);
}

void UpstreamConn::onData(const char* data, size_t len) {
  while (len > 0 && state_ == State::Busy) {
    auto r = parser_.execute(data, len);
    data += r.consumed;
    len -= r.consumed;
    switch (r.status) {
      case http::Http1Parser::Status::NeedMore:
      case http::Http1Parser::Status::HeadComplete:
        break;
      case http::Http1Parser::Status::Complete: {
        int status = parser_.response().status;
        if (status >= 100 && status < 200) {  // interim response: skip it
          parser_.next();
          parser_.setExpectNoBody(false);
          continue;
        }
        // Bytes after a complete response that nobody asked for: never reuse this connection.
        if (len > 0) trailingGarbage_ = true;
        if (handler_) handler_->onUpstreamComplete(this);
        return;
      }
      case http::Http1Parser::Status::Upgrade:
        if (handler_) {
          state_ = State::Tunnel;
          disarmTimer();
          if (len > 0) handler_->onUpstreamTunnelData(this, data, len);
        }
        return;
      case http::Http1Parser::Status::Error:
        fail(parser_.error() == http::ParseError::Aborted && parser_.headComplete()
                 ? UpstreamErrorKind::Reset
                 : UpstreamErrorKind::BadResponse);
        return;
    }
  }
}

int UpstreamConn::onHeadersComplete() {
  http::ResponseHead& head = parser_.response();
  if (head.status >= 100 && head.status < 200 && head.status != 101) {
    // 100 is dropped (the proxy answers Expect itself, it is never forwarded); 102 and other
    // unknown interim codes carry nothing a client needs.
    if (head.status == 103 && handler_) handler_->onUpstreamInterim(this, head);
    return kNoBody;
  }
  if (!handler_) return kAbort;
  return handler_->onUpstreamHead(this, head);
}

bool UpstreamConn::onBody(const char* data, size_t len) {
  return handler_ && handler_->onUpstreamBody(this, data, len);
}

void UpstreamConn::onMessageComplete() {
  int status = parser_.response().status;
  if (status >= 100 && status < 200) return;
  disarmTimer();
}

void UpstreamConn::release(bool reusable, uint64_t idleTimeoutMs) {
  handler_ = nullptr;
  splicing_ = heldForClient_ = false;
  if (!reusable || trailingGarbage_ || state_ != State::Busy || !out_.idle()) {
    close();
    return;
  }
  state_ = State::Idle;
  gotBytes_ = false;
  responseTimeoutMs_ = 0;
  resumeReading();  // notice the backend closing it
  armTimer(idleTimeoutMs);
  pool_.putIdle(this);
}

void UpstreamConn::onWriteDone(void* self, int status) {
  auto* c = static_cast<UpstreamConn*>(self);
  if (c->state_ == State::Closed) return;
  if (status < 0) {
    c->fail(UpstreamErrorKind::Reset);
    return;
  }
  if (c->handler_ && c->out_.queuedBytes() == 0) c->handler_->onUpstreamDrained(c);
}

void UpstreamConn::close() {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  handler_ = nullptr;
  deadline_ = 0;
  pool_.timers().cancel(this);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), onClosed);
}

void UpstreamConn::onClosed(uv_handle_t* h) {
  delete static_cast<UpstreamConn*>(h->data);
}

UpstreamConn* ConnPool::acquire(const Backend* backend, bool tls) {
  auto it = idle_.find(key(backend, tls));
  if (it == idle_.end() || !it->second.head) return nullptr;
  UpstreamConn* c = it->second.head;
  remove(c);
  return c;
}

void ConnPool::putIdle(UpstreamConn* c) {
  List& l = idle_[key(c->backend_.get(), c->tls())];
  c->prevIdle_ = nullptr;
  c->nextIdle_ = l.head;
  if (l.head) l.head->prevIdle_ = c;
  l.head = c;
}

void ConnPool::remove(UpstreamConn* c) {
  auto it = idle_.find(key(c->backend_.get(), c->tls()));
  if (it == idle_.end()) return;
  List& l = it->second;
  if (c->prevIdle_)
    c->prevIdle_->nextIdle_ = c->nextIdle_;
  else if (l.head == c)
    l.head = c->nextIdle_;
  else
    return;  // not in the list
  if (c->nextIdle_) c->nextIdle_->prevIdle_ = c->prevIdle_;
  c->nextIdle_ = c->prevIdle_ = nullptr;
  if (!l.head) idle_.erase(it);
}

// Closes connections already taken out of the idle lists.
void ConnPool::closeDetached(std::vector<UpstreamConn*>& conns) {
  for (UpstreamConn* c : conns) {
    c->nextIdle_ = c->prevIdle_ = nullptr;
    c->close();
  }
}

void ConnPool::closeAll() {
  std::vector<UpstreamConn*> all;
  for (auto& [_, l] : idle_)
    for (UpstreamConn* c = l.head; c; c = c->nextIdle_) all.push_back(c);
  idle_.clear();
  closeDetached(all);
}

void ConnPool::closeBackend(const Backend* backend) {
  for (bool tls : {false, true}) {
    auto it = idle_.find(key(backend, tls));
    if (it == idle_.end()) continue;
    std::vector<UpstreamConn*> conns;
    for (UpstreamConn* c = it->second.head; c; c = c->nextIdle_) conns.push_back(c);
    idle_.erase(it);
    closeDetached(conns);
  }
}

size_t ConnPool::closePool(std::string_view pool) {
  // By the backends' pool name: backends of older snapshots (a DNS change) count too.
  std::vector<UpstreamConn*> conns;
  for (auto it = idle_.begin(); it != idle_.end();) {
    UpstreamConn* head = it->second.head;
    if (head == nullptr || head->backend_->pool != pool) {
      ++it;
      continue;
    }
    for (UpstreamConn* c = head; c; c = c->nextIdle_) conns.push_back(c);
    it = idle_.erase(it);
  }
  closeDetached(conns);
  return conns.size();
}

}  // namespace sluice::upstream
