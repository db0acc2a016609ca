// Balancers: one interface, four algorithms (balance = round_robin | least_conn | p2c | hash).
// Each worker owns one Balancer per pool (BalancerSet) with its own mutable state, so picking
// takes no lock; what is shared between workers is only read (Backend atomics, the Pool and its
// hash ring, which is built once per snapshot).
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/http/message.h"
#include "proxy/upstream/pool.h"

namespace sluice::upstream {

struct PickRequest {
  const Backend* const* skip = nullptr;  // already tried for this request
  size_t skipCount = 0;
  uint64_t hash = 0;  // balance = "hash": the request's key hash
  uint64_t nowMs = 0;
};

struct PickResult {
  int index = -1;          // into pool.backends, -1 = none
  bool saturated = false;  // none, but only because usable backends are at max_connections
};

class Balancer {
 public:
  virtual ~Balancer() = default;
  // Every balancer skips backends that are down, ejected, draining, at max_connections or in
  // `skip`.
  PickResult pick(const Pool& pool, const PickRequest& r);

 protected:
  // Chooses among `eligible` (1 = eligible, parallel to pool.backends; at least one set).
  virtual int choose(const Pool& pool, const std::vector<uint8_t>& eligible, uint64_t hash) = 0;

 private:
  std::vector<uint8_t> eligible_;
};

std::unique_ptr<Balancer> makeBalancer(config::Balance kind);

// Per-worker balancers by pool (keyed by Pool::uid so a freed and reallocated Pool never
// inherits stale state).
class BalancerSet {
 public:
  Balancer& get(const Pool& pool);
  void clear() { map_.clear(); }

 private:
  struct Entry {
    uint64_t uid = 0;
    std::unique_ptr<Balancer> b;
  };
  std::unordered_map<const Pool*, Entry> map_;
};

// The hash of a request's key for balance = "hash": the client IP, a header or a cookie (the
// first pair of that name in any Cookie header, parsed by http/cookie.h). A request without
// the header/cookie (or with an empty value) falls back to its client IP.
uint64_t requestHash(const config::HashKey& key, const http::HeaderMap& headers,
                     std::string_view clientIp);

}  // namespace sluice::upstream
