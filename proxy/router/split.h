// Traffic splitting between the pools of a route (weighted canary, blue-green).
//
// A Split is built with the snapshot; its live weights are its Release's. Its pools share 10,000
// buckets: the canaries (every arm but the first) are laid out from bucket 0 upwards in file order,
// the baseline (the first arm) takes the rest, so raising a canary's weight from w1 to w2 moves
// exactly the users in between from the baseline to the canary and nobody back. A sticky key
// (client IP, a header, a cookie, a verified JWT claim, or Sluice's own `sluice_cohort` cookie) is
// hashed with the route's cohort (its name unless `cohort` is set) into a bucket; a request without
// the key is spread by smooth weighted round robin (exact proportions, no randomness). An override
// header or cookie naming one of the split's pools forces that pool.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/schema.h"
#include "middleware/filter.h"
#include "proxy/http/message.h"
#include "proxy/router/release.h"
#include "proxy/upstream/outcome.h"

namespace sluice::upstream {
struct Pool;
}
namespace sluice::observe {
class IdGenerator;
}

namespace sluice::router {

inline constexpr uint32_t kSplitBuckets = 10000;
inline constexpr std::string_view kCohortCookie = "sluice_cohort";

struct SplitArm {
  const upstream::Pool* pool = nullptr;  // owned by the snapshot
  uint32_t weight = 0;                   // as in the file
};

// Bucket ranges for a set of weights (canaries from 0 upwards, the baseline the rest).
void layoutBuckets(const uint32_t* weights, size_t n, uint32_t* begin, uint32_t* end);

// One split route of a snapshot: its pools, stickiness and overrides (immutable), and the
// route's Release (live weights, windows, rollback and promotion; it outlives the snapshot).
// It is the OutcomeSink of the route's upstream attempts.
struct Split final : upstream::OutcomeSink {
  std::vector<SplitArm> arms;  // arms[0] is the baseline
  config::StickyKind sticky = config::StickyKind::None;
  std::string stickyName;
  uint64_t seed = 0;  // hash of the cohort (the route's name unless `cohort` is set)
  std::string overrideHeader, overrideCookie;
  config::RollbackRules rollback;    // this snapshot's rules
  std::shared_ptr<Release> release;  // pools in the order of `arms`
  // drain_timeout: a pool at live weight 0 this long has its open connections closed (see
  // router/drain.h; the main thread decides, workers close). 0 = off.
  uint64_t drainTimeoutMs = 0;

  uint32_t liveWeight(size_t arm) const { return release->weight(arm); }
  const SplitArm* byPoolName(std::string_view name) const;
  void onOutcome(const upstream::Pool& pool, const upstream::AttemptOutcome& o,
                 uint64_t nowMs) const override;
};

// The bucket of a sticky key under a cohort seed.
uint32_t stickyBucket(uint64_t seed, std::string_view key);

// What the splitter reads of a request.
struct SplitRequest {
  const http::RequestHead* head = nullptr;
  std::string_view clientIp;
  const middleware::Attributes* attributes = nullptr;  // jwt claims (verified only)
};

// Per worker: the round-robin state of each split (keyed by the Split, which lives in the
// snapshot; cleared when the worker takes a new snapshot).
class Splitter {
 public:
  // The pool for this request. With sticky = "auto" and no cohort cookie, `newCohort`
  // receives a fresh cohort id (the caller sets it as a cookie on the response); the request
  // is already placed by it.
  const upstream::Pool* pick(const Split& s, const SplitRequest& r, observe::IdGenerator& ids,
                             std::string& newCohort);
  void clear() { state_.clear(); }

 private:
  // Per split: the live weights last seen, their bucket layout and the round robin.
  struct State {
    uint64_t version = ~uint64_t(0);
    std::vector<uint32_t> weights, begin, end;
    std::vector<int64_t> current;
  };
  State& refresh(const Split& s);
  static const SplitArm* spread(const Split& s, State& st);
  std::unordered_map<const Split*, State> state_;
};

}  // namespace sluice::router
