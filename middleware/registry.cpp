#include "middleware/registry.h"

#include "middleware/jwt.h"
#include "middleware/rate_limit.h"

namespace sluice::middleware {

FactoryBuild buildFilterFactories(const config::Config& cfg, LocalStoreRegistry& stores) {
  FactoryBuild out;
  for (const auto& mc : cfg.middleware) {
    switch (mc.type) {
      case config::MiddlewareType::RateLimit:
        if (mc.rateLimit.store == config::RateLimitStore::Redis && !cfg.redis.enabled) {
          out.errors.push_back("middleware." + mc.name + ": store = \"redis\" needs [redis]");
          continue;
        }
        out.factories[mc.name] =
            std::make_shared<const RateLimitFactory>(mc, cfg.redis, stores.get(mc.name));
        break;
      case config::MiddlewareType::Jwt: {
        std::string err;
        auto f = JwtFactory::create(mc, err);
        if (!f) {
          out.errors.push_back("middleware." + mc.name + ": " + err);
          continue;
        }
        out.factories[mc.name] = std::move(f);
        break;
      }
    }
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
