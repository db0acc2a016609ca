// Backend registry and the smooth weighted round-robin balancer.
#include "proxy/upstream/pool.h"

namespace sluice::upstream {

bool Pool::hasHealthyBackend() const {
  for (const auto& b : backends)
    if (b->resolved && b->healthy.load(std::memory_order_relaxed)) return true;
  return false;
}

BackendPtr BackendRegistry::get(const std::string& pool, const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto key = std::make_pair(pool, address);
  if (auto it = entries_.find(key); it != entries_.end())
    if (BackendPtr b = it->second.lock()) return b;
  auto b = std::make_shared<Backend>();
  b->pool = pool;
  b->address = address;
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
  if (current_.size() != n) current_.assign(n, 0);
  int64_t total = 0;
  int best = -1;
  for (size_t i = 0; i < n; ++i) {
    const Backend* b = pool.backends[i].get();
    if (!b->resolved || !b->healthy.load(std::memory_order_relaxed)) continue;
    bool skipped = false;
    for (size_t k = 0; k < skipCount; ++k)
      if (skip[k] == b) skipped = true;
    if (skipped) continue;
    current_[i] += pool.weights[i];
    total += pool.weights[i];
    if (best < 0 || current_[i] > current_[size_t(best)]) best = int(i);
  }
  if (best >= 0) current_[size_t(best)] -= total;
  return best;
}

}  // namespace sluice::upstream
