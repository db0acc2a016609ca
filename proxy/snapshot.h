// Snapshot: one immutable, fully built configuration generation (routes, pools, listener
// settings). Workers hold it through a shared_ptr; a stream keeps the snapshot it started
// with, so a reload never changes a request in flight. Nothing here holds uv handles or
// per-thread state.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/schema.h"
#include "middleware/local_store.h"
#include "proxy/router/release.h"
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

// Resolved IPs of host-name backends, by host name (kept by the Resolver on the main thread).
using AddressBook = std::map<std::string, std::vector<std::string>>;

struct Snapshot {
  uint64_t generation = 0;
  // Rebuilt for a changed backend set (DNS) without a config reload: same generation, next
  // revision. Starts at 0 for each generation.
  uint64_t revision = 0;
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
// IP-literal backends become one Backend each; a host-name backend becomes one Backend per
// address `book` has for it (none yet: the pool lists it as unresolved). Nothing blocks: names
// are resolved asynchronously by the Resolver. Returns nullptr when something the loader could
// not check fails (a certificate file changed underneath): `error` says what. Middleware
// factories are built here too; local rate-limit buckets live in `stores` across snapshots, and
// split routes take their Release from `releases` (without it, a fresh one each).
std::shared_ptr<Snapshot> buildSnapshot(const config::Config& cfg,
                                        upstream::BackendRegistry& registry, uint64_t generation,
                                        std::vector<std::string>& warnings, std::string& error,
                                        const AddressBook* book = nullptr,
                                        middleware::LocalStoreRegistry* stores = nullptr,
                                        router::ReleaseRegistry* releases = nullptr);

}  // namespace sluice
