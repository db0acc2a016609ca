// One function per top-level section of the config file, called by the loader (loader.cpp)
// in dependency order: [server], [admin], [log], [[listener]], [pool.*], [redis],
// [middleware.*] (rate limits read [redis]), then [[route]] (routes read the declared pools
// and middleware), and [tracing]. Each fills ctx.config() and reports through ctx.
#pragma once

#include <toml++/toml.h>

#include "config/load_context.h"

namespace sluice::config {

// server_section.cpp
void loadServer(LoadContext& ctx, const toml::node& n);
void loadAdmin(LoadContext& ctx, const toml::node& n);
void loadLog(LoadContext& ctx, const toml::node& n);
void loadRedis(LoadContext& ctx, const toml::node& n);

// listener_section.cpp
void loadListeners(LoadContext& ctx, const toml::node& n);

// pool_section.cpp
void loadPools(LoadContext& ctx, const toml::node& n);

// middleware_section.cpp
void loadMiddleware(LoadContext& ctx, const toml::node& n);

// route_section.cpp
void loadRoutes(LoadContext& ctx, const toml::node& n);
// route_targets.cpp: a route's `return` and `static` tables (`routeWhat` names the route in
// messages; `regexRoute`: a path_regex route, where `alias` is refused).
void loadReturn(LoadContext& ctx, const toml::node& n, const std::string& routeWhat,
                RouteConfig& rc);
void loadStatic(LoadContext& ctx, const toml::node& n, const std::string& routeWhat,
                bool regexRoute, RouteConfig& rc);

// tracing_section.cpp
void loadTracing(LoadContext& ctx, const toml::node& n);

}  // namespace sluice::config
