// Health answers, shared by the admin listener and every proxy listener (where /health* is
// answered when no route claims the path).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/snapshot.h"

namespace sluice::admin {

// What /health/live answers from. The main thread's heartbeat (Server, once a second) stores
// when it ran and how many worker loops have not taken a turn for kStallMs (it also wakes
// every worker for one turn, so an idle loop counts as turning). Readable from any thread.
struct Liveness {
  static constexpr uint64_t kStallMs = 10000;
  std::atomic<uint64_t> beatMs{0};  // monotonic ms of the last heartbeat; 0 = none yet
  std::atomic<uint32_t> stalledWorkers{0};
  void beat(uint64_t nowMs, uint32_t stalled) {
    stalledWorkers.store(stalled, std::memory_order_relaxed);
    beatMs.store(nowMs, std::memory_order_relaxed);
  }
  // Live: the heartbeat is recent (or has not started) and every worker loop turns.
  bool live(uint64_t nowMs, uint32_t* stalled = nullptr, bool* mainStalled = nullptr) const;
};
Liveness& liveness();

// For /health/live, /health/ready and /health: sets status and a JSON body, returns true.
// Any other path: false. /health/live is 503 while liveness() says a loop is stalled.
bool healthResponse(std::string_view path, const Snapshot& snap, int& status, std::string& body);

// {"pools":{"name":{"backends":[{"address":..,"up":..,"active":..}]}}} fragment builder.
void appendPoolsJson(const Snapshot& snap, std::string& out);

}  // namespace sluice::admin
