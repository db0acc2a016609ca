// Builds the FilterFactory of every [middleware.NAME] of a validated Config. Called while a
// snapshot is built (startup and every reload, main thread). Local rate-limit stores come
// from `stores`, keyed by middleware name, so their counters survive reloads.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "config/schema.h"
#include "middleware/filter.h"
#include "middleware/local_store.h"

namespace sluice::middleware {

using FactoryMap = std::map<std::string, FilterFactoryPtr, std::less<>>;

struct FactoryBuild {
  FactoryMap factories;             // by middleware name
  std::vector<std::string> errors;  // "middleware.NAME: ..." (e.g. key file changed since -t)
};

FactoryBuild buildFilterFactories(const config::Config& cfg, LocalStoreRegistry& stores);

// The factories of `route.middleware`, in order (names were validated by the loader; a name
// without a factory is skipped).
std::vector<FilterFactoryPtr> routeFilters(const config::RouteConfig& route,
                                           const FactoryMap& factories);

}  // namespace sluice::middleware
