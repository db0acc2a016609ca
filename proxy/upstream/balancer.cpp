// Balancer implementations.
#include "proxy/upstream/balancer.h"

#include <algorithm>

#include "proxy/http/cookie.h"

namespace sluice::upstream {

PickResult Balancer::pick(const Pool& pool, const PickRequest& r) {
  PickResult res;
  const size_t n = pool.backends.size();
  eligible_.assign(n, 0);
  const uint32_t maxConn = pool.settings.maxConnections;
  bool any = false;
  for (size_t i = 0; i < n; ++i) {
    const Backend* b = pool.backends[i].get();
    if (!b->resolved || !b->usable(r.nowMs)) continue;
    bool skipped = false;
    for (size_t k = 0; k < r.skipCount; ++k)
      if (r.skip[k] == b) skipped = true;
    if (skipped) continue;
    if (maxConn && b->active.load(std::memory_order_relaxed) >= int64_t(maxConn)) {
      res.saturated = true;
      continue;
    }
    eligible_[i] = 1;
    any = true;
  }
  if (!any) return res;
  res.saturated = false;
  res.index = choose(pool, eligible_, r.hash);
  return res;
}

namespace {

class RoundRobin final : public Balancer {
 protected:
  int choose(const Pool& pool, const std::vector<uint8_t>& eligible, uint64_t) override {
    return wrr_.pickAmong(pool, eligible);
  }

 private:
  SmoothWrr wrr_;
};

// Fewest active requests relative to weight (a/w compared as a_i*w_j < a_j*w_i); ties are
// broken by smooth WRR among the tied backends, so idle backends share fairly by weight.
class LeastConn final : public Balancer {
 protected:
  int choose(const Pool& pool, const std::vector<uint8_t>& eligible, uint64_t) override {
    const size_t n = pool.backends.size();
    int best = -1;
    int64_t bestActive = 0;
    uint32_t bestWeight = 1;
    tied_.assign(n, 0);
    for (size_t i = 0; i < n; ++i) {
      if (!eligible[i]) continue;
      int64_t a = std::max<int64_t>(pool.backends[i]->active.load(std::memory_order_relaxed), 0);
      uint32_t w = pool.weights[i];
      if (best < 0 || a * int64_t(bestWeight) < bestActive * int64_t(w)) {
        std::fill(tied_.begin(), tied_.end(), 0);
        best = int(i);
        bestActive = a;
        bestWeight = w;
        tied_[i] = 1;
      } else if (a * int64_t(bestWeight) == bestActive * int64_t(w)) {
        tied_[i] = 1;
      }
    }
    return wrr_.pickAmong(pool, tied_);
  }

 private:
  SmoothWrr wrr_;
  std::vector<uint8_t> tied_;
};

// Power of two random choices: two distinct candidates drawn by weight, the one with fewer
// active requests per weight wins (the first drawn on a tie).
class P2c final : public Balancer {
 protected:
  int choose(const Pool& pool, const std::vector<uint8_t>& eligible, uint64_t) override {
    const size_t n = pool.backends.size();
    uint64_t total = 0;
    size_t count = 0;
    for (size_t i = 0; i < n; ++i)
      if (eligible[i]) {
        total += pool.weights[i];
        ++count;
      }
    if (total == 0) return -1;  // pick() calls with at least one eligible backend (weights >= 1)
    int a = draw(pool, eligible, total, -1);
    if (count == 1 || total == pool.weights[size_t(a)]) return a;
    int b = draw(pool, eligible, total - pool.weights[size_t(a)], a);
    int64_t aa =
        std::max<int64_t>(pool.backends[size_t(a)]->active.load(std::memory_order_relaxed), 0);
    int64_t ab =
        std::max<int64_t>(pool.backends[size_t(b)]->active.load(std::memory_order_relaxed), 0);
    // ab/wb < aa/wa
    if (ab * int64_t(pool.weights[size_t(a)]) < aa * int64_t(pool.weights[size_t(b)])) return b;
    return a;
  }

 private:
  uint64_t next() {
    // xorshift64*
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 2685821657736338717ull;
  }
  int draw(const Pool& pool, const std::vector<uint8_t>& eligible, uint64_t total, int exclude) {
    uint64_t r = next() % total;
    int last = -1;
    for (size_t i = 0; i < pool.backends.size(); ++i) {
      if (!eligible[i] || int(i) == exclude) continue;
      last = int(i);
      if (r < pool.weights[i]) return int(i);
      r -= pool.weights[i];
    }
    return last;
  }
  uint64_t state_ = (uint64_t(reinterpret_cast<uintptr_t>(this)) ^ monotonicMs()) | 1;
};

// Consistent hashing: the first eligible backend clockwise from the key's point on the ring.
// A backend that is not eligible is passed over, so its keys spread over the others' points.
class Hash final : public Balancer {
 protected:
  int choose(const Pool& pool, const std::vector<uint8_t>& eligible, uint64_t hash) override {
    const auto& pts = pool.ring.points;
    if (pts.empty()) return -1;
    auto it = std::lower_bound(pts.begin(), pts.end(), std::make_pair(hash, uint32_t(0)));
    size_t start = size_t(it - pts.begin());
    for (size_t k = 0; k < pts.size(); ++k) {
      const auto& p = pts[(start + k) % pts.size()];
      if (p.second < eligible.size() && eligible[p.second]) return int(p.second);
    }
    return -1;
  }
};

}  // namespace

std::unique_ptr<Balancer> makeBalancer(config::Balance kind) {
  switch (kind) {
    case config::Balance::LeastConn:
      return std::make_unique<LeastConn>();
    case config::Balance::P2c:
      return std::make_unique<P2c>();
    case config::Balance::Hash:
      return std::make_unique<Hash>();
    case config::Balance::RoundRobin:
    default:
      return std::make_unique<RoundRobin>();
  }
}

Balancer& BalancerSet::get(const Pool& pool) {
  Entry& e = map_[&pool];
  if (!e.b || e.uid != pool.uid) {
    e.uid = pool.uid;
    e.b = makeBalancer(pool.settings.balance);
  }
  return *e.b;
}

uint64_t requestHash(const config::HashKey& key, const http::HeaderMap& headers,
                     std::string_view clientIp) {
  std::string_view v;
  switch (key.kind) {
    case config::HashKey::Kind::Header:
      v = headers.get(key.name);
      break;
    case config::HashKey::Kind::Cookie:
      v = http::findCookie(headers, key.name).value_or(std::string_view());
      break;
    case config::HashKey::Kind::Ip:
      break;
  }
  if (v.empty()) v = clientIp;
  return hash64(v);
}

}  // namespace sluice::upstream
