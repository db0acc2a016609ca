// The middleware types, and the FilterFactory of every [middleware.NAME] of a validated Config.
//
// Adding a type: one file pair in middleware/ with its settings (a config::MiddlewareSettings
// subclass), the parser of its [middleware.NAME] table and its factory builder, plus ONE line
// in the list in registry.cpp. The config loader gets the parsers through parsers(); the
// factories are built from types() while a snapshot is built (startup and every reload, main
// thread). Local rate-limit stores come from `stores`, keyed by middleware name, so their
// counters survive reloads.
#pragma once

#include <map>
#include <span>
#include <string>
#include <vector>

#include "config/middleware_types.h"
#include "config/schema.h"
#include "middleware/filter.h"
#include "middleware/local_store.h"

namespace sluice::middleware {

using FactoryMap = std::map<std::string, FilterFactoryPtr, std::less<>>;

// What a factory builder may use besides its own settings.
struct FactoryContext {
  const config::Config& config;  // e.g. [redis]
  LocalStoreRegistry& stores;
};

// Builds the factory of `mc` (whose settings its type's parser made); nullptr with `err`
// when it cannot (e.g. a key file changed since it was checked).
using BuildFactoryFn = FilterFactoryPtr (*)(const config::MiddlewareConfig& mc,
                                            const FactoryContext& ctx, std::string& err);

struct MiddlewareType {
  config::MiddlewareParser parser;  // type name + [middleware.NAME] table parser
  BuildFactoryFn build;
};

// Every middleware type, in the order error messages list them.
std::span<const MiddlewareType> types();

// The parser column of types(): what config::loadConfigFile/loadConfigString take.
config::MiddlewareParsers parsers();

// mc's settings as the type T its parser made, or nullptr.
template <class T>
const T* settingsAs(const config::MiddlewareConfig& mc) {
  return dynamic_cast<const T*>(mc.settings.get());
}

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
