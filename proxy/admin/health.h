// Health answers, shared by the admin listener and every proxy listener (where /health* is
// answered when no route claims the path).
#pragma once

#include <string>
#include <string_view>

#include "proxy/snapshot.h"

namespace sluice::admin {

// For /health/live, /health/ready and /health: sets status and a JSON body, returns true.
// Any other path: false.
bool healthResponse(std::string_view path, const Snapshot& snap, int& status, std::string& body);

// {"pools":{"name":{"backends":[{"address":..,"up":..,"active":..}]}}} fragment builder.
void appendPoolsJson(const Snapshot& snap, std::string& out);

}  // namespace sluice::admin
