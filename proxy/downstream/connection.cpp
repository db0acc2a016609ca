// Downstream connection: socket, TLS, reads, writes, deadline, lingering close.
#include "proxy/downstream/connection.h"

#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>

#include "proxy/worker.h"

namespace sluice {

namespace {
constexpr uint64_t kLingerMs = 2000;
constexpr uint64_t kTrimMs = 1000;  // keep-alive quiet this long: give the stream back
constexpr size_t kMaxFreeStreams = 256;

}  // namespace

void DownstreamConnection::formatPeer(const sockaddr_storage& ss, char* out, size_t outLen) {
  if (ss.ss_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&ss), out, outLen);
    return;
  }
  if (ss.ss_family != AF_INET6) {
    std::snprintf(out, outLen, "-");
    return;
  }
  const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
    sockaddr_in s4{};
    s4.sin_family = AF_INET;
    std::memcpy(&s4.sin_addr, s6->sin6_addr.s6_addr + 12, 4);
    uv_ip4_name(&s4, out, outLen);
  } else {
    uv_ip6_name(s6, out, outLen);
  }
}

// Everything a request needs and an idle keep-alive connection does not.
struct DownstreamConnection::Stream {
  explicit Stream(Worker& w) : ex(w) {}
  http1::ServerCodec codec;
  net::OutQueue out;
  Exchange ex;
};

namespace {
// Per worker thread: streams given back by idle connections, reused by busy ones.
struct FreeStreams {
  std::vector<void*> items;
  void (*destroy)(void*) = nullptr;
  ~FreeStreams() {  // worker thread exit
    for (void* p : items) destroy(p);
  }
};
thread_local FreeStreams tFree;
}  // namespace

DownstreamConnection::DownstreamConnection(Worker& w, const std::string* listenerKey)
    : net::Timer(&DownstreamConnection::onTimer), w_(w) {
  uv_tcp_init(w_.loop(), &tcp_);
  tcp_.data = this;
  info_.listenerKey = listenerKey;
  info_.peerIp = peerIp_;
}

DownstreamConnection::~DownstreamConnection() {
  if (peerPlace_) net::PeerCounts::global().release(peerPlace_);
  w_.timers().cancel(this);
  if (s_) recycle(s_);
}

void DownstreamConnection::dropStaleSnapshots(const Worker& w) {
  for (void* p : tFree.items) {
    auto* st = static_cast<Stream*>(p);
    if (st->ex.snapshot() != w.snapshot()) st->ex.releaseSnapshot();
  }
}

const std::string* DownstreamConnection::internListenerKey(const std::string& key) {
  static std::mutex mu;
  static std::set<std::string> keys;  // node-based: addresses stay valid
  std::lock_guard<std::mutex> lock(mu);
  return &*keys.insert(key).first;
}

DownstreamConnection::Stream& DownstreamConnection::stream() {
  if (s_) return *s_;
  if (!tFree.items.empty()) {
    s_ = static_cast<Stream*>(tFree.items.back());
    tFree.items.pop_back();
  } else {
    s_ = new Stream(w_);
    tFree.destroy = [](void* p) { delete static_cast<Stream*>(p); };
  }
  s_->out.bind(reinterpret_cast<uv_stream_t*>(&tcp_), this, onWriteDone);
  s_->out.setTls(tls_.get());
  s_->ex.bind(&s_->codec, &info_);
  s_->codec.bind(this, &s_->ex, !served_);
  served_ = true;
  return *s_;
}

void DownstreamConnection::recycle(Stream* st) {
  if (st->ex.dirty()) st->ex.reset();  // a finished request was reset already
  // A free stream keeps the worker's current snapshot pinned (no refcount churn when a
  // keep-alive connection takes and gives back a stream per request); older ones are dropped,
  // and dropStaleSnapshots() drops them from the free list after a reload.
  if (st->ex.snapshot() != st->ex.worker().snapshot()) st->ex.releaseSnapshot();
  st->codec.recycle();
  st->out.reset();
  if (tFree.items.size() < kMaxFreeStreams)
    tFree.items.push_back(st);
  else
    delete st;
}

void DownstreamConnection::releaseStreamIfIdle() {
  if (!s_ || state_ != State::Open || !s_->codec.idle() || !s_->out.idle()) return;
  recycle(s_);
  s_ = nullptr;
  if (tls_) tls_->trim();
}

void DownstreamConnection::accept(Worker& w, int fd, const sockaddr_storage& peer,
                                  const std::string* listenerKey, const ListenerSpec& spec,
                                  net::PeerCounts::Place place) {
  auto* c = new DownstreamConnection(w, listenerKey);
  c->peerPlace_ = place;  // given back when the object is freed, whatever the path
  if (uv_tcp_open(&c->tcp_, fd) != 0) {
    ::close(fd);
    c->state_ = State::Closed;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp_), onClosed);
    return;
  }
  // TCP_NODELAY is inherited from the listening socket (net::listenSocket).
  if (spec.tls) {
    c->tls_ = std::make_unique<ServerTls>(spec.tls);
    c->info_.tls = c->tls_.get();
  }
  formatPeer(peer, c->peerIp_, sizeof c->peerIp_);
  c->listenerNameId_ = spec.nameId;
  w.addConnection(c);
  w.metrics().connectionsActive[spec.nameId]++;
  w.metrics().connectionsTotal[spec.nameId]++;
  // The header timeout also bounds the TLS handshake.
  c->armTimer(uint64_t(w.snapshot()->config.server.clientHeaderTimeout.count()));
  c->startReading();
  // With defer_accept the kernel hands a connection over once the client's first bytes (its
  // request or ClientHello) arrived: read them now instead of after a trip through epoll (on
  // EAGAIN, after the kernel's ~1 s wait for a silent client, the read watcher started above
  // takes over). Without it the read would mostly find nothing: the connection is taken as
  // soon as the handshake completes, before the client had a chance to write.
  if (!spec.cfg.deferAccept) return;
  ssize_t n;
  do {
    n = ::recv(fd, w.readBuffer(), Worker::kReadBufferSize, 0);  // no VFS layer, unlike read(2)
  } while (n < 0 && errno == EINTR);
  if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
    uv_buf_t buf = uv_buf_init(w.readBuffer(), unsigned(Worker::kReadBufferSize));
    onRead(reinterpret_cast<uv_stream_t*>(&c->tcp_), n > 0 ? n : n == 0 ? UV_EOF : -errno, &buf);
  }
}

const config::ServerSettings& DownstreamConnection::settings() const {
  return w_.snapshot()->config.server;
}

bool DownstreamConnection::closing() const {
  return shuttingDown_ || w_.draining();
}

net::OutQueue& DownstreamConnection::out() {
  return stream().out;
}

// ---------------------------------------------------------------- reading

void DownstreamConnection::startReading() {
  if (!reading_ && state_ != State::Closed) {
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc, onRead);
    reading_ = true;
  }
}

void DownstreamConnection::stopReading() {
  if (reading_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  }
}

void DownstreamConnection::onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<DownstreamConnection*>(h->data);
  *buf = uv_buf_init(self->w_.readBuffer(), unsigned(Worker::kReadBufferSize));
}

void DownstreamConnection::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<DownstreamConnection*>(s->data);
  if (nread == 0 || self->state_ == State::Closed) return;
  if (nread < 0) {
    if (self->state_ == State::Lingering)
      self->close();
    else
      self->onEof();
    return;
  }
  if (self->state_ == State::Lingering) return;  // discard
  self->stream();
  if (self->tls_)
    self->onCiphertext(buf->base, size_t(nread));
  else
    self->onPlaintext(buf->base, size_t(nread));
  // End of the read callback: nothing up the stack uses the stream any more.
  self->releaseStreamIfIdle();
}

void DownstreamConnection::onEof() {
  if (s_ && s_->codec.tunnel()) {
    // Client finished sending: pass the half-close on; the backend's close ends it all.
    stopReading();
    s_->ex.decodeTunnelEnd();
    return;
  }
  // EOF or reset before the answer: the client is gone (like nginx without
  // proxy_ignore_client_abort). An exchange in progress is abandoned.
  close();
}

void DownstreamConnection::onCiphertext(const char* data, size_t len) {
  const bool wasDone = tls_->handshakeDone();
  auto r = tls_->feed(data, len, w_.plainBuffer(), Worker::kReadBufferSize,
                      [this](const char* p, size_t n) {
                        onPlaintext(p, n);
                        return state_ == State::Open;
                      });
  if (tls_->takeHandshakeEvent())
    w_.metrics().tlsHandshake(listenerNameId_, tls_->version(), tls_->resumed());
  if (r == tls::TlsSession::Result::Error) {
    tlsFailed_ = true;
    if (!wasDone && !tls_->handshakeDone()) {
      w_.metrics().tlsHandshakeError(listenerNameId_, tls_->errorReason());
      if (tls_->errorReason() == "http_request") {
        answerPlainHttpOnTls();
        return;
      }
    }
    // The alert OpenSSL wrote (protocol_version, handshake_failure, unrecognized_name...) goes
    // out before the close: the client learns why instead of seeing an unexpected EOF.
    closeAfterFlush();
    return;
  }
  if (r == tls::TlsSession::Result::Closed && state_ == State::Open) {
    onEof();  // close_notify: the client is done sending, like EOF
    if (state_ == State::Closed) return;
  }
  flush();  // handshake records, if nothing else
}

// Plain HTTP sent to the TLS port: say so in plain HTTP, like nginx does.
void DownstreamConnection::answerPlainHttpOnTls() {
  http::ResponseHead head;
  std::string body;
  const std::string& id = s_->ex.requestId();
  http::buildLocalReply({400, "plain_http_to_tls_port"}, id, head, body);
  http::ClientResponseInfo ci;
  ci.requestId = id;
  ci.framing = http::BodyFraming::ContentLength;
  ci.contentLength = body.size();
  ci.keepAlive = false;
  std::string reply;
  http::serializeClientResponse(head, ci, reply);
  reply.append(body);
  s_->out.writeRaw(reply);
  state_ = State::Lingering;
  closeAfterFlush_ = true;
  if (s_->out.queuedBytes() == 0) close();
}

void DownstreamConnection::onPlaintext(const char* data, size_t len) {
  if (state_ != State::Open) return;
  stream().codec.onData(data, len);
}

// ---------------------------------------------------------------- deadline

// Re-armed lazily: most requests move the deadline later, which only updates a field; the heap
// entry moves only when it must fire earlier, or when it fires early.
void DownstreamConnection::armTimer(uint64_t ms) {
  trimPending_ = drainPending_ = false;
  const uint64_t now = uv_now(w_.loop());
  deadline_ = now + ms;
  if (!scheduled() || deadline_ < due) w_.timers().schedule(this, ms);
}

void DownstreamConnection::waitIdle(uint64_t idleMs) {
  if (s_ && s_->out.queuedBytes() > 0) {
    awaitDrain();  // the idle wait starts once the client has taken the answer (onWriteDone)
    return;
  }
  // After kTrimMs of quiet the stream goes back to the free list, then the idle timeout runs.
  armTimer(idleMs > kTrimMs ? kTrimMs : idleMs);
  trimPending_ = idleMs > kTrimMs;
}

void DownstreamConnection::onTimer(net::Timer* t) {
  auto* self = static_cast<DownstreamConnection*>(t);
  if (self->deadline_ == 0) return;
  const uint64_t now = uv_now(self->w_.loop());
  if (now < self->deadline_) {
    self->w_.timers().schedule(self, self->deadline_ - now);
    return;
  }
  self->deadline_ = 0;
  self->onTimeout();
}

size_t DownstreamConnection::unsentBytes() const {
  return uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(&tcp_));
}

void DownstreamConnection::awaitDrain() {
  armTimer(uint64_t(settings().clientIdleTimeout.count()));
  drainPending_ = true;
  drainMark_ = unsentBytes();
}

void DownstreamConnection::onTimeout() {
  if (drainPending_) {
    drainPending_ = false;
    if (s_ && s_->out.queuedBytes() > 0) {
      if (unsentBytes() < drainMark_) {
        awaitDrain();  // the client is slow but takes bytes
        return;
      }
      close();  // it took nothing for client_idle_timeout: the rest is dropped
      return;
    }
  }
  if (state_ == State::Lingering) {
    close();
    return;
  }
  if (state_ != State::Open) return;
  if (trimPending_) {
    // Quiet keep-alive connection: give the stream back, then wait out the idle timeout.
    trimPending_ = false;
    releaseStreamIfIdle();
    const uint64_t idleMs = uint64_t(settings().clientIdleTimeout.count());
    armTimer(idleMs > kTrimMs ? idleMs - kTrimMs : 1);
    return;
  }
  if (tls_ && !tls_->handshakeDone())
    w_.metrics().tlsHandshakeError(listenerNameId_, "handshake_timeout");
  if (!s_) {
    close();  // idle keep-alive, or a connection that never sent a byte
    return;
  }
  s_->codec.onTimeout();
  flush();
}

// ---------------------------------------------------------------- writing and closing

void DownstreamConnection::flush() {
  if (state_ == State::Closed || !s_) return;
  if (s_->out.flush() < 0) close();
}

void DownstreamConnection::onWriteDone(void* p, int status) {
  auto* self = static_cast<DownstreamConnection*>(p);
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
  if (self->drainPending_ && self->s_->out.queuedBytes() == 0 && self->state_ == State::Open) {
    // The client took the rest of a finished answer: now it is an idle keep-alive connection.
    self->waitIdle(uint64_t(self->settings().clientIdleTimeout.count()));
  }
  self->s_->codec.onWritten();
  self->releaseStreamIfIdle();  // a slow client just took the rest of a finished response
}

void DownstreamConnection::closeAfterFlush() {
  flush();
  if (tls_ && !tlsFailed_ && state_ != State::Closed) {
    tls_->shutdown();  // close_notify after the last response
    flush();
  }
  if (state_ == State::Closed) return;
  if (!s_ || s_->out.queuedBytes() == 0) {
    close();
  } else {
    closeAfterFlush_ = true;
    stopReading();
    awaitDrain();
  }
}

void DownstreamConnection::lingerClose() {
  // Send what is queued, shut our side, then read and discard until the client closes (or
  // kLingerMs): closing with unread input would make the kernel send RST and could destroy the
  // error response before the client read it.
  flush();
  if (tls_ && !tlsFailed_ && state_ != State::Closed) {
    tls_->shutdown();
    flush();
  }
  if (state_ == State::Closed) return;
  if (s_) s_->ex.abandon();
  state_ = State::Lingering;
  if (s_ && s_->out.queuedBytes() > 0) {
    closeAfterFlush_ = true;
    awaitDrain();
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

void DownstreamConnection::onShutdown(uv_shutdown_t* req, int status) {
  // Always called, before the close callback (UV_ECANCELED when the handle closed first).
  auto* self = static_cast<DownstreamConnection*>(req->data);
  delete req;
  if (status < 0 && self->state_ != State::Closed) self->close();
}

void DownstreamConnection::beginShutdown() {
  shuttingDown_ = true;
  if (state_ == State::Open && (!s_ || s_->codec.canCloseNow())) close();
}

Exchange::Drained DownstreamConnection::drainPool(uint32_t poolNameId) {
  if (state_ != State::Open || !s_) return Exchange::Drained::None;
  return s_->ex.drainPool(poolNameId);
}

// ---------------------------------------------------------------- files

struct DownstreamConnection::WritablePoll {
  uv_poll_t poll{};
  int fd = -1;
  DownstreamConnection* conn = nullptr;
};

long DownstreamConnection::sendFile(int fd, uint64_t offset, size_t len) {
  return sendFromFd(fd, &offset, len);
}

long DownstreamConnection::splicePipe(int pipeRd, size_t len) {
  return sendFromFd(pipeRd, nullptr, len);
}

// sendfile(2) from a file at `*offset`, or splice(2) from a pipe (`offset` null), after the
// queued bytes: the bytes sent, 0 when the socket is full (onWritten follows), -1 when broken.
long DownstreamConnection::sendFromFd(int fd, const uint64_t* offset, size_t len) {
  if (tls_ || state_ != State::Open || !s_) return -1;
  net::OutQueue& out = s_->out;
  if (out.hasPieces() && out.flush() < 0) {
    close();
    return -1;
  }
  if (out.queuedBytes() > 0) return 0;  // the head is still queued: its write completion resumes
  uv_os_fd_t sock;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &sock) != 0) return -1;
  for (;;) {
    ssize_t n;
    if (offset != nullptr) {
      off_t off = off_t(*offset);
      n = ::sendfile(sock, fd, &off, len);
    } else {
      n = ::splice(fd, nullptr, sock, nullptr, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    }
    if (n > 0) return long(n);
    if (n == 0) return -1;  // the file is shorter than its stat said, or the pipe is empty
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      awaitWritable();
      return state_ == State::Open ? 0 : -1;
    }
    return -1;
  }
}

void DownstreamConnection::awaitWritable() {
  if (state_ != State::Open) return;
  if (writable_ == nullptr) {
    uv_os_fd_t sock;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &sock) != 0) return;
    const int dupFd = ::fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (dupFd < 0) {
      close();  // out of descriptors: the send cannot go on
      return;
    }
    auto* wp = new WritablePoll;
    wp->fd = dupFd;
    wp->conn = this;
    wp->poll.data = wp;
    if (uv_poll_init_socket(w_.loop(), &wp->poll, dupFd) != 0) {
      ::close(dupFd);
      delete wp;
      close();
      return;
    }
    writable_ = wp;
  }
  if (uv_poll_start(&writable_->poll, UV_WRITABLE, onWritable) != 0) close();
}

void DownstreamConnection::onWritable(uv_poll_t* p, int status, int /*events*/) {
  auto* wp = static_cast<WritablePoll*>(p->data);
  uv_poll_stop(p);
  DownstreamConnection* self = wp->conn;
  if (self == nullptr || self->state_ != State::Open || !self->s_) return;
  if (status < 0) {
    self->close();
    return;
  }
  self->s_->codec.onWritten();
  if (self->state_ == State::Open) self->releaseStreamIfIdle();
}

void DownstreamConnection::close() {
  if (state_ == State::Closed) return;
  if (writable_ != nullptr) {
    writable_->conn = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&writable_->poll), [](uv_handle_t* h) {
      auto* wp = static_cast<WritablePoll*>(h->data);
      ::close(wp->fd);
      delete wp;
    });
    writable_ = nullptr;
  }
  if (s_) s_->ex.abandon();
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

void DownstreamConnection::onClosed(uv_handle_t* h) {
  delete static_cast<DownstreamConnection*>(h->data);
}

}  // namespace sluice
