#include "middleware/local_store.h"

#include <time.h>

#include <algorithm>

namespace sluice::middleware {

LocalStore::LocalStore(size_t maxKeys)
    : maxPerShard_(std::max<size_t>(8, (maxKeys + kShards - 1) / kShards)) {}

int64_t LocalStore::nowUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

void LocalStore::makeRoom(Shard& s, int64_t nowUs) {
  // Keys whose bucket is full again carry no information: dropping them is lossless.
  for (auto it = s.tats.begin(); it != s.tats.end();) {
    if (it->second <= nowUs) {
      it = s.tats.erase(it);
    } else {
      ++it;
    }
  }
  if (s.tats.size() < maxPerShard_) return;
  size_t target = maxPerShard_ - maxPerShard_ / 8;
  for (auto it = s.tats.begin(); it != s.tats.end() && s.tats.size() > target;)
    it = s.tats.erase(it);
}

GcraDecision LocalStore::decide(std::string_view key, const GcraParams& p, int64_t nowUs) {
  Shard& s = shards_[Hash{}(key) % kShards];
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.tats.find(key);
  if (it != s.tats.end()) return gcraDecide(it->second, nowUs, p);
  int64_t tat = 0;
  GcraDecision d = gcraDecide(tat, nowUs, p);
  if (d.allowed) {
    if (s.tats.size() >= maxPerShard_) makeRoom(s, nowUs);
    s.tats.emplace(std::string(key), tat);
  }
  return d;
}

GcraDecision LocalStore::decide(std::string_view key, const GcraParams& p) {
  return decide(key, p, nowUs());
}

size_t LocalStore::size() const {
  size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    n += s.tats.size();
  }
  return n;
}

std::shared_ptr<LocalStore> LocalStoreRegistry::get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = stores_[name];
  if (auto sp = slot.lock()) return sp;
  auto sp = std::make_shared<LocalStore>();
  slot = sp;
  return sp;
}

void LocalStoreRegistry::prune() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = stores_.begin(); it != stores_.end();) {
    if (it->second.expired()) {
      it = stores_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t LocalStoreRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stores_.size();
}

}  // namespace sluice::middleware
