// eventloop_probe: what the kernel side of an event loop costs per request/response round
// trip on loopback TCP, for three ways of waiting and reading. Used to decide whether Sluice
// should own its epoll (edge-triggered, recv) instead of libuv's (level-triggered, read).
//
//   mode 0: level-triggered epoll + read(2)           (what libuv's uv_read_start does)
//   mode 1: edge-triggered epoll + recv(2)            (what nginx does)
//   mode 2: edge-triggered epoll nested in a level-   (an own epoll for connection sockets
//           triggered one + recv(2)                    watched from libuv's loop)
//
// A server thread on CPU 0 answers 64 connections (each message echoed with one send), a client
// on CPU 1 keeps one 200-byte message in flight per connection. Printed: the server thread's
// CPU time (user + system, softirq work done in its context included) per round trip, measured
// over `seconds` after a 1 s warm-up. Build and run with bench/eventloop_probe.sh.
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kConns = 64, kMessage = 200 };

static int mode;
static volatile int stop;

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

static void watch(int ep, int fd, uint32_t events) {
  struct epoll_event e = {.events = events, .data.fd = fd};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) die("epoll_ctl");
}

static void* server(void* arg) {
  pin(0);
  const int listener = *(int*)arg;
  const int one = 1;
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  for (int i = 0; i < kConns; ++i) {
    int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) die("accept4");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    watch(ep, fd, mode == 0 ? EPOLLIN : EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
  }
  int outer = -1;
  if (mode == 2) {
    outer = epoll_create1(EPOLL_CLOEXEC);
    watch(outer, ep, EPOLLIN);
  }
  struct epoll_event ev[512];
  static char buf[65536];
  while (!stop) {
    int n;
    if (mode == 2) {
      struct epoll_event o[4];
      if (epoll_wait(outer, o, 4, 100) <= 0) continue;
      n = epoll_wait(ep, ev, 512, 0);
    } else {
      n = epoll_wait(ep, ev, 512, 100);
    }
    for (int i = 0; i < n; ++i) {
      if (!(ev[i].events & EPOLLIN)) continue;
      const int fd = ev[i].data.fd;
      // One read: a message is far shorter than the buffer, so a short read empties the socket
      // (edge-triggered needs nothing more).
      ssize_t r = mode == 0 ? read(fd, buf, sizeof buf) : recv(fd, buf, sizeof buf, 0);
      if (r > 0) send(fd, buf, (size_t)r, MSG_NOSIGNAL);
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s mode(0|1|2) [seconds]\n", argv[0]);
    return 2;
  }
  mode = atoi(argv[1]);
  const int seconds = argc > 2 ? atoi(argv[2]) : 3;
  const int one = 1;
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (bind(listener, (struct sockaddr*)&a, sizeof a) != 0 || listen(listener, 128) != 0 ||
      getsockname(listener, (struct sockaddr*)&a, &alen) != 0)
    die("listen");
  int clients[kConns];
  for (int i = 0; i < kConns; ++i) {
    clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(clients[i], (struct sockaddr*)&a, sizeof a) != 0) die("connect");
    setsockopt(clients[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  pthread_t t;
  pthread_create(&t, NULL, server, &listener);
  pin(1);
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  for (int i = 0; i < kConns; ++i) watch(ep, clients[i], EPOLLIN);
  char msg[kMessage], buf[4096];
  memset(msg, 'x', sizeof msg);
  for (int i = 0; i < kConns; ++i) send(clients[i], msg, sizeof msg, 0);
  clockid_t serverClock;
  pthread_getcpuclockid(t, &serverClock);
  struct timespec c0 = {0}, c1, w0, w1;
  long rounds = 0, mark = -1;
  clock_gettime(CLOCK_MONOTONIC, &w0);
  for (;;) {
    struct epoll_event ev[kConns];
    int n = epoll_wait(ep, ev, kConns, 100);
    for (int i = 0; i < n; ++i) {
      if (read(ev[i].data.fd, buf, sizeof buf) > 0) {
        ++rounds;
        send(ev[i].data.fd, msg, sizeof msg, 0);
      }
    }
    clock_gettime(CLOCK_MONOTONIC, &w1);
    const double elapsed = (double)(w1.tv_sec - w0.tv_sec) + (w1.tv_nsec - w0.tv_nsec) / 1e9;
    if (mark < 0 && elapsed > 1) {
      mark = rounds;
      clock_gettime(serverClock, &c0);
    }
    if (elapsed > 1 + seconds) break;
  }
  clock_gettime(serverClock, &c1);
  stop = 1;
  pthread_join(t, NULL);
  const double ns = (double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec);
  printf("mode %d rounds %ld server_ns_per_round %.0f\n", mode, rounds - mark,
         ns / (double)(rounds - mark));
  return 0;
}
