#include "proxy/router/split.h"

#include <algorithm>

#include "proxy/http/cookie.h"
#include "proxy/observe/ids.h"
#include "proxy/upstream/pool.h"

namespace sluice::router {

void layoutBuckets(const uint32_t* weights, size_t n, uint32_t* begin, uint32_t* end) {
  if (n == 0) return;
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) total += weights[i];
  uint32_t next = 0;
  for (size_t i = 1; i < n; ++i) {
    const uint32_t share =
        total == 0 ? 0 : uint32_t((uint64_t(weights[i]) * kSplitBuckets + total / 2) / total);
    begin[i] = next;
    next = std::min(kSplitBuckets, next + share);
    end[i] = next;
  }
  begin[0] = next;
  end[0] = weights[0] > 0 ? kSplitBuckets : next;
  // A baseline at weight 0 gives its buckets to the last canary that takes traffic.
  if (weights[0] == 0)
    for (size_t i = n; i-- > 1;)
      if (weights[i] > 0) {
        end[i] = kSplitBuckets;
        break;
      }
}

void Split::onOutcome(const upstream::Pool& pool, const upstream::AttemptOutcome& o,
                      uint64_t nowMs) const {
  for (size_t i = 0; i < arms.size(); ++i)
    if (arms[i].pool == &pool) return release->onOutcome(i, o, nowMs, rollback);
}

const SplitArm* Split::byPoolName(std::string_view name) const {
  for (const SplitArm& a : arms)
    if (a.pool->name == name) return &a;
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

Splitter::State& Splitter::refresh(const Split& s) {
  State& st = state_[&s];
  const uint64_t v = s.release->weightsVersion();
  if (v == st.version) return st;
  const size_t n = s.arms.size();
  st.version = v;
  st.weights.resize(n);
  st.begin.resize(n);
  st.end.resize(n);
  st.current.assign(n, 0);
  for (size_t i = 0; i < n; ++i) st.weights[i] = s.liveWeight(i);
  layoutBuckets(st.weights.data(), n, st.begin.data(), st.end.data());
  return st;
}

const SplitArm* Splitter::spread(const Split& s, State& st) {
  int64_t total = 0;
  int best = -1;
  for (size_t i = 0; i < s.arms.size(); ++i) {
    if (st.weights[i] == 0) continue;
    st.current[i] += st.weights[i];
    total += st.weights[i];
    if (best < 0 || st.current[i] > st.current[size_t(best)]) best = int(i);
  }
  if (best < 0) return nullptr;
  st.current[size_t(best)] -= total;
  return &s.arms[size_t(best)];
}

const upstream::Pool* Splitter::pick(const Split& s, const SplitRequest& r,
                                     observe::IdGenerator& ids, std::string& newCohort) {
  if (const SplitArm* a = overridden(s, r)) return a->pool;
  State& st = refresh(s);
  std::string_view key = stickyKey(s, r);
  if (key.empty() && s.sticky == config::StickyKind::Auto) {
    ids.requestId(newCohort);  // 128 random bits, hex
    key = newCohort;
  }
  if (!key.empty()) {
    const uint32_t bucket = stickyBucket(s.seed, key);
    for (size_t i = 0; i < s.arms.size(); ++i)
      if (bucket >= st.begin[i] && bucket < st.end[i]) return s.arms[i].pool;
  }
  const SplitArm* a = spread(s, st);
  return a ? a->pool : s.arms.front().pool;
}

}  // namespace sluice::router
