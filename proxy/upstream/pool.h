// Pools and backends. A Backend is shared by every worker and outlives reloads (kept in the
// BackendRegistry by pool name + address) so its health and counters carry over; workers only
// read its atomics. A Pool is immutable config-snapshot data.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "config/schema.h"
#include "tls/tls_context.h"

namespace sluice::upstream {

struct Backend {
  std::string pool;
  std::string address;     // as configured, "host:port"
  std::string host;        // its host part (TLS server name); set once, when created
  uint32_t addressId = 0;  // interned, for metrics
  sockaddr_storage addr{};
  socklen_t addrLen = 0;
  bool resolved = false;

  std::atomic<bool> healthy{true};
  std::atomic<int64_t> active{0};  // requests in flight, all workers
};
using BackendPtr = std::shared_ptr<Backend>;

struct Pool {
  std::string name;
  uint32_t nameId = 0;
  config::PoolConfig settings;
  tls::ClientTlsContextPtr tls;  // non-null when settings.tls
  std::vector<BackendPtr> backends;
  std::vector<uint32_t> weights;  // parallel to backends

  bool hasHealthyBackend() const;
};

// Keeps Backend objects alive across snapshots, keyed by (pool, address).
class BackendRegistry {
 public:
  BackendPtr get(const std::string& pool, const std::string& address);
  // Drops entries no snapshot references any more.
  void prune();

 private:
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::weak_ptr<Backend>> entries_;
};

// Smooth weighted round-robin (the nginx algorithm): every pick adds each eligible backend's
// weight to its current value, takes the largest, and subtracts the total from the winner. The
// sequence is spread evenly (5:1:1 gives a a b a c a a, never a burst of five).
class SmoothWrr {
 public:
  // Returns an index into pool.backends, or -1 when no backend is eligible. `skip` backends
  // (already tried for this request) and unhealthy ones are not eligible.
  int pick(const Pool& pool, const Backend* const* skip, size_t skipCount);

 private:
  std::vector<int64_t> current_;
};

}  // namespace sluice::upstream
