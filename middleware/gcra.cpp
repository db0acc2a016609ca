#include "middleware/gcra.h"

#include <algorithm>

namespace sluice::middleware {

GcraParams GcraParams::make(uint64_t rate, int64_t periodMs, uint64_t burst) {
  GcraParams p;
  if (rate == 0) rate = 1;
  p.emissionUs = std::max<int64_t>(1, periodMs * 1000 / int64_t(rate));
  p.capacity = std::max<int64_t>(1, int64_t(rate + burst));
  return p;
}

GcraDecision gcraDecide(int64_t& tat, int64_t nowUs, const GcraParams& p) {
  GcraDecision d;
  int64_t t = std::max(tat, nowUs);
  int64_t newTat = t + p.emissionUs;
  int64_t allowAt = newTat - p.capacity * p.emissionUs;
  if (nowUs < allowAt) {
    d.allowed = false;
    d.remaining = 0;
    d.resetUs = t - nowUs;
    d.retryAfterUs = allowAt - nowUs;
    return d;
  }
  tat = newTat;
  d.allowed = true;
  d.remaining = (nowUs - allowAt) / p.emissionUs;
  d.resetUs = newTat - nowUs;
  return d;
}

int64_t ceilSeconds(int64_t us, int64_t floor) {
  int64_t s = us <= 0 ? 0 : (us + 999999) / 1000000;
  return std::max(s, floor);
}

}  // namespace sluice::middleware
