#include "proxy/router/drain.h"

#include <algorithm>

#include "proxy/router/route_table.h"
#include "proxy/upstream/pool.h"

namespace sluice::router {

std::vector<PoolUse> poolUses(const RouteTable& routes) {
  std::vector<PoolUse> uses;
  const auto& all = routes.routes();
  if (std::none_of(all.begin(), all.end(),
                   [](const Route& r) { return r.split && r.split->drainTimeoutMs > 0; }))
    return uses;
  for (const Route& r : all) {
    if (!r.split) {
      if (r.pool) uses.push_back({r.name, r.pool->name, true, 0});
      continue;
    }
    const Split& s = *r.split;
    for (size_t i = 0; i < s.arms.size(); ++i)
      uses.push_back({r.name, s.arms[i].pool->name, s.liveWeight(i) > 0, s.drainTimeoutMs});
  }
  return uses;
}

namespace {
bool sending(const std::vector<PoolUse>& uses, std::string_view pool) {
  return std::any_of(uses.begin(), uses.end(),
                     [&](const PoolUse& u) { return u.sending && u.pool == pool; });
}
bool used(const std::vector<PoolUse>& uses, std::string_view pool) {
  return std::any_of(uses.begin(), uses.end(), [&](const PoolUse& u) { return u.pool == pool; });
}
}  // namespace

std::vector<DrainDue> DrainTracker::tick(const std::vector<PoolUse>& uses, uint64_t nowMs) {
  // A pool that takes traffic again, or that no route uses any more, starts over.
  std::erase_if(quiet_,
                [&](const auto& kv) { return sending(uses, kv.first) || !used(uses, kv.first); });
  std::vector<DrainDue> due;
  for (const PoolUse& u : uses) {
    if (u.sending || u.drainTimeoutMs == 0 || sending(uses, u.pool)) continue;
    auto it = quiet_.find(u.pool);
    if (it == quiet_.end()) it = quiet_.emplace(std::string(u.pool), Quiet{nowMs, false}).first;
    Quiet& q = it->second;
    if (q.drained || nowMs - q.sinceMs < u.drainTimeoutMs) continue;
    q.drained = true;
    due.push_back({std::string(u.route), std::string(u.pool)});
  }
  return due;
}

uint64_t DrainTracker::quietSince(std::string_view pool) const {
  auto it = quiet_.find(pool);
  return it == quiet_.end() ? 0 : it->second.sinceMs;
}

}  // namespace sluice::router
