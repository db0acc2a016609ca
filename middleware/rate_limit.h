// [middleware.NAME] type = "rate_limit": a GCRA token bucket per key (middleware/gcra.h),
// N + burst deep, refilled at N per period.
//   store = "redis": one Lua script (kRateLimitScript) decides atomically inside Redis with
//     Redis's own clock (TIME), so every worker and every Sluice process sharing the Redis
//     shares the bucket exactly. Keys: "sluice:rl:<middleware>:<source>:<value>" (source =
//     ip | header | cookie | jwt), expiring when the bucket is full again.
//     Redis unavailable (not connected, timeout, error): failure_mode = "open" decides with
//     the process-local store instead (never unlimited); "closed" answers 503
//     `ratelimit_unavailable`.
//   store = "local": the process-local store (middleware/local_store.h).
// Every answer of the route gets RateLimit-Limit (= N + burst, the bucket size),
// RateLimit-Remaining, RateLimit-Reset (seconds until the bucket is full) and RateLimit-Policy
// ("N;w=SECONDS[;burst=B]"); a refused request gets 429 `rate_limited` with Retry-After.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "config/schema.h"
#include "middleware/filter.h"
#include "middleware/gcra.h"
#include "middleware/local_store.h"
#include "middleware/redis_client.h"

namespace sluice::middleware {

// Error code of the 503 answered when the limit store is down and failure_mode = "closed".
inline constexpr std::string_view kRateLimitUnavailableCode = "ratelimit_unavailable";

// The GCRA script: KEYS[1] = bucket key, ARGV[1] = emission interval (µs), ARGV[2] = capacity.
// Returns {allowed (0|1), remaining, reset µs, retry-after µs}.
const RedisScript& rateLimitScript();

class RateLimitFactory final : public FilterFactory {
 public:
  RateLimitFactory(const config::MiddlewareConfig& mc, const config::RedisSettings& redis,
                   std::shared_ptr<LocalStore> local);

  std::unique_ptr<Filter> create(FilterCallbacks& callbacks) const override;
  std::string_view name() const override { return name_; }

  const GcraParams& params() const { return params_; }
  // "RateLimit-Policy: 100;w=60;burst=20\r\n" etc., precomputed.
  const std::string& policyValue() const { return policy_; }

 private:
  friend class RateLimitFilter;
  std::string name_;
  uint32_t nameId_ = 0;
  config::RateLimitKeyKind keyKind_;
  std::string keyName_;
  GcraParams params_;
  bool useRedis_ = false;
  bool failOpen_ = true;
  std::shared_ptr<LocalStore> local_;
  std::string keyPrefix_;    // "sluice:rl:<name>:"
  std::string emissionArg_;  // ARGV[1]
  std::string capacityArg_;  // ARGV[2]
  std::string policy_;       // "100;w=60;burst=20"
};

}  // namespace sluice::middleware
