// type = "rate_limit": its settings, the parser of its [middleware.NAME] table and its factory
// builder (registered in middleware/registry.cpp). The filter is middleware/rate_limit.h.
//   key   = "ip" | "header:NAME" | "cookie:NAME" | "jwt:CLAIM"   (default "ip")
//   rate  = "N/s" | "N/m" | "N/h"                                  (required)
//   burst = extra requests on top of N                             (default 0)
//   store = "redis" | "local"                    (default "redis" when [redis] is present)
#pragma once

#include <cstdint>
#include <string>

#include "config/middleware_types.h"
#include "config/schema.h"
#include "middleware/registry.h"

namespace sluice::middleware {

enum class RateLimitKeyKind { Ip, Header, Cookie, JwtClaim };
enum class RateLimitStore { Redis, Local };

struct RateLimitSettings final : config::MiddlewareSettings {
  std::string key = "ip";  // as written
  RateLimitKeyKind keyKind = RateLimitKeyKind::Ip;
  std::string keyName;            // header / cookie / claim name
  uint64_t rate = 0;              // N requests ...
  config::Duration period{1000};  // ... per period (1s, 1m or 1h)
  uint64_t burst = 0;             // extra requests on top of N
  RateLimitStore store = RateLimitStore::Local;

  bool refusesRequests() const override { return true; }
  std::string claimsKey() const override {
    return keyKind == RateLimitKeyKind::JwtClaim ? key : std::string();
  }
};

config::MiddlewareSettingsPtr parseRateLimit(const config::MiddlewareTable& table);
FilterFactoryPtr buildRateLimit(const config::MiddlewareConfig& mc, const FactoryContext& ctx,
                                std::string& err);

}  // namespace sluice::middleware
