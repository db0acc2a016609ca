// Acceptor: takes connections off a listening socket with accept4(2), driven by a uv_poll
// handle, so that the proxy and not libuv decides what a failed accept() does.
//
// libuv's own accept loop (uv_listen) hides EMFILE behind a reserve descriptor that it closes
// to accept and drop the waiting connections; when another thread has taken that descriptor
// in the meantime, it calls the connection callback with UV_EMFILE in a loop that only ends
// when the listening handle is closed, so the loop spins until descriptors come back. Here a
// failure for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) stops watching
// the socket for kPauseMs instead, as nginx and HAProxy do: the connections wait in the
// kernel's backlog and are taken when a descriptor is free again (resume() tries at once,
// e.g. after a connection closed). A failure that concerns one connection only (it was reset
// or aborted before it was taken) moves on to the next one.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <string>

#include "config/schema.h"

namespace sluice::net {

// A listening TCP socket: non-blocking, close-on-exec, SO_REUSEADDR, SO_REUSEPORT when asked
// (one socket per worker on the same address), IPV6_V6ONLY for IPv6. -1 with `err` on failure.
int listenSocket(const config::HostPort& hp, bool reusePort, int backlog, std::string& err);

// Closes a connection at once with a reset (SO_LINGER 0): no FIN handshake, no TIME_WAIT.
void abortiveClose(int fd);

class Acceptor {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // A new connection (non-blocking, close-on-exec): the handler keeps or closes `fd`.
    virtual void onAccepted(int fd, const sockaddr_storage& peer) = 0;
    // accept(2) failed with `err` (errno) for lack of descriptors or memory, or for a reason
    // that would fail again at once: accepting pauses for kPauseMs (or until resume()).
    virtual void onAcceptPaused(int err) = 0;
  };

  static constexpr uint64_t kPauseMs = 100;
  // Per wake-up: one accept(2), then as many more as the accept queue holds at that moment
  // (Linux reports its length for a listening socket in TCP_INFO), at most kBatch in all; the
  // poll is level-triggered, so the rest are taken on the next loop turn, with the other
  // handles' events in between. Accepting until accept(2) says EAGAIN would cost one failed
  // call per wake-up, and a failed accept(2) is not cheap: Linux allocates the new socket's
  // inode and file before it looks at the queue and frees them again when it is empty (about
  // 1 µs, 3-4 % of the CPU per request of a new-connection-per-request load). Connections that
  // fail on their own (reset or aborted before they were taken) do not count: up to
  // kMaxSkipped of them are passed over in one wake-up.
  static constexpr int kBatch = 64;
  static constexpr int kMaxSkipped = 64;

  // Watches the listening socket `fd` on `loop`; owns `fd` from then on (also on failure).
  // nullptr with `err` when the poll handle cannot be set up.
  static Acceptor* open(uv_loop_t* loop, int fd, Handler* handler, std::string& err);

  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  // Stops accepting and closes the socket; the object frees itself once its handles closed.
  // The handler is not called any more.
  void close();
  // TCP_DEFER_ACCEPT on the listening socket (off until set): the kernel completes the
  // handshake but queues the connection for accept(2) only once the client's first bytes
  // arrived (or after ~1 s without any), so the first read after accept(2) finds them and a
  // connection that never sends anything costs no descriptor until then. A no-op when
  // unchanged; a failure leaves the old setting (it is only an optimisation).
  void setDeferAccept(bool on);
  bool deferAccept() const { return deferAccept_ == 1; }
  // When paused for lack of descriptors: try again now (one was just freed).
  void resume();
  bool paused() const { return paused_; }

 private:
  Acceptor(int fd, Handler* handler) : fd_(fd), handler_(handler) {}
  ~Acceptor() = default;
  void acceptSome();
  // Connections waiting in the listening socket's accept queue (0 when unknown).
  int queued() const;
  void pause(int err);
  static void onPoll(uv_poll_t* p, int status, int events);
  static void onTimer(uv_timer_t* t);
  static void onHandleClosed(uv_handle_t* h);

  int fd_;
  Handler* handler_;
  uv_poll_t poll_{};
  uv_timer_t timer_{};
  int openHandles_ = 0;
  int deferAccept_ = -1;  // unknown until setDeferAccept()
  bool paused_ = false;
  bool closed_ = false;
};

}  // namespace sluice::net
