// Unit tests for proxy/net/timer_heap: order, re-scheduling, cancelling from callbacks, and the
// heap invariant under random operations (on a real uv loop).
#include "proxy/net/timer_heap.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

using namespace sluice::net;

namespace {

struct Rec : Timer {
  Rec(std::vector<int>* log, int id) : Timer(&Rec::fire), log(log), id(id) {}
  static void fire(Timer* t) {
    auto* r = static_cast<Rec*>(t);
    r->log->push_back(r->id);
    if (r->then) r->then(r);
  }
  std::vector<int>* log;
  int id;
  void (*then)(Rec*) = nullptr;
  TimerHeap* heap = nullptr;
  Rec* other = nullptr;
};

struct Loop {
  Loop() {
    uv_loop_init(&loop);
    heap = std::make_unique<TimerHeap>(&loop);
  }
  ~Loop() {
    heap->close();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }
  uv_loop_t loop{};
  std::unique_ptr<TimerHeap> heap;
};

}  // namespace

TEST_CASE("timer heap fires in deadline order and only once") {
  Loop l;
  std::vector<int> log;
  Rec a(&log, 1), b(&log, 2), c(&log, 3);
  l.heap->schedule(&c, 30);
  l.heap->schedule(&a, 10);
  l.heap->schedule(&b, 20);
  CHECK(l.heap->size() == 3);
  while (l.heap->size() > 0) uv_run(&l.loop, UV_RUN_ONCE);
  CHECK(log == std::vector<int>{1, 2, 3});
  CHECK_FALSE(a.scheduled());
}

TEST_CASE("timer heap: re-scheduling moves a timer, cancel removes it") {
  Loop l;
  std::vector<int> log;
  Rec a(&log, 1), b(&log, 2), c(&log, 3);
  l.heap->schedule(&a, 5);
  l.heap->schedule(&b, 10);
  l.heap->schedule(&c, 15);
  l.heap->schedule(&a, 40);  // later
  l.heap->schedule(&c, 1);   // earlier
  l.heap->cancel(&b);
  l.heap->cancel(&b);  // twice is harmless
  while (l.heap->size() > 0) uv_run(&l.loop, UV_RUN_ONCE);
  CHECK(log == std::vector<int>{3, 1});
}

TEST_CASE("timer heap: callbacks may cancel others and re-arm themselves") {
  Loop l;
  std::vector<int> log;
  Rec a(&log, 1), b(&log, 2);
  a.heap = l.heap.get();
  a.other = &b;
  a.then = [](Rec* r) {
    r->heap->cancel(r->other);                        // due at the same time: must not fire
    if (r->log->size() < 3) r->heap->schedule(r, 0);  // next turn, not this pass
  };
  l.heap->schedule(&a, 2);
  l.heap->schedule(&b, 2);
  while (l.heap->size() > 0) uv_run(&l.loop, UV_RUN_ONCE);
  CHECK(log == std::vector<int>{1, 1, 1});
}

TEST_CASE("timer heap keeps its invariant under random operations") {
  Loop l;
  std::vector<int> log;
  std::vector<std::unique_ptr<Rec>> timers;
  timers.reserve(300);
  for (int i = 0; i < 300; ++i) timers.push_back(std::make_unique<Rec>(&log, i));
  std::mt19937 rng(42);
  for (int step = 0; step < 5000; ++step) {
    Rec* t = timers[rng() % timers.size()].get();
    if (rng() % 4 == 0)
      l.heap->cancel(t);
    else
      l.heap->schedule(t, 1 + rng() % 25);
  }
  std::vector<int> expected;
  for (auto& t : timers)
    if (t->scheduled()) expected.push_back(t->id);
  CHECK(l.heap->size() == expected.size());
  while (l.heap->size() > 0) uv_run(&l.loop, UV_RUN_ONCE);
  // Every scheduled timer fired exactly once, in non-decreasing deadline order.
  REQUIRE(log.size() == expected.size());
  for (size_t i = 1; i < log.size(); ++i) CHECK(timers[log[i - 1]]->due <= timers[log[i]]->due);
  std::sort(log.begin(), log.end());
  CHECK(log == expected);
}
