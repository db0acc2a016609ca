// [middleware.NAME] type = "rate_limit": a GCRA token bucket per key (middleware/gcra.h),
// N + burst deep, refilled at N per period.
//   store = "redis": a Lua script (rateLimitBatchScript) decides atomically inside Redis with
//     Redis's own clock (TIME), so every worker and every Sluice process sharing the Redis
//     shares the bucket exactly. The decisions a worker needs during one loop turn, of any
//     rate_limit middleware, go out as ONE EVALSHA (RedisClient::batchEval): one TIME, then the
//     calls in order, which decides exactly as the same calls one after the other would.
//     Keys: "sluice:rl:<middleware>:<source>:<value>" (source = ip | header | cookie | jwt),
//     expiring when the bucket is full again.
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
#include "middleware/rate_limit_config.h"
#include "middleware/redis_client.h"

namespace sluice::middleware {

// Error code of the 503 answered when the limit store is down and failure_mode = "closed".
inline constexpr std::string_view kRateLimitUnavailableCode = "ratelimit_unavailable";

// The GCRA batch script: KEYS[i] = bucket key of call i, ARGV[2i-1] = its emission interval
// (µs), ARGV[2i] = its capacity. One TIME for all; returns, per call in order,
// {allowed (0|1), remaining, reset µs, retry-after µs} (4 * #KEYS integers).
const RedisBatchScript& rateLimitBatchScript();

class RateLimitFactory final : public FilterFactory {
 public:
  RateLimitFactory(const std::string& name, const RateLimitSettings& rl,
                   const config::RedisSettings& redis, std::shared_ptr<LocalStore> local);

  Filter* create(FilterArena& arena, FilterCallbacks& callbacks) const override;
  std::string_view name() const override { return name_; }

  const GcraParams& params() const { return params_; }
  // "RateLimit-Policy: 100;w=60;burst=20\r\n" etc., precomputed.
  const std::string& policyValue() const { return policy_; }

 private:
  friend class RateLimitFilter;
  std::string name_;
  uint32_t nameId_ = 0;
  RateLimitKeyKind keyKind_;
  std::string keyName_;
  GcraParams params_;
  bool useRedis_ = false;
  bool failOpen_ = true;
  std::shared_ptr<LocalStore> local_;
  std::string keyPrefix_;    // "sluice:rl:<name>:"
  std::string emissionArg_;  // ARGV[1]
  std::string capacityArg_;  // ARGV[2]
  std::string policy_;       // "100;w=60;burst=20"
  std::string limitValue_;   // "120" (RateLimit-Limit)
};

}  // namespace sluice::middleware
