// hiredis' event hooks for one connection on a libuv loop, in place of
// <hiredis/adapters/libuv.h>, which calls uv_poll_start on every command and after every write
// (each one an epoll_ctl DEL, failing with ENOENT, then an ADD on the next poll). Here:
//  - the uv_poll is started / stopped only when the wanted events change;
//  - once connected, addWrite (every command) only marks output pending and tells the owner,
//    whose end-of-turn flush writes it with flush(); only a write that could not finish there
//    (hiredis calls addWrite again from inside it) polls for writability;
//  - while connecting, addWrite polls for writability (that is how hiredis sees the connect
//    complete).
// The object lives until libuv has closed its uv_poll (after hiredis' cleanup hook); the owner
// hears of that last, so it can count the handle and outlive it.
#pragma once

#include <uv.h>

struct redisAsyncContext;

namespace sluice::middleware {

class RedisEvents {
 public:
  // What the adapter tells the client that attached it.
  class Owner {
   public:
    // Output waits for the end-of-turn flush (once per pending write, not per command).
    virtual void onWritePending() = 0;
    // hiredis is freeing the context: `e` no longer writes anything.
    virtual void onEventsDetached(RedisEvents* e) = 0;
    // The uv_poll is closed and `this` adapter deleted.
    virtual void onEventsClosed() = 0;

   protected:
    ~Owner() = default;
  };

  // Hooks a new adapter into `c` (polling its socket on `loop`). nullptr (and nothing to
  // close) when the socket cannot be polled.
  static RedisEvents* attach(uv_loop_t* loop, redisAsyncContext* c, Owner* owner);

  bool writePending() const { return writePending_; }
  // The end-of-turn write of the pending output (one write(2) for the whole turn). May drop
  // the connection (hiredis' cleanup hook runs inside); `this` stays valid until the
  // onEventsClosed() report.
  void flush();

 private:
  RedisEvents() = default;
  void setMask(int m);
  static void onPoll(uv_poll_t* h, int status, int events);
  static void addRead(void* d);
  static void delRead(void* d);
  static void addWrite(void* d);
  static void delWrite(void* d);
  static void cleanup(void* d);

  Owner* owner_ = nullptr;
  redisAsyncContext* ac_ = nullptr;  // nullptr once hiredis has cleaned up
  uv_poll_t poll_;
  int mask_ = 0;               // events the uv_poll is started with
  bool writePending_ = false;  // output waits for the end-of-turn flush
  bool flushing_ = false;      // inside flush()'s redisAsyncHandleWrite
};

}  // namespace sluice::middleware
