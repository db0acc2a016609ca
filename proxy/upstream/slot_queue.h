// SlotQueue: requests waiting for a backend of their pool to drop under max_connections, one
// queue per worker. A request joins when every usable backend is at its limit and is woken
// (FIFO) at the end of the loop turn in which any slot is released — on this worker, or on
// another one (which pokes this worker through a uv_async only when it has waiters). No polling:
// the only timer is the waiter's own deadline (the pool's connect_timeout).
#pragma once

#include <uv.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace sluice::upstream {

class SlotWaiter {
 public:
  virtual ~SlotWaiter() = default;
  // A slot may be free: try again. Return true when done waiting (got a backend or gave up);
  // false leaves the waiter queued in its place.
  virtual bool onSlotFreed() = 0;

 private:
  friend class SlotQueue;
  SlotWaiter* next_ = nullptr;
  SlotWaiter* prev_ = nullptr;
  bool queued_ = false;
};

class SlotQueue {
 public:
  static constexpr size_t kMaxWaiters = 1024;  // per worker

  explicit SlotQueue(uv_loop_t* loop);
  ~SlotQueue();
  SlotQueue(const SlotQueue&) = delete;
  SlotQueue& operator=(const SlotQueue&) = delete;

  // False when the queue is full (the request gets its 503 at once).
  bool add(SlotWaiter* w);
  void remove(SlotWaiter* w);
  bool contains(const SlotWaiter* w) const { return w->queued_; }
  size_t size() const { return size_; }
  // A request slot was released on this worker.
  void slotReleased();
  // End of a loop turn: wake waiters if a slot was released.
  void runPending();
  // Stops cross-worker wakeups (worker shutdown); closes the async handle.
  void close();

 private:
  static void onAsync(uv_async_t* h);
  uv_async_t async_{};
  SlotWaiter* head_ = nullptr;
  SlotWaiter* tail_ = nullptr;
  size_t size_ = 0;
  bool pending_ = false;
  bool closed_ = false;
  std::atomic<bool> remotePending_{false};
};

}  // namespace sluice::upstream
