// GCRA (generic cell rate algorithm), the token-bucket math shared by the local store and the
// Redis Lua script (middleware/rate_limit.cpp keeps the two in step). A bucket holds
// `capacity` = N + burst requests and refills continuously at N per period: one request every
// `emission` = period / N. The whole state of a key is one number, its theoretical arrival
// time (TAT): the moment the bucket will be full again. All times are microseconds on one
// clock; the functions are pure, so tests drive them with a fake clock.
#pragma once

#include <cstdint>

namespace sluice::middleware {

struct GcraParams {
  int64_t emissionUs = 1;  // period / N, at least 1
  int64_t capacity = 1;    // N + burst, at least 1

  static GcraParams make(uint64_t rate, int64_t periodMs, uint64_t burst);
};

struct GcraDecision {
  bool allowed = false;
  int64_t remaining = 0;     // requests still allowed right now (after this one)
  int64_t resetUs = 0;       // until the bucket is full again
  int64_t retryAfterUs = 0;  // limited only: until one request is allowed again
};

// Decides one request arriving at `nowUs` for a key whose state is `tat` (0 or anything
// <= now = a full bucket); updates `tat` when the request is allowed.
GcraDecision gcraDecide(int64_t& tat, int64_t nowUs, const GcraParams& p);

// Whole seconds for headers: rounded up, at least `floor`.
int64_t ceilSeconds(int64_t us, int64_t floor = 0);

}  // namespace sluice::middleware
