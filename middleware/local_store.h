// The in-process rate-limit store: GCRA state (one TAT per key) in memory, shared by every
// worker of the process. Keys are spread over 64 shards, each with its own small mutex and
// hash map, so workers contend only when they hit the same shard at the same instant; there is
// no global lock on the hot path. Memory is bounded: a shard that reaches its share of
// `maxKeys` first drops the keys whose bucket is full again (dropping those loses nothing),
// and if that is not enough, evicts arbitrary keys down to 7/8 of its share.
//
// Stores outlive config reloads through LocalStoreRegistry (keyed by middleware name, like
// upstream::BackendRegistry): a reload that keeps [middleware.NAME] keeps its counters.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "middleware/gcra.h"

namespace sluice::middleware {

class LocalStore {
 public:
  static constexpr size_t kShards = 64;
  static constexpr size_t kDefaultMaxKeys = 1 << 20;

  explicit LocalStore(size_t maxKeys = kDefaultMaxKeys);

  GcraDecision decide(std::string_view key, const GcraParams& p, int64_t nowUs);
  // Same, on the monotonic clock.
  GcraDecision decide(std::string_view key, const GcraParams& p);

  size_t size() const;  // approximate (locks shards one by one)
  static int64_t nowUs();

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  struct Eq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
  };
  struct alignas(64) Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, int64_t, Hash, Eq> tats;
  };
  void makeRoom(Shard& s, int64_t nowUs);

  size_t maxPerShard_;
  std::array<Shard, kShards> shards_;
};

// Process-wide home of the local stores, owned by the Server and passed to
// buildFilterFactories(). Thread-safe (config build only, never per request).
class LocalStoreRegistry {
 public:
  // The store of middleware `name`, created on first use; the same object as long as some
  // snapshot still holds it.
  std::shared_ptr<LocalStore> get(const std::string& name);
  // Forgets stores no snapshot uses any more (call after a reload, optional).
  void prune();
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::weak_ptr<LocalStore>> stores_;
};

}  // namespace sluice::middleware
