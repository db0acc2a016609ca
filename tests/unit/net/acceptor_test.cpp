// Unit tests for proxy/net/acceptor and proxy/net/peer_counts: accepting real connections on a
// private uv loop, pausing (not spinning) when the process is out of descriptors and taking
// the waiting connection once one is free, and the per-address counts shared by threads.
#include "proxy/net/acceptor.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

#include "proxy/net/peer_counts.h"
#include "proxy/server.h"
#include "proxy/worker.h"

using namespace sluice;
using namespace sluice::net;

namespace {

struct Recorder : Acceptor::Handler {
  std::vector<int> fds;
  std::vector<sockaddr_storage> peers;
  std::vector<int> pauses;  // errno of each pause
  void onAccepted(int fd, const sockaddr_storage& peer) override {
    fds.push_back(fd);
    peers.push_back(peer);
  }
  void onAcceptPaused(int err) override { pauses.push_back(err); }
  ~Recorder() override {
    for (int fd : fds) ::close(fd);
  }
};

// A listening socket on 127.0.0.1 with a port the kernel chose (bound once, never re-bound).
int listenOnAnyPort(uint16_t& port, int backlog = 64) {
  std::string err;
  int fd = listenSocket(config::HostPort{"127.0.0.1", 0}, false, backlog, err);
  REQUIRE_MESSAGE(fd >= 0, err);
  sockaddr_in a{};
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  port = ntohs(a.sin_port);
  return fd;
}

int connectTo(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

template <class Pred>
bool runUntil(uv_loop_t* loop, Pred pred, int ms = 3000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    uv_run(loop, UV_RUN_NOWAIT);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Runs the loop for `ms` of wall time.
void runFor(uv_loop_t* loop, int ms) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
    uv_run(loop, UV_RUN_NOWAIT);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

sockaddr_storage v4(const char* ip) {
  sockaddr_storage ss{};
  auto& s4 = reinterpret_cast<sockaddr_in&>(ss);
  s4.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &s4.sin_addr);
  return ss;
}

sockaddr_storage v6(const char* ip) {
  sockaddr_storage ss{};
  auto& s6 = reinterpret_cast<sockaddr_in6&>(ss);
  s6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, ip, &s6.sin6_addr);
  return ss;
}

// An acceptor on a private loop, listening on 127.0.0.1 with a port the kernel chose.
struct Running {
  uv_loop_t loop{};
  uint16_t port = 0;
  int lfd = -1;
  Acceptor* a = nullptr;
  explicit Running(Acceptor::Handler& h, int backlog = 64) {
    uv_loop_init(&loop);
    lfd = listenOnAnyPort(port, backlog);
    std::string err;
    a = Acceptor::open(&loop, lfd, &h, err);
    REQUIRE_MESSAGE(a != nullptr, err);
  }
  // Closes the acceptor and runs the loop until its handles closed (it frees itself).
  void close() {
    a->close();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }
};

}  // namespace

TEST_CASE("acceptor: takes every waiting connection with its peer address, then closes") {
  Recorder rec;
  Running r(rec);
  uv_loop_t& loop = r.loop;
  const uint16_t port = r.port;
  Acceptor* a = r.a;
  std::vector<int> clients(3);
  for (int& fd : clients) fd = connectTo(port);
  REQUIRE(runUntil(&loop, [&] { return rec.fds.size() == 3; }));
  for (const auto& p : rec.peers) {
    CHECK(p.ss_family == AF_INET);
    CHECK(ntohl(reinterpret_cast<const sockaddr_in&>(p).sin_addr.s_addr) == INADDR_LOOPBACK);
  }
  CHECK(rec.pauses.empty());
  CHECK_FALSE(a->paused());
  r.close();
  CHECK(connectTo(port) < 0);  // the listening socket is closed
  for (int fd : clients) ::close(fd);
}

// Counts the loop turns in which the acceptor took connections.
struct TurnRecorder : Recorder {
  std::vector<size_t> perTurn;  // connections taken in each turn that took any
  void runTurn(uv_loop_t* loop) {
    const size_t before = fds.size();
    uv_run(loop, UV_RUN_NOWAIT);
    if (fds.size() > before) perTurn.push_back(fds.size() - before);
  }
};

TEST_CASE("acceptor: one wake-up takes the whole queue, at most kBatch, then the rest next turn") {
  TurnRecorder rec;
  Running r(rec, 4 * Acceptor::kBatch);  // a backlog with room for every connection below
  const size_t n = size_t(Acceptor::kBatch) + 10;
  std::vector<int> clients;
  for (size_t i = 0; i < n; ++i) clients.push_back(connectTo(r.port));
  // All of them in the accept queue before the loop runs (the server side of a loopback
  // handshake may finish just after connect(2) returned).
  auto queued = [&] {
    tcp_info ti{};
    socklen_t len = sizeof ti;
    return ::getsockopt(r.lfd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 ? size_t(ti.tcpi_unacked)
                                                                      : size_t(0);
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (queued() < n && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  REQUIRE(queued() == n);
  for (int i = 0; i < 10 && rec.fds.size() < n; ++i) rec.runTurn(&r.loop);
  REQUIRE(rec.fds.size() == n);
  REQUIRE(rec.perTurn.size() == 2);
  CHECK(rec.perTurn[0] == size_t(Acceptor::kBatch));
  CHECK(rec.perTurn[1] == 10);
  r.close();
  for (int fd : clients) ::close(fd);
}

TEST_CASE("acceptor: with defer_accept a connection is taken once it has sent something") {
  Recorder rec;
  Running r(rec);
  r.a->setDeferAccept(true);
  CHECK(r.a->deferAccept());
  int secs = 0;
  socklen_t len = sizeof secs;
  REQUIRE(::getsockopt(r.lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, &len) == 0);
  CHECK(secs > 0);
  int silent = connectTo(r.port);
  int talker = connectTo(r.port);
  REQUIRE(silent >= 0);
  REQUIRE(talker >= 0);
  REQUIRE(::write(talker, "GET", 3) == 3);
  REQUIRE(runUntil(&r.loop, [&] { return rec.fds.size() == 1; }));
  char buf[8];
  CHECK(::recv(rec.fds[0], buf, sizeof buf, 0) == 3);  // the talker, its bytes already there
  runFor(&r.loop, 100);
  CHECK(rec.fds.size() == 1);  // the silent one waits in the kernel (about 1 s)
  // Switched off (as a reload does): later connections are taken at once.
  r.a->setDeferAccept(false);
  CHECK_FALSE(r.a->deferAccept());
  REQUIRE(::getsockopt(r.lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, &len) == 0);
  CHECK(secs == 0);
  int later = connectTo(r.port);
  REQUIRE(later >= 0);
  REQUIRE(runUntil(&r.loop, [&] { return rec.fds.size() >= 2; }));
  r.close();
  for (int fd : {silent, talker, later}) ::close(fd);
}

TEST_CASE("acceptor: out of descriptors it pauses instead of retrying, then takes the waiter") {
  Recorder rec;
  Running r(rec);
  uv_loop_t& loop = r.loop;
  const uint16_t port = r.port;
  Acceptor* a = r.a;

  // Lower the soft limit a little above what is open, fill it up, and leave exactly one
  // descriptor for the client's socket: the acceptor then finds none for accept(2). The guard
  // gives the descriptors and the limit back whatever happens below.
  struct Exhaustion {
    rlimit saved{};
    bool lowered = false;
    std::vector<int> filler;
    ~Exhaustion() {
      for (int fd : filler) ::close(fd);
      if (lowered) ::setrlimit(RLIMIT_NOFILE, &saved);
    }
  } ex;
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &ex.saved) == 0);
  const int highest = ::dup(0);
  REQUIRE(highest >= 0);
  ::close(highest);
  rlimit low = ex.saved;
  low.rlim_cur = rlim_t(highest) + 16;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  ex.lowered = true;
  for (int fd; (fd = ::dup(0)) >= 0;) ex.filler.push_back(fd);
  CHECK(errno == EMFILE);
  ::close(ex.filler.back());
  ex.filler.pop_back();
  int client = connectTo(port);
  REQUIRE(client >= 0);

  runFor(&loop, 350);
  // One failure per pause (kPauseMs = 100): a handful in 350 ms, not thousands.
  CHECK(rec.fds.empty());
  REQUIRE_FALSE(rec.pauses.empty());
  CHECK(rec.pauses.front() == EMFILE);
  CHECK(rec.pauses.size() <= 5);
  CHECK(a->paused());

  // A descriptor comes back: resume() takes the waiting connection at once.
  ::close(ex.filler.back());
  ex.filler.pop_back();
  a->resume();
  CHECK(runUntil(
      &loop, [&] { return rec.fds.size() == 1; }, 1000));

  ::close(client);
  r.close();
}

TEST_CASE("peer counts: a cap per address and scope, IPv4 and its mapped IPv6 form alike") {
  PeerCounts pc;
  int scopeA = 0, scopeB = 0;
  const auto ip1 = v4("10.0.0.1");
  const auto ip2 = v4("10.0.0.2");
  auto* p1 = pc.acquire(&scopeA, ip1, 2);
  auto* p2 = pc.acquire(&scopeA, ip1, 2);
  REQUIRE(p1 != nullptr);
  REQUIRE(p2 != nullptr);
  CHECK(pc.acquire(&scopeA, ip1, 2) == nullptr);
  CHECK(pc.acquire(&scopeA, v6("::ffff:10.0.0.1"), 2) == nullptr);  // the same address
  CHECK(pc.count(&scopeA, ip1) == 2);
  // Other addresses and other listeners have their own places.
  auto* q = pc.acquire(&scopeA, ip2, 2);
  auto* r = pc.acquire(&scopeB, ip1, 2);
  auto* s6 = pc.acquire(&scopeA, v6("2001:db8::1"), 1);
  CHECK(q != nullptr);
  CHECK(r != nullptr);
  CHECK(s6 != nullptr);
  CHECK(pc.acquire(&scopeA, v6("2001:db8::1"), 1) == nullptr);
  // A reload may lower the cap below what is open: nothing new until below it.
  CHECK(pc.acquire(&scopeA, ip1, 1) == nullptr);
  pc.release(p1);
  CHECK(pc.count(&scopeA, ip1) == 1);
  auto* p3 = pc.acquire(&scopeA, ip1, 2);
  CHECK(p3 != nullptr);
  for (auto* p : {p2, p3, q, r, s6}) pc.release(p);
  CHECK(pc.entries() == 0);  // no entry outlives its last connection
  CHECK(pc.acquire(&scopeA, ip1, 0) == nullptr);
  CHECK(pc.entries() == 0);
}

TEST_CASE("peer counts: workers taking and giving back places at once never pass the cap") {
  PeerCounts pc;
  int scope = 0;
  const auto ip = v4("192.0.2.7");
  constexpr uint32_t kCap = 3;
  std::atomic<uint32_t> inUse{0}, maxSeen{0};
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        auto* p = pc.acquire(&scope, ip, kCap);
        if (p == nullptr) continue;
        uint32_t now = inUse.fetch_add(1) + 1;
        uint32_t seen = maxSeen.load();
        while (now > seen && !maxSeen.compare_exchange_weak(seen, now)) {
        }
        inUse.fetch_sub(1);
        pc.release(p);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(maxSeen.load() <= kCap);
  CHECK(maxSeen.load() >= 1);
  CHECK(pc.entries() == 0);
}

TEST_CASE("max_connections: shares over workers and the default from the fd limit") {
  CHECK(Worker::shareOf(10, 3, 0) == 4);
  CHECK(Worker::shareOf(10, 3, 1) == 3);
  CHECK(Worker::shareOf(10, 3, 2) == 3);
  CHECK(Worker::shareOf(1, 2, 0) == 1);
  CHECK(Worker::shareOf(1, 2, 1) == 0);  // more workers than connections: this one takes none
  CHECK(Worker::shareOf(0, 4, 0) == 0);  // no cap
  uint64_t sum = 0;
  for (unsigned i = 0; i < 7; ++i) sum += Worker::shareOf(1000, 7, i);
  CHECK(sum == 1000);

  CHECK(autoMaxConnections(64) == kMinAutoConnections);
  CHECK(autoMaxConnections(10) == kMinAutoConnections);
  CHECK(autoMaxConnections(1024) == (1024 - kFdReserve) / 2);
  CHECK(autoMaxConnections(1 << 20) == ((1 << 20) - kFdReserve) / 2);
}
