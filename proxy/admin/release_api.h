// The live side of traffic splits and releases on the admin listener:
//   PUT  /admin/routes/{route}/split     {"blue": 0, "green": 100}
//   POST /admin/routes/{route}/promote | rollback | pause | resume
// PUT sets live weights without a reload (pools left out keep theirs), effective for the next
// request on every worker; raising a pool from 0 whose backends are all unusable is refused
// (409 pool_unhealthy) unless `?force=1` (promote likewise). The others drive the route's
// release controller (proxy/router/release.h). Also renders the live weights and release state
// for /admin/status.
#pragma once

#include <string>
#include <string_view>

#include "proxy/snapshot.h"

namespace sluice::admin {

// One request on /admin/routes/{route}/{action}. Returns the HTTP status; `out` is the JSON
// answer (the route's live weights and release state, or {"error": ...}).
int handleRouteAction(const Snapshot& snap, std::string_view method, std::string_view route,
                      std::string_view action, std::string_view body, bool force, std::string& out);

// {"pool":weight,...} of a split's live weights.
void appendLiveWeightsJson(const router::Split& split, std::string& out);

}  // namespace sluice::admin
