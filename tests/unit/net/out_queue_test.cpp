// Unit tests for proxy/net/out_queue over a real loopback TCP pair on a private uv loop: what a
// flush sends arrives whole and in order, whether the pieces are gathered into one send, sent
// as a vector, or partly left to a queued write because the peer's buffers are full.
#include "proxy/net/out_queue.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>

using namespace sluice::net;

namespace {

// A connected pair: `client` is a plain blocking socket, `server` a uv_tcp_t on the loop.
struct Pair {
  uv_loop_t loop{};
  uv_tcp_t server{};
  int client = -1;
  OutQueue out;
  int doneCalls = 0;
  int lastStatus = 0;

  Pair() {
    REQUIRE(uv_loop_init(&loop) == 0);
    const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(lfd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(lfd, 1) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    const int sfd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    REQUIRE(sfd >= 0);
    ::close(lfd);
    REQUIRE(uv_tcp_init(&loop, &server) == 0);
    REQUIRE(uv_tcp_open(&server, sfd) == 0);
    out.bind(reinterpret_cast<uv_stream_t*>(&server), this, [](void* p, int status) {
      auto* self = static_cast<Pair*>(p);
      self->doneCalls++;
      self->lastStatus = status;
    });
  }
  ~Pair() {
    ::close(client);
    uv_close(reinterpret_cast<uv_handle_t*>(&server), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
  // Reads exactly n bytes from the client side, running the loop while the queue drains.
  std::string receive(size_t n) {
    std::string got;
    char buf[65536];
    while (got.size() < n) {
      uv_run(&loop, UV_RUN_NOWAIT);
      const ssize_t r = ::recv(client, buf, sizeof buf, MSG_DONTWAIT);
      if (r > 0) got.append(buf, size_t(r));
      if (r == 0) break;
      if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
    }
    return got;
  }
};

}  // namespace

TEST_CASE("OutQueue: small pieces (a head and a short body) arrive as one contiguous stream") {
  Pair p;
  const std::string body = "hello from the origin\n";
  p.out.copy("HTTP/1.1 200 OK\r\n");
  std::string& s = p.out.beginScratch();
  s.append("Content-Length: 22\r\n\r\n");
  p.out.endScratch();
  p.out.ref(body.data(), body.size());
  REQUIRE(p.out.flush() == 0);
  CHECK(p.out.queuedBytes() == 0);  // the kernel took it all: nothing copied, no callback
  CHECK(p.doneCalls == 0);
  CHECK_FALSE(p.out.hasPieces());
  CHECK(p.receive(61) == "HTTP/1.1 200 OK\r\nContent-Length: 22\r\n\r\nhello from the origin\n");
}

TEST_CASE("OutQueue: a batch larger than the gathering buffer goes out as a vector, in order") {
  Pair p;
  std::string a(1500, 'a'), b(1500, 'b'), c(3000, 'c');
  p.out.ref(a.data(), a.size());
  p.out.copy(b);
  p.out.ref(c.data(), c.size());
  REQUIRE(p.out.flush() == 0);
  CHECK(p.out.queuedBytes() == 0);
  CHECK(p.receive(6000) == a + b + c);
}

TEST_CASE("OutQueue: what the kernel does not take is queued, then written in order") {
  Pair p;
  int small = 4096;  // keep the buffers small so that a flush cannot go out whole
  ::setsockopt(p.client, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  uv_os_fd_t sfd;
  REQUIRE(uv_fileno(reinterpret_cast<uv_handle_t*>(&p.server), &sfd) == 0);
  ::setsockopt(sfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  std::string big;
  for (int i = 0; i < 200000; ++i) big.push_back(char('a' + i % 26));
  const std::string tail = "<end>";
  p.out.ref(big.data(), big.size());
  REQUIRE(p.out.flush() == 0);
  CHECK(p.out.queuedBytes() > 0);
  p.out.copy(tail);  // a later flush stays behind the queued bytes
  REQUIRE(p.out.flush() == 0);
  const std::string got = p.receive(big.size() + tail.size());
  CHECK(got.size() == big.size() + tail.size());
  CHECK(got == big + tail);
  CHECK(p.out.queuedBytes() == 0);
  CHECK(p.doneCalls >= 1);
  CHECK(p.lastStatus == 0);
}
