// SlotQueue (FIFO wake of requests waiting for a max_connections slot, proxy/upstream/
// slot_queue) and Backend::tryAcquireSlot (proxy/upstream/pool.h).
#include "proxy/upstream/slot_queue.h"

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "proxy/upstream/pool.h"

using namespace sluice::upstream;

namespace {

// A waiter that logs its wake-ups and answers with `done` (true: stop waiting).
class Waiter final : public SlotWaiter {
 public:
  Waiter(std::string* log, char name, bool done = true) : done_(done), log_(log), name_(name) {}
  bool onSlotFreed() override {
    log_->push_back(name_);
    return done_;
  }
  bool done_;  // what the next wake-up answers

 private:
  std::string* log_;
  char name_;
};

// A queue on a private loop; closes it and lets libuv finish the close.
struct LoopQueue {
  uv_loop_t loop{};
  std::unique_ptr<SlotQueue> q;
  LoopQueue() {
    uv_loop_init(&loop);
    q = std::make_unique<SlotQueue>(&loop);
  }
  ~LoopQueue() {
    q->close();
    uv_run(&loop, UV_RUN_NOWAIT);
    q.reset();
    uv_loop_close(&loop);
  }
};

// Several waiters a..; all are added to the queue in order.
struct Waiters {
  std::string log;
  std::vector<std::unique_ptr<Waiter>> w;
  Waiters(SlotQueue& q, const std::string& names) {
    for (char c : names) {
      w.push_back(std::make_unique<Waiter>(&log, c));
      REQUIRE(q.add(w.back().get()));
    }
  }
  Waiter& operator[](char c) { return *w[size_t(c - 'a')]; }
  // Releases one slot and runs the end of the loop turn; returns who was woken, in order.
  std::string wake(SlotQueue& q) {
    log.clear();
    q.slotReleased();
    q.runPending();
    return log;
  }
  void removeAll(SlotQueue& q) {
    for (auto& x : w) q.remove(x.get());
  }
};

}  // namespace

TEST_SUITE("slot_queue") {
  TEST_CASE("waiters are woken in FIFO order, only at the end of the loop turn") {
    LoopQueue lq;
    SlotQueue& q = *lq.q;
    Waiters ws(q, "abc");
    CHECK(q.size() == 3);
    q.runPending();  // nothing was released yet
    CHECK(ws.log.empty());
    q.slotReleased();
    CHECK(ws.log.empty());  // released now, woken later
    q.runPending();
    CHECK(ws.log == "abc");
    CHECK(q.size() == 0);
    for (char c : std::string("abc")) CHECK_FALSE(q.contains(&ws[c]));
    q.runPending();  // the release was consumed
    CHECK(ws.log == "abc");
  }

  TEST_CASE("a waiter that still finds everything full keeps its place") {
    LoopQueue lq;
    SlotQueue& q = *lq.q;
    Waiters ws(q, "abcd");
    ws['a'].done_ = false;
    ws['c'].done_ = false;
    CHECK(ws.wake(q) == "abcd");
    CHECK(q.size() == 2);
    CHECK(q.contains(&ws['a']));
    CHECK_FALSE(q.contains(&ws['b']));
    CHECK(q.contains(&ws['c']));
    // A newcomer queues behind the ones that kept their place.
    Waiter e(&ws.log, 'e');
    REQUIRE(q.add(&e));
    CHECK(ws.wake(q) == "ace");
    ws['a'].done_ = true;
    CHECK(ws.wake(q) == "ac");
    CHECK(q.size() == 1);
    ws.removeAll(q);
    CHECK(q.size() == 0);
  }

  TEST_CASE("remove() unlinks head, middle and tail; twice is harmless; add twice is one entry") {
    LoopQueue lq;
    SlotQueue& q = *lq.q;
    Waiters ws(q, "abcde");
    CHECK(q.add(&ws['b']));  // already queued: keeps its place, no second entry
    CHECK(q.size() == 5);
    q.remove(&ws['a']);
    q.remove(&ws['c']);
    q.remove(&ws['e']);
    q.remove(&ws['c']);
    CHECK(q.size() == 2);
    CHECK_FALSE(q.contains(&ws['c']));
    CHECK(ws.wake(q) == "bd");
    CHECK(q.size() == 0);
    // Removed waiters can come back, at the tail.
    REQUIRE(q.add(&ws['c']));
    REQUIRE(q.add(&ws['a']));
    CHECK(ws.wake(q) == "ca");
  }

  TEST_CASE("the queue holds at most kMaxWaiters") {
    LoopQueue lq;
    SlotQueue& q = *lq.q;
    std::string log;
    std::vector<std::unique_ptr<Waiter>> ws;
    for (size_t i = 0; i < SlotQueue::kMaxWaiters; ++i) {
      ws.push_back(std::make_unique<Waiter>(&log, 'x'));
      REQUIRE(q.add(ws.back().get()));
    }
    Waiter extra(&log, 'y');
    CHECK_FALSE(q.add(&extra));
    CHECK_FALSE(q.contains(&extra));
    CHECK(q.size() == SlotQueue::kMaxWaiters);
    q.remove(ws.front().get());
    CHECK(q.add(&extra));  // room again
    q.slotReleased();
    q.runPending();
    CHECK(log.size() == SlotQueue::kMaxWaiters);
    CHECK(log.back() == 'y');
    CHECK(q.size() == 0);
  }

  TEST_CASE("a closed queue takes no waiter") {
    LoopQueue lq;
    lq.q->close();
    std::string log;
    Waiter a(&log, 'a');
    CHECK_FALSE(lq.q->add(&a));
  }

  TEST_CASE("a release on one worker wakes the waiters of another through its async handle") {
    LoopQueue one, two;
    Waiters ws(*two.q, "ab");
    one.q->slotReleased();  // the release happens on worker one, which has no waiters
    one.q->runPending();
    CHECK(ws.log.empty());
    uv_run(&two.loop, UV_RUN_NOWAIT);  // worker two's loop turn: the async fires
    CHECK(ws.log == "ab");
    CHECK(two.q->size() == 0);
  }
}

TEST_SUITE("backend_slots") {
  TEST_CASE("tryAcquireSlot: at most max; release makes room; 0 is unlimited") {
    Backend b;
    CHECK(b.tryAcquireSlot(2));
    CHECK(b.tryAcquireSlot(2));
    CHECK_FALSE(b.tryAcquireSlot(2));
    CHECK(b.active.load() == 2);
    b.releaseSlot();
    CHECK(b.tryAcquireSlot(2));
    CHECK_FALSE(b.tryAcquireSlot(2));
    for (int i = 0; i < 10; ++i) CHECK(b.tryAcquireSlot(0));
    CHECK(b.active.load() == 12);
  }

  TEST_CASE("two threads hammering acquire/release never hold more than max slots") {
    constexpr uint32_t kMax = 2;
    constexpr int kRounds = 200000;
    Backend b;
    std::atomic<int> holders{0};
    std::atomic<int> maxSeen{0};
    std::atomic<long> acquired{0};
    auto hammer = [&] {
      for (int i = 0; i < kRounds; ++i) {
        // Greedy: each thread takes as many slots as it can (a broken reservation would let
        // the pair hold three or four).
        int mine = 0;
        while (mine < int(kMax) && b.tryAcquireSlot(kMax)) {
          ++mine;
          const int now = holders.fetch_add(1) + 1;
          int seen = maxSeen.load();
          while (now > seen && !maxSeen.compare_exchange_weak(seen, now)) {
          }
        }
        acquired += mine;
        for (; mine > 0; --mine) {
          holders.fetch_sub(1);
          b.releaseSlot();
        }
      }
    };
    std::thread t1(hammer), t2(hammer);
    t1.join();
    t2.join();
    CHECK(maxSeen.load() <= int(kMax));
    CHECK(maxSeen.load() >= 1);
    CHECK(acquired.load() > 0);
    CHECK(b.active.load() == 0);
  }
}
