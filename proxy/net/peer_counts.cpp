// PeerCounts: per-address connection counts shared by the workers.
#include "proxy/net/peer_counts.h"

#include <netinet/in.h>

#include <cstring>

namespace sluice::net {

size_t PeerCounts::KeyHash::operator()(const Key& k) const {
  // FNV-1a over the address, mixed with the scope pointer.
  uint64_t h = 1469598103934665603ull ^ uint64_t(reinterpret_cast<uintptr_t>(k.scope));
  for (uint8_t b : k.addr) {
    h ^= b;
    h *= 1099511628211ull;
  }
  return size_t(h ^ (h >> 29));
}

PeerCounts::Key PeerCounts::keyOf(const void* scope, const sockaddr_storage& peer) {
  Key k;
  k.scope = scope;
  if (peer.ss_family == AF_INET) {
    const auto& s4 = reinterpret_cast<const sockaddr_in&>(peer);
    k.addr[10] = k.addr[11] = 0xff;
    std::memcpy(k.addr.data() + 12, &s4.sin_addr, 4);
  } else if (peer.ss_family == AF_INET6) {
    const auto& s6 = reinterpret_cast<const sockaddr_in6&>(peer);
    std::memcpy(k.addr.data(), &s6.sin6_addr, 16);
  }
  return k;
}

PeerCounts& PeerCounts::global() {
  static PeerCounts* table = new PeerCounts;  // never destroyed: workers may outlive statics
  return *table;
}

PeerCounts::Place PeerCounts::acquire(const void* scope, const sockaddr_storage& peer,
                                      uint32_t limit) {
  Key k = keyOf(scope, peer);
  Shard& s = shardOf(k);
  std::lock_guard<std::mutex> lock(s.mu);
  auto [it, inserted] = s.map.try_emplace(k, 0);
  if (it->second >= limit) {
    if (inserted) s.map.erase(it);  // limit 0: no entry without a connection
    return nullptr;
  }
  ++it->second;
  return &*it;
}

void PeerCounts::release(Place p) {
  Shard& s = shardOf(p->first);
  std::lock_guard<std::mutex> lock(s.mu);
  if (--p->second == 0) s.map.erase(p->first);
}

uint32_t PeerCounts::count(const void* scope, const sockaddr_storage& peer) {
  Key k = keyOf(scope, peer);
  Shard& s = shardOf(k);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(k);
  return it == s.map.end() ? 0 : it->second;
}

size_t PeerCounts::entries() {
  size_t n = 0;
  for (Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    n += s.map.size();
  }
  return n;
}

}  // namespace sluice::net
