// PeerCounts: open client connections per (listener, peer address), shared by every worker,
// for `max_connections_per_ip`. A connection takes a place when it is accepted and gives it
// back when it is gone; an address with no connection has no entry. The table is split in
// shards, each behind its own mutex, so workers accepting at the same time rarely wait on
// each other (a lookup and an increment per accepted connection, only on listeners that have
// the cap).
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace sluice::net {

class PeerCounts {
 public:
  struct Key {
    const void* scope = nullptr;     // the listener (its interned key)
    std::array<uint8_t, 16> addr{};  // IPv6, or IPv4 as ::ffff:a.b.c.d
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  using Map = std::unordered_map<Key, uint32_t, KeyHash>;
  // A place taken by one connection (stable: the entry lives while its count is above 0).
  using Place = Map::value_type*;

  // The one table of the process.
  static PeerCounts& global();

  // Takes one of `limit` places of `peer` in `scope`: nullptr when all are taken.
  Place acquire(const void* scope, const sockaddr_storage& peer, uint32_t limit);
  // Gives a place back (any thread).
  void release(Place p);
  // Open connections counted for `peer` in `scope` (tests).
  uint32_t count(const void* scope, const sockaddr_storage& peer);
  size_t entries();

  static Key keyOf(const void* scope, const sockaddr_storage& peer);

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    std::mutex mu;
    Map map;
  };
  Shard& shardOf(const Key& k) { return shards_[KeyHash()(k) % kShards]; }
  std::array<Shard, kShards> shards_;
};

}  // namespace sluice::net
