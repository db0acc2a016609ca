// Release control of one split route (weighted canary, blue-green): the live weights every
// worker reads, a sliding window of upstream outcomes per pool, automatic rollback, progressive
// promotion, and the state that is persisted (server.state_file) and shared between instances
// (release_store = "redis").
//
// A Release outlives snapshots: the ReleaseRegistry (main thread) keeps one per split route
// name, and every snapshot's Split points at it, so a DNS rebuild or a reload that keeps the
// route's pools keeps its windows and counters. What a reload does to the state is the
// registry's call (see ReleaseRegistry::obtain).
//
// Threads: workers call onOutcome() and read the live weights (atomics, no lock); a rollback a
// worker decides, and everything the main thread does (admin API, promotion tick, state
// restore), takes the release's mutex, which the request path never touches otherwise.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config/schema.h"
#include "proxy/upstream/outcome.h"

namespace sluice::router {

// Sliding window of attempt outcomes for one pool of a split: kSlots slots of window/kSlots
// each, written by every worker with relaxed atomics. A slot is reused when its period comes
// round again (the reset can lose an increment racing with it; the counts steer a judgement,
// they are not billing).
class OutcomeWindow {
 public:
  static constexpr size_t kSlots = 10;
  static constexpr size_t kLatencyBuckets = 96;  // log-linear, 4 per power of two, in µs

  struct Totals {
    uint64_t requests = 0;
    uint64_t errors = 0;
  };

  OutcomeWindow() = default;
  OutcomeWindow(const OutcomeWindow&) = delete;
  OutcomeWindow& operator=(const OutcomeWindow&) = delete;

  void setWindow(uint64_t windowMs);
  uint64_t windowMs() const { return slotMs_.load(std::memory_order_relaxed) * kSlots; }
  // `request`: counts as a request (false for a failure after a response head, already
  // counted); `error`: counts as an error.
  void record(uint64_t nowMs, bool request, bool error, uint64_t latencyUs);
  Totals totals(uint64_t nowMs) const;
  // The 99th percentile of the window's latencies in µs (0 when empty).
  uint64_t p99Us(uint64_t nowMs) const;
  void clear();

  static size_t latencyBucket(uint64_t us);
  static uint64_t bucketMidUs(size_t bucket);

 private:
  struct Slot {
    std::atomic<uint64_t> period{0};  // (nowMs / slotMs) + 1 of the counts held; 0 = empty
    std::atomic<uint32_t> requests{0};
    std::atomic<uint32_t> errors{0};
    std::array<std::atomic<uint32_t>, kLatencyBuckets> latency{};
  };
  bool live(const Slot& s, uint64_t period) const;
  std::atomic<uint64_t> slotMs_{3000};
  std::array<Slot, kSlots> slots_;
};

enum class ReleaseSource : uint8_t { File, Api, Rollback, Promote, Peer };
enum class ReleasePhase : uint8_t {
  Steady,      // weights as set (file or API); no automatic promotion running
  Promoting,   // [route.promote]: the canary steps up while it stays healthy
  RolledBack,  // a canary was taken out (automatically or by the API)
  Complete,    // promotion reached its last step
};
std::string_view sourceName(ReleaseSource s);
std::string_view phaseName(ReleasePhase p);
bool parseSource(std::string_view s, ReleaseSource& out);
bool parsePhase(std::string_view s, ReleasePhase& out);

struct ReleaseDecision {
  int64_t atUnixMs = 0;  // 0 = none yet
  std::string action;    // "rollback", "promote", "complete", "pause", "resume", "weights"
  std::string pool;
  std::string reason;
};

// What is persisted and shared: enough to carry a release across a restart or to a peer.
struct ReleaseState {
  std::vector<uint32_t> weights;      // live, one per pool of the split
  std::vector<uint32_t> fileWeights;  // the file's when this state was made
  ReleaseSource source = ReleaseSource::File;
  ReleasePhase phase = ReleasePhase::Steady;
  bool paused = false;
  uint32_t step = 0;  // promotion steps reached (1-based index into steps); 0 = none
  int64_t stepStartedUnixMs = 0;
  ReleaseDecision last;
  uint64_t version = 0;  // orders changes between instances (release_store = "redis")
  uint64_t writer = 0;   // the instance that made this version
};

// Answer of an admin operation.
struct ReleaseResult {
  int status = 200;
  std::string code;    // error code when status != 200
  std::string detail;  // error detail
};

class Release {
 public:
  Release(std::string route, std::vector<std::string> pools);
  Release(const Release&) = delete;
  Release& operator=(const Release&) = delete;

  const std::string& route() const { return route_; }
  const std::vector<std::string>& pools() const { return pools_; }
  size_t arms() const { return pools_.size(); }

  // Rules and file weights from the route's config; `reset` also makes the file's weights the
  // live ones and starts the release over (phase, step, decision).
  void configure(const config::RouteConfig& rc, bool reset, int64_t nowUnixMs);
  const config::RollbackRules& rollbackRules() const { return rollback_; }
  const config::PromoteRules& promoteRules() const { return promote_; }
  std::vector<uint32_t> fileWeights() const;

  // --- workers (no lock) ---
  uint32_t weight(size_t arm) const { return live_[arm].load(std::memory_order_relaxed); }
  // Bumped after every change of the weights (acquire: the new weights are visible).
  uint64_t weightsVersion() const { return weightsVersion_.load(std::memory_order_acquire); }
  // One upstream attempt's outcome for the pool at `arm`: counted, and for a canary judged at
  // once against [route.rollback] (a crossing rolls it back before the next request).
  // `rules` are the snapshot's (a reload may change them while workers run).
  void onOutcome(size_t arm, const upstream::AttemptOutcome& o, uint64_t nowMs,
                 const config::RollbackRules& rules);

  // --- main thread (admin API, promotion, store) ---
  // Live weights for every pool (admin PUT .../split). Pauses a running promotion.
  ReleaseResult setWeights(const std::vector<uint32_t>& w, int64_t nowUnixMs);
  // Takes every canary with traffic out (its weight to the baseline).
  ReleaseResult rollback(std::string_view reason, ReleaseSource source, int64_t nowUnixMs);
  // The next promotion step now (without [route.promote]: the canary takes everything).
  ReleaseResult promote(int64_t nowUnixMs);
  ReleaseResult pause(int64_t nowUnixMs);
  ReleaseResult resume(int64_t nowUnixMs);
  // Promotion: steps up when the interval has passed with the rules holding and enough
  // requests. Returns true when it changed something.
  bool tick(uint64_t nowMs, int64_t nowUnixMs);

  ReleaseState state() const;
  // Takes a persisted or shared state (weights of the same pools); counts nothing.
  void adopt(const ReleaseState& s, ReleaseSource as);
  // Bumped on every change of state() (main thread compares it to persist / publish).
  uint64_t changes() const { return changes_.load(std::memory_order_acquire); }
  // Release ordering between instances: a local change takes version max(seen) + 1.
  void setWriter(uint64_t id) { writerId_ = id; }

  // Counts of the other instances (release_store = "redis"), added to the local window when
  // judging; cleared (zeros) when the store is unreachable.
  void setPeerCounts(const std::vector<OutcomeWindow::Totals>& peers);
  OutcomeWindow::Totals windowTotals(size_t arm, uint64_t nowMs) const;  // local only
  uint64_t p99Us(size_t arm, uint64_t nowMs) const { return windows_[arm]->p99Us(nowMs); }
  uint64_t rollbacks(size_t arm) const { return rollbacks_[arm]->load(std::memory_order_relaxed); }
  // Set by the registry: counters that survive a Release being replaced.
  void setRollbackCounter(size_t arm, std::atomic<uint64_t>* c) { rollbacks_[arm] = c; }

  // {"source":..,"state":..,"step":..,"window":{..},"last_decision":{..}} for /admin/status.
  void appendStatusJson(std::string& out, uint64_t nowMs) const;

 private:
  // Why the canary at `arm` breaks the rules now ("" when it does not).
  std::string violation(size_t arm, uint64_t nowMs, const config::RollbackRules& rules) const;
  void publishWeights(const std::vector<uint32_t>& w);  // mu_ held
  void changed(int64_t nowUnixMs, std::string action, std::string pool, std::string reason,
               ReleaseSource source);  // mu_ held
  // mu_ held: takes canary `arm` out; false when it has no traffic.
  bool takeOut(size_t arm, std::vector<uint32_t>& w);
  uint32_t canaryPercent(const std::vector<uint32_t>& w) const;  // two-pool splits
  // How many promotion steps are at or below `pct` (the step a canary share stands at).
  uint32_t stepsAtOrBelow(uint32_t pct) const;
  void enterStep(size_t index, int64_t nowUnixMs);  // mu_ held

  const std::string route_;
  const std::vector<std::string> pools_;
  std::unique_ptr<std::atomic<uint32_t>[]> live_;
  std::atomic<uint64_t> weightsVersion_{0};
  std::vector<std::unique_ptr<OutcomeWindow>> windows_;
  std::unique_ptr<std::atomic<uint64_t>[]> cumulative_;  // requests per pool since start
  std::unique_ptr<std::atomic<uint64_t>[]> peerRequests_, peerErrors_;
  std::vector<std::atomic<uint64_t>*> rollbacks_;
  std::vector<std::unique_ptr<std::atomic<uint64_t>>> ownRollbacks_;  // until the registry's
  mutable std::atomic<int64_t> nextP99CheckMs_{0};
  std::atomic<uint64_t> changes_{0};
  uint64_t writerId_ = 0;

  mutable std::mutex mu_;
  config::RollbackRules rollback_;  // written only by configure (before workers see it)
  config::PromoteRules promote_;
  std::vector<uint32_t> fileWeights_;
  ReleaseState st_;        // weights mirror live_
  uint64_t stepBase_ = 0;  // cumulative_[1] when the current step started
};

// The releases of every split route, by route name, across reloads (main thread).
class ReleaseRegistry {
 public:
  // The Release for `rc` (a split route). A new one when the route is new or its pools changed.
  // When `generation` differs from the one the release was last configured for (a reload, not
  // a DNS rebuild), the file's weights are re-applied, unless `keepUnlessFileChanged` (a state
  // file is configured) and the file's weights are the same as when the state was made.
  std::shared_ptr<Release> obtain(const config::RouteConfig& rc, uint64_t generation,
                                  bool keepUnlessFileChanged, int64_t nowUnixMs);
  // Drops releases of routes the config no longer has (after a successful reload).
  void retain(const std::vector<std::string>& routes);
  // Every live release, by route name.
  const std::map<std::string, std::shared_ptr<Release>>& all() const { return releases_; }
  void setWriter(uint64_t id);
  uint64_t writer() const { return writer_; }

 private:
  std::map<std::string, std::shared_ptr<Release>> releases_;
  std::map<std::string, uint64_t> generations_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<std::atomic<uint64_t>>> rollbacks_;
  uint64_t writer_ = 0;
};

}  // namespace sluice::router
