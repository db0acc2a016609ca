#include "proxy/router/split.h"

#include "proxy/http/cookie.h"
#include "proxy/observe/ids.h"
#include "proxy/upstream/pool.h"

namespace sluice::router {

void Split::layout() {
  uint64_t total = 0;
  for (const SplitArm& a : arms) total += a.weight;
  uint32_t next = 0;
  for (size_t i = 1; i < arms.size(); ++i) {
    const uint32_t share =
        total == 0 ? 0 : uint32_t((uint64_t(arms[i].weight) * kSplitBuckets + total / 2) / total);
    arms[i].bucketBegin = next;
    next = std::min(kSplitBuckets, next + share);
    arms[i].bucketEnd = next;
  }
  if (!arms.empty()) {
    arms[0].bucketBegin = next;
    arms[0].bucketEnd = arms[0].weight > 0 ? kSplitBuckets : next;
    // A baseline at weight 0 gives its buckets to the last canary that takes traffic.
    if (arms[0].weight == 0)
      for (size_t i = arms.size(); i-- > 1;)
        if (arms[i].weight > 0) {
          arms[i].bucketEnd = kSplitBuckets;
          break;
        }
  }
}

const SplitArm* Split::byPoolName(std::string_view name) const {
  for (const SplitArm& a : arms)
    if (a.pool->name == name) return &a;
  return nullptr;
}

const SplitArm* Split::forBucket(uint32_t bucket) const {
  for (const SplitArm& a : arms)
    if (bucket >= a.bucketBegin && bucket < a.bucketEnd) return &a;
  return nullptr;
}

uint32_t stickyBucket(uint64_t seed, std::string_view key) {
  // splitmix64's finalizer over the key's hash and the cohort: well spread, no allocation.
  uint64_t z = upstream::hash64(key) ^ (seed + 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return uint32_t(z % kSplitBuckets);
}

namespace {

std::string_view stickyKey(const Split& s, const SplitRequest& r) {
  switch (s.sticky) {
    case config::StickyKind::None:
      return {};
    case config::StickyKind::Ip:
      return r.clientIp;
    case config::StickyKind::Header:
      return http::trimOws(r.head->headers.get(s.stickyName));
    case config::StickyKind::Cookie:
      return http::findCookie(r.head->headers, s.stickyName).value_or(std::string_view());
    case config::StickyKind::JwtClaim: {
      const std::string* v = r.attributes ? r.attributes->get("jwt", s.stickyName) : nullptr;
      return v ? std::string_view(*v) : std::string_view();
    }
    case config::StickyKind::Auto:
      return http::findCookie(r.head->headers, kCohortCookie).value_or(std::string_view());
  }
  return {};
}

const SplitArm* overridden(const Split& s, const SplitRequest& r) {
  std::string_view name;
  if (!s.overrideHeader.empty()) name = http::trimOws(r.head->headers.get(s.overrideHeader));
  if (name.empty() && !s.overrideCookie.empty())
    name = http::findCookie(r.head->headers, s.overrideCookie).value_or(std::string_view());
  return name.empty() ? nullptr : s.byPoolName(name);  // a name not in the split is ignored
}

}  // namespace

const SplitArm* Splitter::spread(const Split& s) {
  std::vector<int64_t>& cur = wrr_[&s];
  if (cur.size() != s.arms.size()) cur.assign(s.arms.size(), 0);
  int64_t total = 0;
  int best = -1;
  for (size_t i = 0; i < s.arms.size(); ++i) {
    if (s.arms[i].weight == 0) continue;
    cur[i] += s.arms[i].weight;
    total += s.arms[i].weight;
    if (best < 0 || cur[i] > cur[size_t(best)]) best = int(i);
  }
  if (best < 0) return nullptr;
  cur[size_t(best)] -= total;
  return &s.arms[size_t(best)];
}

const upstream::Pool* Splitter::pick(const Split& s, const SplitRequest& r,
                                     observe::IdGenerator& ids, std::string& newCohort) {
  if (const SplitArm* a = overridden(s, r)) return a->pool;
  std::string_view key = stickyKey(s, r);
  if (key.empty() && s.sticky == config::StickyKind::Auto) {
    ids.requestId(newCohort);  // 128 random bits, hex
    key = newCohort;
  }
  if (!key.empty())
    if (const SplitArm* a = s.forBucket(stickyBucket(s.seed, key))) return a->pool;
  const SplitArm* a = spread(s);
  return a ? a->pool : s.arms.front().pool;
}

}  // namespace sluice::router
