// Acceptor: accept4(2) from a uv_poll handle, pausing on descriptor shortage.
#include "proxy/net/acceptor.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "config/units.h"

namespace sluice::net {

int listenSocket(const config::HostPort& hp, bool reusePort, int backlog, std::string& err) {
  sockaddr_storage ss;
  socklen_t len;
  if (!config::toSockaddr(hp, ss, len)) {
    err = "bad listen address " + config::formatHostPort(hp);
    return -1;
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reusePort) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (ss.ss_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  // Accepted sockets inherit TCP_NODELAY from the listening one (Linux copies the option into
  // each connection): one setsockopt here instead of one per connection.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, backlog) != 0) {
    err = "cannot listen on " + config::formatHostPort(hp) + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

void abortiveClose(int fd) {
  linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(fd);
}

Acceptor* Acceptor::open(uv_loop_t* loop, int fd, Handler* handler, std::string& err) {
  auto* a = new Acceptor(fd, handler);
  int rc = uv_poll_init_socket(loop, &a->poll_, fd);
  if (rc != 0) {
    err = uv_strerror(rc);
    ::close(fd);
    delete a;
    return nullptr;
  }
  a->poll_.data = a;
  uv_timer_init(loop, &a->timer_);
  a->timer_.data = a;
  a->openHandles_ = 2;
  rc = uv_poll_start(&a->poll_, UV_READABLE, onPoll);
  if (rc != 0) {
    err = uv_strerror(rc);
    a->close();
    return nullptr;
  }
  return a;
}

void Acceptor::setDeferAccept(bool on) {
  if (deferAccept_ == int(on)) return;
  // Linux counts the seconds in SYN-ACK retransmissions: 1 s is one, so a connection that
  // sends nothing is handed over when the client answers the first retransmission (~1 s).
  const int secs = on ? 1 : 0;
  if (::setsockopt(fd_, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof secs) == 0)
    deferAccept_ = int(on);
}

void Acceptor::close() {
  if (closed_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), onHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), onHandleClosed);
}

void Acceptor::onHandleClosed(uv_handle_t* h) {
  auto* self = static_cast<Acceptor*>(h->data);
  if (--self->openHandles_ > 0) return;
  ::close(self->fd_);  // no handle watches it any more
  delete self;
}

void Acceptor::onPoll(uv_poll_t* p, int status, int /*events*/) {
  auto* self = static_cast<Acceptor*>(p->data);
  if (status < 0) {
    self->pause(-status);
    return;
  }
  self->acceptSome();
}

void Acceptor::acceptSome() {
  int budget = 1;  // connections still to take in this wake-up (see kBatch)
  bool counted = false;
  int skipped = 0;
  while (budget > 0 && !closed_ && !paused_) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      handler_->onAccepted(fd, peer);
      if (--budget == 0 && !counted) {  // after the first: the rest of the queue, bounded
        counted = true;
        budget = std::min(queued(), kBatch - 1);
      }
      continue;
    }
    switch (errno) {
      case EAGAIN:
#if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#endif
        return;
      // That connection is gone (reset or aborted before it was taken), or Linux passed on
      // a network error of its own (accept(2), "Error handling"): take the next one.
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
      case EPERM:
      case ENETDOWN:
      case ENOPROTOOPT:
      case EHOSTDOWN:
      case ENONET:
      case EHOSTUNREACH:
      case EOPNOTSUPP:
      case ENETUNREACH:
      case ETIMEDOUT:
        if (++skipped > kMaxSkipped) return;
        continue;
      default:  // EMFILE, ENFILE, ENOBUFS, ENOMEM, or anything that would fail again at once
        pause(errno);
        return;
    }
  }
}

int Acceptor::queued() const {
  // For a listening socket Linux reports the length of its accept queue in tcpi_unacked.
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (::getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return 0;
  return int(std::min<uint32_t>(ti.tcpi_unacked, uint32_t(kBatch)));
}

void Acceptor::pause(int err) {
  if (closed_) return;
  if (!paused_) {
    paused_ = true;
    uv_poll_stop(&poll_);
    uv_timer_start(&timer_, onTimer, kPauseMs, 0);
  }
  handler_->onAcceptPaused(err);
}

void Acceptor::onTimer(uv_timer_t* t) {
  static_cast<Acceptor*>(t->data)->resume();
}

void Acceptor::resume() {
  if (!paused_ || closed_) return;
  paused_ = false;
  uv_timer_stop(&timer_);
  if (uv_poll_start(&poll_, UV_READABLE, onPoll) != 0) pause(EBADF);
}

}  // namespace sluice::net
