// Backend registry, hash ring, smooth weighted round-robin and outlier reporting.
#include "proxy/upstream/pool.h"

#include <uv.h>

#include <algorithm>

namespace sluice::upstream {

uint64_t monotonicMs() {
  return uv_hrtime() / 1000000;
}

uint64_t hash64(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

const char* Backend::stateName(uint64_t nowMs) const {
  if (!healthy.load(std::memory_order_relaxed)) return "down";
  if (ejected(nowMs)) return "ejected";
  if (draining.load(std::memory_order_relaxed)) return "draining";
  return "up";
}

void HashRing::build(const std::vector<BackendPtr>& backends,
                     const std::vector<uint32_t>& weights) {
  // 160 virtual nodes per unit of weight (capped) keep the spread within a few percent; each
  // point depends only on the backend's name, so adding or removing one backend moves only the
  // keys that land on its points (about 1/N of them).
  points.clear();
  for (size_t i = 0; i < backends.size(); ++i) {
    uint32_t vnodes = std::min<uint32_t>(160 * std::max<uint32_t>(weights[i], 1), 8000);
    std::string key = backends[i]->name;
    key.push_back('#');
    size_t base = key.size();
    for (uint32_t v = 0; v < vnodes; ++v) {
      key.resize(base);
      key.append(std::to_string(v));
      points.emplace_back(hash64(key), uint32_t(i));
    }
  }
  std::sort(points.begin(), points.end());
}

bool Pool::hasHealthyBackend() const {
  uint64_t now = monotonicMs();
  for (const auto& b : backends)
    if (b->resolved && b->usable(now)) return true;
  return false;
}

BackendPtr BackendRegistry::get(const std::string& pool, const std::string& address,
                                const std::string& ip) {
  std::lock_guard<std::mutex> lock(mu_);
  auto key = std::make_tuple(pool, address, ip);
  if (auto it = entries_.find(key); it != entries_.end())
    if (BackendPtr b = it->second.lock()) return b;
  auto b = std::make_shared<Backend>();
  b->pool = pool;
  b->address = address;
  b->ip = ip;
  entries_[key] = b;
  return b;
}

void BackendRegistry::prune() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.expired())
      it = entries_.erase(it);
    else
      ++it;
  }
}

int SmoothWrr::pick(const Pool& pool, const Backend* const* skip, size_t skipCount) {
  const size_t n = pool.backends.size();
  std::vector<uint8_t> eligible(n, 0);
  uint64_t now = monotonicMs();
  for (size_t i = 0; i < n; ++i) {
    const Backend* b = pool.backends[i].get();
    if (!b->resolved || !b->usable(now)) continue;
    bool skipped = false;
    for (size_t k = 0; k < skipCount; ++k)
      if (skip[k] == b) skipped = true;
    eligible[i] = !skipped;
  }
  return pickAmong(pool, eligible);
}

int SmoothWrr::pickAmong(const Pool& pool, const std::vector<uint8_t>& eligible) {
  const size_t n = pool.backends.size();
  if (current_.size() != n) current_.assign(n, 0);
  int64_t total = 0;
  int best = -1;
  for (size_t i = 0; i < n; ++i) {
    if (!eligible[i]) continue;
    current_[i] += pool.weights[i];
    total += pool.weights[i];
    if (best < 0 || current_[i] > current_[size_t(best)]) best = int(i);
  }
  if (best >= 0) current_[size_t(best)] -= total;
  return best;
}

bool reportFailure(const Pool& pool, Backend& b, uint64_t nowMs) {
  const config::OutlierConfig& o = pool.settings.outlier;
  if (!o.enabled) return false;
  uint32_t n = b.consecutiveFailures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n < o.consecutiveFailures) return false;
  uint64_t until = b.ejectedUntilMs.load(std::memory_order_relaxed);
  if (until > nowMs) return false;  // already ejected
  // Never eject the last backend that takes traffic: better its errors than no answer at all.
  bool other = false;
  for (const auto& x : pool.backends)
    if (x.get() != &b && x->usable(nowMs)) other = true;
  if (!other) return false;
  uint32_t k = std::min<uint32_t>(b.ejections.load(std::memory_order_relaxed) + 1, 10);
  uint64_t newUntil = nowMs + uint64_t(o.ejectionTime.count()) * k;
  if (!b.ejectedUntilMs.compare_exchange_strong(until, newUntil, std::memory_order_relaxed))
    return false;  // another worker ejected it first
  b.ejections.store(k, std::memory_order_relaxed);
  b.consecutiveFailures.store(0, std::memory_order_relaxed);
  return true;
}

void reportSuccess(const Pool& pool, Backend& b, uint64_t nowMs) {
  if (b.consecutiveFailures.load(std::memory_order_relaxed) != 0)
    b.consecutiveFailures.store(0, std::memory_order_relaxed);
  // A backend that has worked for a whole ejection_time since its last ejection ended starts
  // over with the base ejection time.
  if (b.ejections.load(std::memory_order_relaxed) != 0) {
    uint64_t until = b.ejectedUntilMs.load(std::memory_order_relaxed);
    if (nowMs > until + uint64_t(pool.settings.outlier.ejectionTime.count()))
      b.ejections.store(0, std::memory_order_relaxed);
  }
}

namespace {
std::atomic<void (*)()> gResolveHook{nullptr};
}

void setResolveHook(void (*hook)()) {
  gResolveHook.store(hook);
}

void requestResolve() {
  if (auto h = gResolveHook.load()) h();
}

}  // namespace sluice::upstream
