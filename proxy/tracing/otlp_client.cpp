// Blocking OTLP/HTTP client (see otlp_client.h).
#include "proxy/tracing/otlp_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "proxy/http/http1_parser.h"

namespace sluice::tracing {

namespace {

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Waits for `events` on fd until the deadline; false on timeout or error (err says which).
bool waitFor(int fd, short events, int64_t deadlineMs, std::string& err) {
  for (;;) {
    const int64_t left = deadlineMs - nowMs();
    if (left <= 0) {
      err = "timed out";
      return false;
    }
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, int(left));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) {
      err = std::strerror(errno);
      return false;
    }
  }
}

struct Response final : http::Http1Parser::Handler {
  bool done = false;
  int onHeadersComplete() override { return kBody; }
  bool onBody(const char*, size_t) override { return true; }
  void onMessageComplete() override { done = true; }
};

}  // namespace

void OtlpClient::setEndpoint(const std::string& host, uint16_t port, const std::string& path) {
  if (host == host_ && port == port_ && path == path_) return;
  close();
  host_ = host;
  port_ = port;
  path_ = path;
  const bool v6 = host.find(':') != std::string::npos;
  hostHeader_ = (v6 ? "[" + host + "]" : host) + (port == 80 ? "" : ":" + std::to_string(port));
}

void OtlpClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool OtlpClient::connect(int64_t deadlineMs, std::string& err) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(port_);
  const int gai = ::getaddrinfo(host_.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) {
    err = std::string("cannot resolve ") + host_ + ": " + gai_strerror(gai);
    return false;
  }
  err = "no address";
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS && waitFor(fd, POLLOUT, deadlineMs, err)) {
      int soErr = 0;
      socklen_t len = sizeof soErr;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soErr, &len);
      rc = soErr == 0 ? 0 : -1;
      if (soErr) err = std::string("connect: ") + std::strerror(soErr);
    } else if (rc != 0 && errno != EINPROGRESS) {
      err = std::string("connect: ") + std::strerror(errno);
    }
    if (rc == 0) {
      fd_ = fd;
      break;
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return fd_ >= 0;
}

int OtlpClient::post(const std::string& body, int timeoutMs, std::string& err) {
  const int64_t deadline = nowMs() + timeoutMs;
  // A kept connection the collector closed meanwhile fails on send or read: one fresh try.
  for (int round = 0; round < 2; ++round) {
    const bool reused = fd_ >= 0;
    if (!reused && !connect(deadline, err)) return -1;
    const std::string head =
        "POST " + path_ + " HTTP/1.1\r\nHost: " + hostHeader_ +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\nUser-Agent: sluice/" SLUICE_VERSION "\r\n\r\n";
    bool failed = false;
    const std::string* parts[2] = {&head, &body};
    for (const std::string* part : parts) {
      size_t off = 0;
      while (!failed && off < part->size()) {
        const ssize_t n =
            ::send(fd_, part->data() + off, part->size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          off += size_t(n);
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
          failed = !waitFor(fd_, POLLOUT, deadline, err);
        } else {
          err = std::string("send: ") + std::strerror(errno);
          failed = true;
        }
      }
    }
    Response handler;
    http::Http1Parser parser;
    parser.init(http::Http1Parser::Kind::Response, &handler, 64 * 1024);
    bool gotBytes = false;
    char buf[8192];
    while (!failed && !handler.done) {
      if (!waitFor(fd_, POLLIN, deadline, err)) {
        failed = true;
        break;
      }
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        if (n == 0 && parser.finish() == http::Http1Parser::Status::Complete) break;
        err = n == 0 ? "connection closed before the answer" : std::strerror(errno);
        failed = true;
        break;
      }
      gotBytes = true;
      const auto r = parser.execute(buf, size_t(n));
      if (r.status == http::Http1Parser::Status::Error) {
        err = "malformed answer";
        failed = true;
      }
    }
    if (failed) {
      close();
      // Only a reused connection that broke before any answer is retried right away.
      if (reused && !gotBytes && nowMs() < deadline) continue;
      return -1;
    }
    const int status = parser.response().status;
    if (!parser.response().keepAlive) close();
    return status;
  }
  return -1;
}

}  // namespace sluice::tracing
