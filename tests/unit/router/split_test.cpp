// router::Split and Splitter: the bucket layout (a canary step moves only baseline users), the
// sticky hash's spread, the exact round robin, overrides, and the "auto" cohort.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proxy/http/message.h"
#include "proxy/observe/ids.h"
#include "proxy/router/split.h"
#include "proxy/upstream/pool.h"

using namespace sluice;
using router::Split;

namespace {

struct Pools {
  upstream::Pool stable, canary, third;
  Pools() {
    stable.name = "stable";
    canary.name = "canary";
    third.name = "third";
  }
  std::unique_ptr<Split> split(uint32_t ws, uint32_t wc, int w3 = -1) {
    auto s = std::make_unique<Split>();
    s->arms.push_back({&stable, ws});
    s->arms.push_back({&canary, wc});
    if (w3 >= 0) s->arms.push_back({&third, uint32_t(w3)});
    config::RouteConfig rc;
    rc.name = "route";
    std::vector<std::string> names;
    for (const auto& a : s->arms) {
      rc.split.push_back({a.pool->name, a.weight, {}});
      names.push_back(a.pool->name);
    }
    s->release = std::make_shared<router::Release>("route", names);
    s->release->configure(rc, true, 0);
    s->seed = upstream::hash64("route");
    return s;
  }
};

// The pool owning `bucket` under the split's file weights (router::layoutBuckets).
const upstream::Pool* owner(const Split& s, uint32_t bucket) {
  const size_t n = s.arms.size();
  std::vector<uint32_t> w(n), b(n), e(n);
  for (size_t i = 0; i < n; ++i) w[i] = s.arms[i].weight;
  router::layoutBuckets(w.data(), n, b.data(), e.data());
  for (size_t i = 0; i < n; ++i)
    if (bucket >= b[i] && bucket < e[i]) return s.arms[i].pool;
  return nullptr;
}

}  // namespace

TEST_CASE("split layout: every bucket has one owner; shares follow the weights") {
  Pools p;
  struct Case {
    uint32_t stable, canary;
    uint32_t canaryBuckets;
  };
  for (Case c : {Case{95, 5, 500}, Case{75, 25, 2500}, Case{1, 1, 5000}, Case{100, 0, 0},
                 Case{0, 100, 10000}, Case{2, 1, 3333}}) {
    CAPTURE(c.stable);
    CAPTURE(c.canary);
    auto sPtr = p.split(c.stable, c.canary);
    Split& s = *sPtr;
    uint32_t canary = 0;
    for (uint32_t b = 0; b < router::kSplitBuckets; ++b) {
      const upstream::Pool* o = owner(s, b);
      REQUIRE(o != nullptr);
      if (o == &p.canary) ++canary;
    }
    CHECK(canary == c.canaryBuckets);
  }
}

TEST_CASE("split layout: raising the canary moves only baseline buckets, never back") {
  Pools p;
  const uint32_t steps[] = {0, 1, 5, 25, 50, 75, 100};
  for (size_t i = 0; i + 1 < std::size(steps); ++i) {
    auto beforePtr = p.split(100 - steps[i], steps[i]);
    Split& before = *beforePtr;
    auto afterPtr = p.split(100 - steps[i + 1], steps[i + 1]);
    Split& after = *afterPtr;
    for (uint32_t b = 0; b < router::kSplitBuckets; ++b)
      if (owner(before, b) == &p.canary) CHECK(owner(after, b) == &p.canary);
  }
  // Three pools: the baseline keeps the top of the range, canaries are laid from 0 upwards.
  auto threePtr = p.split(50, 25, 25);
  Split& three = *threePtr;
  CHECK(owner(three, 0) == &p.canary);
  CHECK(owner(three, 2500) == &p.third);
  CHECK(owner(three, 9999) == &p.stable);
}

TEST_CASE("sticky buckets spread evenly and depend on the cohort") {
  std::map<uint32_t, int> tenths;
  int differ = 0;
  const uint64_t a = upstream::hash64("route-a"), b = upstream::hash64("route-b");
  for (int i = 0; i < 20000; ++i) {
    const std::string key = "user-" + std::to_string(i);
    const uint32_t bucket = router::stickyBucket(a, key);
    CHECK(bucket < router::kSplitBuckets);
    ++tenths[bucket / 1000];
    if (router::stickyBucket(b, key) != bucket) ++differ;
    CHECK(router::stickyBucket(a, key) == bucket);  // stable
  }
  for (const auto& [tenth, n] : tenths) CHECK(std::abs(n - 2000) < 200);
  CHECK(differ > 19000);
}

TEST_CASE("splitter: exact round robin, overrides, sticky keys and the auto cohort") {
  Pools p;
  auto sPtr = p.split(90, 10);
  Split& s = *sPtr;
  s.overrideHeader = "X-Canary";
  router::Splitter splitter;
  observe::IdGenerator ids;
  http::RequestHead head;
  router::SplitRequest r;
  r.head = &head;
  r.clientIp = "10.0.0.1";
  std::string cohort;
  std::map<const upstream::Pool*, int> got;
  for (int i = 0; i < 100; ++i) ++got[splitter.pick(s, r, ids, cohort)];
  CHECK(got[&p.stable] == 90);
  CHECK(got[&p.canary] == 10);
  CHECK(cohort.empty());

  head.headers.add("X-Canary", "canary");
  for (int i = 0; i < 10; ++i) CHECK(splitter.pick(s, r, ids, cohort) == &p.canary);
  head.clear();
  head.headers.add("X-Canary", "nope");  // not a pool of the split: ignored
  got.clear();
  for (int i = 0; i < 100; ++i) ++got[splitter.pick(s, r, ids, cohort)];
  CHECK(got[&p.canary] == 10);

  s.sticky = config::StickyKind::Ip;
  const upstream::Pool* first = splitter.pick(s, r, ids, cohort);
  for (int i = 0; i < 20; ++i) CHECK(splitter.pick(s, r, ids, cohort) == first);

  s.sticky = config::StickyKind::Auto;
  head.clear();
  const upstream::Pool* placed = splitter.pick(s, r, ids, cohort);
  REQUIRE(cohort.size() == 32);
  head.headers.add("Cookie", std::string(router::kCohortCookie) + "=" + cohort);
  std::string none;
  for (int i = 0; i < 20; ++i) CHECK(splitter.pick(s, r, ids, none) == placed);
  CHECK(none.empty());  // a request with the cookie gets no new one
}

TEST_CASE("splitter: live weights take effect on the next pick and keep the bucket layout") {
  Pools p;
  auto sp = p.split(100, 0);
  Split& s = *sp;
  router::Splitter splitter;
  observe::IdGenerator ids;
  http::RequestHead head;
  router::SplitRequest r;
  r.head = &head;
  std::string cohort;
  for (int i = 0; i < 10; ++i) CHECK(splitter.pick(s, r, ids, cohort) == &p.stable);
  s.release->setWeights({0, 100}, 0);  // the blue-green flip
  for (int i = 0; i < 10; ++i) CHECK(splitter.pick(s, r, ids, cohort) == &p.canary);
  s.release->setWeights({75, 25}, 0);
  std::map<const upstream::Pool*, int> got;
  for (int i = 0; i < 100; ++i) ++got[splitter.pick(s, r, ids, cohort)];
  CHECK(got[&p.stable] == 75);
  CHECK(got[&p.canary] == 25);
  // Sticky keys follow the live layout: a 5 -> 25 step moves only baseline keys.
  s.sticky = config::StickyKind::Ip;
  s.release->setWeights({95, 5}, 0);
  std::map<std::string, const upstream::Pool*> before;
  for (int i = 0; i < 500; ++i) {
    const std::string ip = "10.0.0." + std::to_string(i);
    r.clientIp = ip;
    before[ip] = splitter.pick(s, r, ids, cohort);
  }
  s.release->setWeights({75, 25}, 0);
  for (const auto& [ip, pool] : before) {
    r.clientIp = ip;
    if (pool == &p.canary) CHECK(splitter.pick(s, r, ids, cohort) == &p.canary);
  }
}
