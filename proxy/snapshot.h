// Snapshot: one immutable, fully built configuration generation (routes, pools, listener
// settings). Workers hold it through a shared_ptr; a stream keeps the snapshot it started
// with, so a reload never changes a request in flight. Nothing here holds uv handles or
// per-thread state.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/schema.h"
#include "proxy/router/route_table.h"
#include "proxy/upstream/pool.h"
#include "tls/tls_context.h"

namespace sluice {

struct ListenerSpec {
  std::string key;  // "ip:port", stable identity across reloads
  uint32_t nameId = 0;
  config::ListenerConfig cfg;
  tls::ServerTlsContextPtr tls;  // null for plain HTTP
  std::string responseHeaders;   // added to every response ("Strict-Transport-Security: ...")
};

struct Snapshot {
  uint64_t generation = 0;
  config::Config config;
  std::vector<std::unique_ptr<upstream::Pool>> pools;
  router::RouteTable routes;
  std::vector<ListenerSpec> listeners;

  const ListenerSpec* listener(const std::string& key) const;
  const upstream::Pool* pool(const std::string& name) const;
  // Every pool a route uses has a healthy backend.
  bool ready() const;
};
using SnapshotPtr = std::shared_ptr<const Snapshot>;

std::string listenerKey(const config::HostPort& hp);

// Builds a snapshot. Backends come from `registry` so their state survives the reload.
// Hostname backends are resolved here (blocking, main thread); a name that does not resolve
// leaves that backend out of rotation and adds a warning. Returns nullptr when something the
// loader could not check fails (a certificate file changed underneath): `error` says what.
std::shared_ptr<Snapshot> buildSnapshot(const config::Config& cfg,
                                        upstream::BackendRegistry& registry, uint64_t generation,
                                        std::vector<std::string>& warnings, std::string& error);

}  // namespace sluice
