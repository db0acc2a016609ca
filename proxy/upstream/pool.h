// Pools and backends. A Backend is one resolved address of one configured backend of one pool.
// It is shared by every worker and outlives reloads and DNS changes (kept in the
// BackendRegistry by pool name + configured address + resolved IP) so its health, ejection and
// drain state carry over. Workers read and report through its atomics only; the main thread
// (health checker, resolver, admin) writes the rest. A Pool is immutable snapshot data.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "config/schema.h"
#include "tls/tls_context.h"

namespace sluice::upstream {

// Monotonic milliseconds, comparable across threads (uv_hrtime based).
uint64_t monotonicMs();
// A well-mixed 64-bit hash (FNV-1a + murmur3 finalizer) for the hash ring and hash keys.
uint64_t hash64(std::string_view s);

struct Backend {
  std::string pool;
  std::string address;     // as configured, "host:port"
  std::string host;        // its host part (TLS server name, Host for health checks)
  std::string ip;          // the resolved IP, text form
  std::string name;        // label for metrics/logs/admin: address, or "address@ip" for names
  uint32_t addressId = 0;  // interned `name`, for metrics
  sockaddr_storage addr{};
  socklen_t addrLen = 0;
  bool resolved = false;  // always true for a Backend in a snapshot (kept for callers)

  // --- shared state (atomics; any thread) ---
  std::atomic<bool> healthy{true};           // active health checks (true without checks)
  std::atomic<bool> draining{false};         // admin drain: no new requests
  std::atomic<uint64_t> ejectedUntilMs{0};   // outlier ejection end (monotonicMs), 0 = never
  std::atomic<uint32_t> consecutiveFailures{0};
  std::atomic<uint32_t> ejections{0};        // ejections in a row (ejection time grows)
  std::atomic<int64_t> active{0};            // requests in flight, all workers

  std::atomic<uint64_t> stateChanges{0};  // counted by the main thread's state monitor

  // --- main thread only ---
  std::string reportedState;  // last state logged (see stateName)
  std::string lastReason;     // why the last state change happened (health check detail)

  // Takes new requests now (ignoring max_connections).
  bool usable(uint64_t nowMs) const {
    return healthy.load(std::memory_order_relaxed) &&
           !draining.load(std::memory_order_relaxed) &&
           ejectedUntilMs.load(std::memory_order_relaxed) <= nowMs;
  }
  bool ejected(uint64_t nowMs) const {
    return ejectedUntilMs.load(std::memory_order_relaxed) > nowMs;
  }
  // "up" | "down" (active checks) | "ejected" (outlier) | "draining" (admin).
  const char* stateName(uint64_t nowMs) const;

  // Takes one of `max` request slots (0 = unlimited) atomically across workers; false when all
  // are taken. Every successful call is paired with releaseSlot().
  bool tryAcquireSlot(uint32_t max) {
    if (max == 0) {
      active.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    int64_t a = active.load(std::memory_order_relaxed);
    while (a < int64_t(max))
      if (active.compare_exchange_weak(a, a + 1, std::memory_order_relaxed)) return true;
    return false;
  }
  void releaseSlot() { active.fetch_sub(1, std::memory_order_relaxed); }
};
using BackendPtr = std::shared_ptr<Backend>;

// A consistent-hash ring (virtual nodes), built once per snapshot for balance = "hash".
struct HashRing {
  std::vector<std::pair<uint64_t, uint32_t>> points;  // (hash, backend index), sorted
  void build(const std::vector<BackendPtr>& backends, const std::vector<uint32_t>& weights);
};

struct Pool {
  std::string name;
  uint32_t nameId = 0;
  uint64_t uid = 0;  // unique per Pool object (per-worker balancer state is keyed by it)
  config::PoolConfig settings;
  tls::ClientTlsContextPtr tls;  // non-null when settings.tls
  std::vector<BackendPtr> backends;
  std::vector<uint32_t> weights;         // parallel to backends
  std::vector<std::string> unresolved;   // configured host names with no address (yet)
  HashRing ring;                         // balance = "hash"

  // Some backend takes new requests now (healthy, not ejected, not draining).
  bool hasHealthyBackend() const;
};

// Keeps Backend objects alive across snapshots, keyed by (pool, configured address, IP).
class BackendRegistry {
 public:
  BackendPtr get(const std::string& pool, const std::string& address, const std::string& ip = {});
  // Drops entries no snapshot references any more.
  void prune();

 private:
  std::mutex mu_;
  std::map<std::tuple<std::string, std::string, std::string>, std::weak_ptr<Backend>> entries_;
};

// Smooth weighted round-robin (the nginx algorithm): every pick adds each eligible backend's
// weight to its current value, takes the largest, and subtracts the total from the winner. The
// sequence is spread evenly (5:1:1 gives a a b a c a a, never a burst of five).
class SmoothWrr {
 public:
  // Returns an index into pool.backends, or -1 when no backend is eligible. `skip` backends
  // (already tried for this request) and unusable ones are not eligible.
  int pick(const Pool& pool, const Backend* const* skip, size_t skipCount);
  // As above with an eligibility mask (1 = eligible), parallel to pool.backends.
  int pickAmong(const Pool& pool, const std::vector<uint8_t>& eligible);

 private:
  std::vector<int64_t> current_;
};

// Passive health (outlier detection), called by workers after each upstream outcome.
// A failure is a 5xx answer or a connect/reset/timeout error. `consecutive_failures` in a row
// eject the backend for ejection_time x (number of ejections in a row, at most 10); the last
// usable backend of a pool is never ejected. Returns true when this call ejected it.
bool reportFailure(const Pool& pool, Backend& b, uint64_t nowMs);
void reportSuccess(const Pool& pool, Backend& b, uint64_t nowMs);

// Hook for "a connect was refused": re-resolve host-name backends soon. Set by the main thread
// (thread-safe to call; does nothing when unset).
void setResolveHook(void (*hook)());
void requestResolve();

}  // namespace sluice::upstream
