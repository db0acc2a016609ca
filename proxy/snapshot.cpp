// Snapshot compilation from a validated Config.
#include "proxy/snapshot.h"

#include <netdb.h>

#include <cstring>

#include "proxy/observe/metrics.h"

namespace sluice {

const ListenerSpec* Snapshot::listener(const std::string& key) const {
  for (const auto& l : listeners)
    if (l.key == key) return &l;
  return nullptr;
}

const upstream::Pool* Snapshot::pool(const std::string& name) const {
  for (const auto& p : pools)
    if (p->name == name) return p.get();
  return nullptr;
}

bool Snapshot::ready() const {
  for (const auto& r : routes.routes())
    if (r.pool && !r.pool->hasHealthyBackend()) return false;
  return true;
}

std::string listenerKey(const config::HostPort& hp) {
  if (hp.host.find(':') != std::string::npos) return "[" + hp.host + "]:" + std::to_string(hp.port);
  return hp.host + ":" + std::to_string(hp.port);
}

static bool resolve(const config::HostPort& hp, sockaddr_storage& out, socklen_t& len,
                    std::string& err) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(hp.port);
  int rc = getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    err = gai_strerror(rc);
    return false;
  }
  std::memcpy(&out, res->ai_addr, res->ai_addrlen);
  len = socklen_t(res->ai_addrlen);
  freeaddrinfo(res);
  return true;
}

std::shared_ptr<Snapshot> buildSnapshot(const config::Config& cfg,
                                        upstream::BackendRegistry& registry, uint64_t generation,
                                        std::vector<std::string>& warnings, std::string& error) {
  auto snap = std::make_shared<Snapshot>();
  snap->generation = generation;
  snap->config = cfg;
  for (const auto& pc : cfg.pools) {
    auto pool = std::make_unique<upstream::Pool>();
    pool->name = pc.name;
    pool->nameId = observe::internName(pc.name);
    pool->settings = pc;
    if (pc.tls) {
      pool->tls = tls::ClientTlsContext::build(pc, error);
      if (!pool->tls) {
        error = "pool " + pc.name + ": " + error;
        return nullptr;
      }
    }
    for (const auto& bc : pc.backends) {
      upstream::BackendPtr b = registry.get(pc.name, bc.address);
      if (b->host.empty()) b->host = bc.hostPort.host;  // before any worker can see it
      if (!b->resolved) {
        std::string err;
        if (resolve(bc.hostPort, b->addr, b->addrLen, err)) {
          b->addressId = observe::internName(bc.address);
          b->resolved = true;
        } else {
          warnings.push_back("pool " + pc.name + ": backend " + bc.address +
                             " does not resolve: " + err);
        }
      }
      pool->backends.push_back(b);
      pool->weights.push_back(bc.weight);
    }
    snap->pools.push_back(std::move(pool));
  }
  std::vector<router::Route> routes;
  for (const auto& rc : cfg.routes) {
    router::Route r;
    r.name = rc.name;
    r.nameId = observe::internName(rc.name);
    for (char c : rc.host) r.host.push_back((c >= 'A' && c <= 'Z') ? char(c + 32) : c);
    r.exact = !rc.pathExact.empty();
    r.path = r.exact ? rc.pathExact : rc.path;
    r.methods = rc.methods;
    r.stripPrefix = rc.stripPrefix;
    r.pool = snap->pool(rc.pool);
    routes.push_back(std::move(r));
  }
  snap->routes.build(std::move(routes));
  for (const auto& lc : cfg.listeners) {
    ListenerSpec ls;
    ls.key = listenerKey(lc.listen);
    ls.nameId = observe::internName(lc.name);
    ls.cfg = lc;
    if (lc.tls.enabled) {
      ls.tls = tls::ServerTlsContext::build(lc.tls, error);
      if (!ls.tls) {
        error = "listener " + lc.name + ": " + error;
        return nullptr;
      }
    }
    if (lc.tls.enabled && !lc.tls.hsts.empty())
      ls.responseHeaders = "Strict-Transport-Security: " + lc.tls.hsts + "\r\n";
    snap->listeners.push_back(std::move(ls));
  }
  return snap;
}

}  // namespace sluice
