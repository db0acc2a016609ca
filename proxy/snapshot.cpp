// Snapshot compilation from a validated Config.
#include "proxy/snapshot.h"

#include "proxy/observe/log.h"

#include "middleware/registry.h"

#include <re2/re2.h>

#include <atomic>
#include <cstring>

#include "config/units.h"

#include "proxy/files/site.h"
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
  for (const auto& r : routes.routes()) {
    if (!r.split) {
      if (r.pool && !r.pool->hasHealthyBackend()) return false;
      continue;
    }
    for (size_t i = 0; i < r.split->arms.size(); ++i)  // the pools that take traffic now
      if (r.split->liveWeight(i) > 0 && !r.split->arms[i].pool->hasHealthyBackend()) return false;
  }
  return true;
}

std::string listenerKey(const config::HostPort& hp) {
  if (hp.host.find(':') != std::string::npos) return "[" + hp.host + "]:" + std::to_string(hp.port);
  return hp.host + ":" + std::to_string(hp.port);
}

static std::atomic<uint64_t> gPoolUid{0};

static void addBackend(upstream::Pool& pool, upstream::BackendRegistry& registry,
                       const config::BackendConfig& bc, const std::string& ip, bool isName) {
  config::HostPort hp{isName ? ip : bc.hostPort.host, bc.hostPort.port};
  sockaddr_storage ss;
  socklen_t len = 0;
  if (!config::toSockaddr(hp, ss, len)) return;
  upstream::BackendPtr b = registry.get(pool.name, bc.address, isName ? ip : std::string());
  if (!b->resolved) {  // new: fill before any worker can see it
    b->host = bc.hostPort.host;
    b->ip = hp.host;
    b->name = isName ? bc.address + "@" + ip : bc.address;
    b->addressId = observe::internName(b->name);
    b->addr = ss;
    b->addrLen = len;
    b->resolved = true;
  }
  pool.backends.push_back(b);
  pool.weights.push_back(bc.weight);
}

std::shared_ptr<Snapshot> buildSnapshot(const config::Config& cfg,
                                        upstream::BackendRegistry& registry, uint64_t generation,
                                        std::vector<std::string>& warnings, std::string& error,
                                        const AddressBook* book,
                                        middleware::LocalStoreRegistry* stores,
                                        router::ReleaseRegistry* releases) {
  (void)warnings;  // names that do not resolve are reported by the loader and the Resolver
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
    pool->uid = ++gPoolUid;
    for (const auto& bc : pc.backends) {
      sockaddr_storage ss;
      socklen_t len;
      if (config::toSockaddr(bc.hostPort, ss, len)) {
        addBackend(*pool, registry, bc, std::string(), false);
        continue;
      }
      const std::vector<std::string>* ips = nullptr;
      if (book)
        if (auto it = book->find(bc.hostPort.host); it != book->end()) ips = &it->second;
      if (!ips || ips->empty()) {
        pool->unresolved.push_back(bc.address);
        continue;
      }
      for (const auto& ip : *ips) addBackend(*pool, registry, bc, ip, true);
    }
    if (pc.balance == config::Balance::Hash) pool->ring.build(pool->backends, pool->weights);
    snap->pools.push_back(std::move(pool));
  }
  static middleware::LocalStoreRegistry fallbackStores;
  middleware::FactoryBuild factories =
      middleware::buildFilterFactories(cfg, stores ? *stores : fallbackStores);
  if (!factories.errors.empty()) {
    error = factories.errors.front();
    return nullptr;
  }
  std::vector<router::Route> routes;
  std::shared_ptr<const files::MimeTypes> mime;  // read once per snapshot with static routes
  for (const auto& rc : cfg.routes) {
    router::Route r;
    r.filters = middleware::routeFilters(rc, factories.factories);
    r.name = rc.name;
    r.nameId = observe::internName(rc.name);
    for (char c : rc.host) r.host.push_back((c >= 'A' && c <= 'Z') ? char(c + 32) : c);
    r.exact = !rc.pathExact.empty();
    r.path = r.exact ? rc.pathExact : rc.path;
    r.prefixPriority = rc.prefixPriority;
    if (!rc.pathRegex.empty()) {
      r.path = rc.pathRegex;
      r.regex = router::compilePathRegex(rc.pathRegex, error);
      if (!r.regex) {  // the loader compiled it already: not expected
        error = "route " + rc.name + ": path_regex: " + error;
        return nullptr;
      }
      r.regexGroups = r.regex->NumberOfCapturingGroups();
      r.rewrite = rc.rewrite;
    }
    r.methods = rc.methods;
    r.stripPrefix = rc.stripPrefix;
    if (rc.ret.enabled) {
      auto a = std::make_shared<router::FixedAnswer>();
      a->status = rc.ret.status;
      a->location = rc.ret.location;
      a->body = rc.ret.body;
      a->contentType = rc.ret.contentType;
      r.answer = std::move(a);
    } else if (rc.files.enabled) {
      if (!mime) mime = files::MimeTypes::load();
      auto site = std::make_shared<files::Site>();
      site->dir = rc.files.dir;
      site->alias = rc.files.alias;
      site->prefixLength = site->alias ? r.path.size() : 0;
      site->index = rc.files.index;
      site->tryFiles = rc.files.tryFiles;
      site->cacheControl = rc.files.cacheControl;
      site->precompressed = rc.files.precompressed;
      site->cacheValidMs = uint64_t(rc.files.cacheValid.count());
      site->mime = mime;
      r.files = std::move(site);
    } else if (rc.split.empty()) {
      r.pool = snap->pool(rc.pool);
    } else {
      auto split = std::make_shared<router::Split>();
      for (const auto& a : rc.split) split->arms.push_back({snap->pool(a.pool), a.weight});
      const int64_t now = observe::nowUnixMs();
      if (releases != nullptr) {
        const bool keep =
            !cfg.server.stateFile.empty() || cfg.server.releaseStore == config::ReleaseStore::Redis;
        split->release = releases->obtain(rc, generation, keep, now);
      } else {
        std::vector<std::string> names;
        for (const auto& a : rc.split) names.push_back(a.pool);
        split->release = std::make_shared<router::Release>(rc.name, std::move(names));
        split->release->configure(rc, true, now);
      }
      split->rollback = rc.rollback;
      split->sticky = rc.sticky;
      split->stickyName = rc.stickyName;
      split->seed = upstream::hash64(rc.cohort.empty() ? rc.name : rc.cohort);
      split->overrideHeader = rc.overrideHeader;
      split->overrideCookie = rc.overrideCookie;
      split->drainTimeoutMs = uint64_t(rc.drainTimeout.count());
      r.pool = split->arms.front().pool;
      r.split = std::move(split);
    }
    r.patternId = observe::internName(r.path);
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
