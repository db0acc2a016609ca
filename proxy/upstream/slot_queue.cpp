#include "proxy/upstream/slot_queue.h"

#include <mutex>
#include <vector>

namespace sluice::upstream {

namespace {
// Every worker's queue, for cross-worker wakeups. Touched on queue creation/close and when a
// slot is released while some worker has waiters (gWaiters > 0): never on the plain path.
std::mutex gMu;
std::vector<SlotQueue*> gQueues;
std::atomic<uint32_t> gWaiters{0};
}  // namespace

SlotQueue::SlotQueue(uv_loop_t* loop) {
  uv_async_init(loop, &async_, onAsync);
  async_.data = this;
  std::lock_guard<std::mutex> lock(gMu);
  gQueues.push_back(this);
}

SlotQueue::~SlotQueue() { close(); }

void SlotQueue::close() {
  if (closed_) return;
  closed_ = true;
  {
    std::lock_guard<std::mutex> lock(gMu);
    std::erase(gQueues, this);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
}

bool SlotQueue::add(SlotWaiter* w) {
  if (w->queued_) return true;
  if (size_ >= kMaxWaiters || closed_) return false;
  w->queued_ = true;
  w->next_ = nullptr;
  w->prev_ = tail_;
  if (tail_)
    tail_->next_ = w;
  else
    head_ = w;
  tail_ = w;
  ++size_;
  gWaiters.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void SlotQueue::remove(SlotWaiter* w) {
  if (!w->queued_) return;
  w->queued_ = false;
  if (w->prev_)
    w->prev_->next_ = w->next_;
  else
    head_ = w->next_;
  if (w->next_)
    w->next_->prev_ = w->prev_;
  else
    tail_ = w->prev_;
  w->next_ = w->prev_ = nullptr;
  --size_;
  gWaiters.fetch_sub(1, std::memory_order_relaxed);
}

void SlotQueue::slotReleased() {
  if (gWaiters.load(std::memory_order_relaxed) == 0) return;
  if (size_ > 0) pending_ = true;
  if (gWaiters.load(std::memory_order_relaxed) == size_) return;  // all waiters are ours
  std::lock_guard<std::mutex> lock(gMu);
  for (SlotQueue* q : gQueues) {
    if (q == this || q->remotePending_.exchange(true)) continue;
    uv_async_send(&q->async_);
  }
}

void SlotQueue::onAsync(uv_async_t* h) {
  auto* q = static_cast<SlotQueue*>(h->data);
  q->remotePending_.store(false);
  q->pending_ = true;
  q->runPending();
}

void SlotQueue::runPending() {
  if (!pending_) return;
  pending_ = false;
  // Wake in order; a waiter that still finds every backend full keeps its place. Waiters added
  // while walking (none should be) wait for the next release.
  SlotWaiter* w = head_;
  const SlotWaiter* last = tail_;
  while (w) {
    SlotWaiter* next = w->next_;
    const bool end = w == last;
    if (w->onSlotFreed()) remove(w);
    if (end) break;
    w = next;
  }
}

}  // namespace sluice::upstream
