// The libuv event adapter of a hiredis connection (see redis_events.h).
#include "middleware/redis_events.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

namespace sluice::middleware {

RedisEvents* RedisEvents::attach(uv_loop_t* loop, redisAsyncContext* c, Owner* owner) {
  auto* e = new RedisEvents();
  e->owner_ = owner;
  e->ac_ = c;
  if (uv_poll_init(loop, &e->poll_, c->c.fd) != 0) {
    delete e;  // not initialised: nothing to close
    return nullptr;
  }
  e->poll_.data = e;
  c->ev.data = e;
  c->ev.addRead = addRead;
  c->ev.delRead = delRead;
  c->ev.addWrite = addWrite;
  c->ev.delWrite = delWrite;
  c->ev.cleanup = cleanup;
  return e;
}

void RedisEvents::flush() {
  if (!writePending_) return;
  writePending_ = false;
  flushing_ = true;
  redisAsyncHandleWrite(ac_);  // may drop the connection; `this` stays valid
  flushing_ = false;
}

void RedisEvents::setMask(int m) {
  if (m == mask_) return;
  mask_ = m;
  if (m != 0) {
    uv_poll_start(&poll_, m, onPoll);
  } else {
    uv_poll_stop(&poll_);
  }
}

void RedisEvents::onPoll(uv_poll_t* h, int status, int events) {
  auto* e = static_cast<RedisEvents*>(h->data);
  if (e->ac_ == nullptr) return;
  if (status < 0) {
    // POLLERR: libuv has stopped the poll. Let hiredis read (or check the connect) for
    // whatever it was waiting for, so it finds the error now rather than at the timeout.
    events = e->mask_;
    e->mask_ = 0;
  }
  if (events & UV_READABLE) redisAsyncHandleRead(e->ac_);
  // `e` stays valid (freed in the uv_close callback), `e->ac_` may be gone.
  if (e->ac_ != nullptr && (events & UV_WRITABLE)) redisAsyncHandleWrite(e->ac_);
}

void RedisEvents::addRead(void* d) {
  auto* e = static_cast<RedisEvents*>(d);
  e->setMask(e->mask_ | UV_READABLE);
}

void RedisEvents::delRead(void* d) {
  auto* e = static_cast<RedisEvents*>(d);
  e->setMask(e->mask_ & ~UV_READABLE);
}

void RedisEvents::addWrite(void* d) {
  auto* e = static_cast<RedisEvents*>(d);
  if (e->mask_ & UV_WRITABLE) return;  // a write already waits for the socket: it takes this
  if (e->flushing_ || !(e->ac_->c.flags & REDIS_CONNECTED)) {
    e->setMask(e->mask_ | UV_WRITABLE);
    return;
  }
  if (!e->writePending_) {
    e->writePending_ = true;
    e->owner_->onWritePending();
  }
}

void RedisEvents::delWrite(void* d) {
  auto* e = static_cast<RedisEvents*>(d);
  e->setMask(e->mask_ & ~UV_WRITABLE);
}

void RedisEvents::cleanup(void* d) {
  // hiredis is freeing the context (the socket is closed right after this).
  auto* e = static_cast<RedisEvents*>(d);
  e->ac_ = nullptr;
  e->writePending_ = false;
  e->owner_->onEventsDetached(e);
  uv_close(reinterpret_cast<uv_handle_t*>(&e->poll_), [](uv_handle_t* h) {
    auto* ev = static_cast<RedisEvents*>(h->data);
    Owner* owner = ev->owner_;
    delete ev;
    owner->onEventsClosed();
  });
}

}  // namespace sluice::middleware
