// drain_timeout: when a pool of a split has taken no new traffic for a while, the connections
// still open to it (WebSocket tunnels, keep-alive upstream connections) are closed. This is
// the decision, made on the main thread from what the current snapshot's routes send where;
// the workers do the closing (Worker::drainPool).
//
// A pool is "quiet" while no route of the current snapshot sends it new traffic: no split arm
// with a live weight above 0 and no plain `pool =` route. It is drained once per quiet period,
// when it has been quiet for the drain_timeout of a route that has it at weight 0 (the first
// such timeout to pass, if several routes do). Any route sending it traffic again ends the
// quiet period: nothing is drained, and the next drop to 0 starts over. The state is kept by
// pool name, so it survives reloads and DNS rebuilds (the weights a reload re-applies count
// like any other change).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::router {

class RouteTable;

// One route's use of a pool in the current snapshot.
struct PoolUse {
  std::string_view route;
  std::string_view pool;
  bool sending = false;         // new traffic: a split arm at live weight > 0, or `pool =`
  uint64_t drainTimeoutMs = 0;  // the route's drain_timeout (split routes); 0 = off
};

// Every route's pool uses (views into `routes`). Empty when no route has a drain_timeout:
// then nothing can be drained, and the tracker forgets what it knew.
std::vector<PoolUse> poolUses(const RouteTable& routes);

struct DrainDue {
  std::string route;  // the route whose drain_timeout passed
  std::string pool;
};

class DrainTracker {
 public:
  // One look at the routes at `nowMs` (monotonic): the pools to drain now.
  std::vector<DrainDue> tick(const std::vector<PoolUse>& uses, uint64_t nowMs);
  // Tests: the pool is quiet (and since when), or 0 when it is not tracked.
  uint64_t quietSince(std::string_view pool) const;

 private:
  struct Quiet {
    uint64_t sinceMs = 0;
    bool drained = false;  // already drained in this quiet period
  };
  std::map<std::string, Quiet, std::less<>> quiet_;
};

}  // namespace sluice::router
