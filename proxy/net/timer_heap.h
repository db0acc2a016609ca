// TimerHeap: the deadlines of one worker's connections in one binary min-heap driven by ONE
// libuv timer. A connection embeds a 24-byte `Timer` instead of a 152-byte uv_timer_t (and a
// libuv handle to close), which is most of what an idle keep-alive connection costs.
//
// Loop-thread only. Times are uv_now() milliseconds. The libuv timer is re-armed only when
// the earliest deadline changes, so moving one connection's deadline among 10k others costs
// an O(log n) sift and no syscall.
#pragma once

#include <uv.h>

#include <cstdint>
#include <vector>

namespace sluice::net {

class TimerHeap;

struct Timer {
  using Callback = void (*)(Timer*);
  static constexpr uint32_t kNotScheduled = UINT32_MAX;

  explicit Timer(Callback cb) : cb(cb) {}
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  bool scheduled() const { return index != kNotScheduled; }
  uint64_t due = 0;  // valid while scheduled()
  Callback cb;
  uint32_t index = kNotScheduled;  // position in the heap
};

class TimerHeap {
 public:
  explicit TimerHeap(uv_loop_t* loop);
  ~TimerHeap();
  TimerHeap(const TimerHeap&) = delete;
  TimerHeap& operator=(const TimerHeap&) = delete;

  // Fires `t` at uv_now() + ms (at the earliest in the next loop turn); re-schedules it when it
  // was scheduled already.
  void schedule(Timer* t, uint64_t ms);
  // `t` will not fire. Safe when not scheduled. Must be called before `t` is destroyed.
  void cancel(Timer* t);

  // Closes the libuv timer (the loop can end). No timer may be scheduled afterwards.
  void close();

  size_t size() const { return heap_.size(); }

 private:
  void siftUp(uint32_t i);
  void siftDown(uint32_t i);
  void place(uint32_t i, Timer* t) {
    heap_[i] = t;
    t->index = i;
  }
  void removeAt(uint32_t i);
  void rearm();
  static void onTimer(uv_timer_t* h);

  uv_loop_t* loop_;
  uv_timer_t timer_{};
  std::vector<Timer*> heap_;
  uint64_t armedFor_ = 0;  // due of the libuv timer; 0 = not armed
  bool firing_ = false;
  bool closed_ = false;
};

}  // namespace sluice::net
