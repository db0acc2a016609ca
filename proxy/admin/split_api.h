// The live side of traffic splits on the admin listener:
//   PUT /admin/routes/{route}/split   {"blue": 0, "green": 100}
// sets live weights without a reload (pools left out keep theirs), effective for the next
// request on every worker; a reload re-applies the file's weights. Raising a pool from 0 whose
// backends are all unusable is refused (409 pool_unhealthy) unless `?force=1`. Also renders
// the live weights for /admin/status.
#pragma once

#include <string>
#include <string_view>

#include "proxy/snapshot.h"

namespace sluice::admin {

// Applies a PUT body to the route's split in `snap`. Returns the HTTP status; `out` is the JSON
// answer (the route's live weights, or {"error": ...}).
int putSplitWeights(const Snapshot& snap, std::string_view route, std::string_view body,
                    bool force, std::string& out);

// {"pool":weight,...} of a split's live weights.
void appendLiveWeightsJson(const router::Split& split, std::string& out);

}  // namespace sluice::admin
