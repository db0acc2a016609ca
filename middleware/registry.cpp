#include "middleware/registry.h"

#include <vector>

#include "middleware/cors_config.h"
#include "middleware/headers_config.h"
#include "middleware/jwt_config.h"
#include "middleware/rate_limit_config.h"

namespace sluice::middleware {

namespace {

// The middleware types: one line each.
const MiddlewareType kTypes[] = {
    {{"rate_limit", &parseRateLimit}, &buildRateLimit},
    {{"jwt", &parseJwt}, &buildJwt},
    {{"cors", &parseCors}, &buildCors},
    {{"headers", &parseHeaders}, &buildHeaders},
};

const MiddlewareType* findType(std::string_view name) {
  for (const auto& t : kTypes)
    if (t.parser.type == name) return &t;
  return nullptr;
}

}  // namespace

std::span<const MiddlewareType> types() {
  return kTypes;
}

config::MiddlewareParsers parsers() {
  static const std::vector<config::MiddlewareParser> kParsers = [] {
    std::vector<config::MiddlewareParser> out;
    for (const auto& t : kTypes) out.push_back(t.parser);
    return out;
  }();
  return kParsers;
}

FactoryBuild buildFilterFactories(const config::Config& cfg, LocalStoreRegistry& stores) {
  FactoryBuild out;
  FactoryContext ctx{cfg, stores};
  for (const auto& mc : cfg.middleware) {
    const MiddlewareType* type = findType(mc.type);
    if (type == nullptr) {
      out.errors.push_back("middleware." + mc.name + ": unknown type '" + mc.type + "'");
      continue;
    }
    std::string err;
    FilterFactoryPtr f = type->build(mc, ctx, err);
    if (!f) {
      out.errors.push_back("middleware." + mc.name + ": " + err);
      continue;
    }
    out.factories[mc.name] = std::move(f);
  }
  return out;
}

std::vector<FilterFactoryPtr> routeFilters(const config::RouteConfig& route,
                                           const FactoryMap& factories) {
  std::vector<FilterFactoryPtr> out;
  out.reserve(route.middleware.size());
  for (const auto& name : route.middleware) {
    if (auto it = factories.find(name); it != factories.end()) out.push_back(it->second);
  }
  return out;
}

}  // namespace sluice::middleware
