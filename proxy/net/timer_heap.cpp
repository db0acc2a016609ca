#include "proxy/net/timer_heap.h"

#include <cassert>

namespace sluice::net {

TimerHeap::TimerHeap(uv_loop_t* loop) : loop_(loop) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
}

TimerHeap::~TimerHeap() {
  for (Timer* t : heap_) t->index = Timer::kNotScheduled;
}

void TimerHeap::close() {
  if (closed_) return;
  closed_ = true;
  for (Timer* t : heap_) t->index = Timer::kNotScheduled;
  heap_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void TimerHeap::schedule(Timer* t, uint64_t ms) {
  if (closed_) return;
  uint64_t now = uv_now(loop_);
  // A timer set from inside a callback with no delay fires on the next turn, never in the
  // current firing pass (that could loop forever).
  uint64_t due = now + (ms == 0 ? 1 : ms);
  if (t->scheduled()) {
    uint64_t old = t->due;
    t->due = due;
    if (due < old)
      siftUp(t->index);
    else
      siftDown(t->index);
  } else {
    t->due = due;
    heap_.push_back(t);
    t->index = uint32_t(heap_.size() - 1);
    siftUp(t->index);
  }
  if (!firing_) rearm();
}

void TimerHeap::cancel(Timer* t) {
  if (!t->scheduled()) return;
  removeAt(t->index);
  if (!firing_) rearm();
}

void TimerHeap::removeAt(uint32_t i) {
  Timer* t = heap_[i];
  Timer* last = heap_.back();
  heap_.pop_back();
  t->index = Timer::kNotScheduled;
  if (last == t) return;
  place(i, last);
  if (i > 0 && last->due < heap_[(i - 1) / 2]->due)
    siftUp(i);
  else
    siftDown(i);
}

void TimerHeap::siftUp(uint32_t i) {
  Timer* t = heap_[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (heap_[parent]->due <= t->due) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, t);
}

void TimerHeap::siftDown(uint32_t i) {
  Timer* t = heap_[i];
  const uint32_t n = uint32_t(heap_.size());
  for (;;) {
    uint32_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && heap_[child + 1]->due < heap_[child]->due) ++child;
    if (t->due <= heap_[child]->due) break;
    place(i, heap_[child]);
    i = child;
  }
  place(i, t);
}

void TimerHeap::rearm() {
  if (closed_) return;
  if (heap_.empty()) {
    if (armedFor_ != 0) {
      uv_timer_stop(&timer_);
      armedFor_ = 0;
    }
    return;
  }
  uint64_t due = heap_.front()->due;
  if (due == armedFor_) return;
  uint64_t now = uv_now(loop_);
  uv_timer_start(&timer_, onTimer, due > now ? due - now : 0, 0);
  armedFor_ = due;
}

void TimerHeap::onTimer(uv_timer_t* h) {
  auto* self = static_cast<TimerHeap*>(h->data);
  self->armedFor_ = 0;
  const uint64_t now = uv_now(self->loop_);
  self->firing_ = true;
  while (!self->closed_ && !self->heap_.empty() && self->heap_.front()->due <= now) {
    Timer* t = self->heap_.front();
    self->removeAt(0);
    t->cb(t);  // may schedule or cancel any timer, including this one (due > now)
  }
  self->firing_ = false;
  self->rearm();
}

}  // namespace sluice::net
