// [pool.NAME]: backends, balancing, timeouts, [pool.NAME.health], [pool.NAME.outlier] and the
// TLS settings towards the backends.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "config/sections.h"
#include "config/units.h"

namespace sluice::config {

namespace {

void loadPoolTls(LoadContext& ctx, const toml::table& t, const std::string& what, PoolConfig& pc) {
  if (const auto* v = t.get("tls")) {
    if (auto b = ctx.getBool(*v, what + ".tls")) pc.tls = *b;
  }
  if (const auto* v = t.get("tls_verify")) {
    if (auto b = ctx.getBool(*v, what + ".tls_verify")) pc.tlsVerify = *b;
  }
  if (const auto* v = t.get("tls_ca")) {
    if (auto s = ctx.getString(*v, what + ".tls_ca")) {
      pc.tlsCa = ctx.resolvePath(*s);
      if (access(pc.tlsCa.c_str(), R_OK) != 0)
        ctx.error(posOf(*v), what + ".tls_ca: cannot read " + pc.tlsCa);
    }
  }
  if (const auto* v = t.get("tls_server_name")) {
    if (auto s = ctx.getString(*v, what + ".tls_server_name")) pc.tlsServerName = *s;
  }
  if (!pc.tls && (t.get("tls_verify") || t.get("tls_ca") || t.get("tls_server_name")))
    ctx.warn(pc.pos, what + ": tls_* settings have no effect without tls = true");
}

void loadHashKey(LoadContext& ctx, const toml::node& v, const std::string& what, PoolConfig& pc) {
  auto s = ctx.getString(v, what + ".hash_key");
  if (!s) return;
  std::string_view k = *s;
  auto named = [&](std::string_view prefix, HashKey::Kind kind) {
    std::string_view rest = k.substr(prefix.size());
    if (rest.empty() || hasSpaceOrControl(rest)) {
      ctx.error(posOf(v),
                what + ".hash_key: '" + *s + "' needs a name after '" + std::string(prefix) + "'");
      return;
    }
    pc.hashKey.kind = kind;
    pc.hashKey.name.assign(rest);
    if (kind == HashKey::Kind::Header)
      for (char& c : pc.hashKey.name)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  };
  if (k == "ip")
    pc.hashKey.kind = HashKey::Kind::Ip;
  else if (k.starts_with("header:"))
    named("header:", HashKey::Kind::Header);
  else if (k.starts_with("cookie:"))
    named("cookie:", HashKey::Kind::Cookie);
  else
    ctx.error(posOf(v), what +
                            ".hash_key: expected \"ip\", \"header:NAME\" or "
                            "\"cookie:NAME\", got '" +
                            *s + "'");
  if (pc.balance != Balance::Hash)
    ctx.warn(posOf(v), what + ".hash_key: has no effect unless balance = \"hash\"");
}

void loadHealth(LoadContext& ctx, const toml::node& n, const std::string& what,
                HealthCheckConfig& h) {
  const auto* t = ctx.tableOf(n, what);
  if (t == nullptr) return;
  ctx.checkKeys(
      *t,
      {"path", "interval", "timeout", "healthy_threshold", "unhealthy_threshold", "expect_status"},
      {}, "in [" + what + "]");
  h.enabled = true;
  h.pos = posOf(n);
  if (const auto* v = t->get("path")) {
    if (auto s = ctx.getString(*v, what + ".path")) {
      if (!s->starts_with("/") || hasSpaceOrControl(*s))
        ctx.error(posOf(*v), what +
                                 ".path: expected a path starting with '/' without spaces, "
                                 "got '" +
                                 *s + "'");
      else
        h.path = *s;
    }
  }
  if (const auto* v = t->get("interval")) {
    if (auto d = ctx.getDuration(*v, what + ".interval", false)) {
      if (d->count() < 10)
        ctx.error(posOf(*v), what + ".interval: must be at least 10ms");
      else
        h.interval = *d;
    }
  }
  if (const auto* v = t->get("timeout")) {
    if (auto d = ctx.getDuration(*v, what + ".timeout", false)) h.timeout = *d;
  }
  if (const auto* v = t->get("healthy_threshold")) {
    if (auto i = ctx.getInt(*v, what + ".healthy_threshold", 1, 100))
      h.healthyThreshold = static_cast<uint32_t>(*i);
  }
  if (const auto* v = t->get("unhealthy_threshold")) {
    if (auto i = ctx.getInt(*v, what + ".unhealthy_threshold", 1, 100))
      h.unhealthyThreshold = static_cast<uint32_t>(*i);
  }
  if (const auto* v = t->get("expect_status")) {
    if (auto s = ctx.getString(*v, what + ".expect_status")) {
      // "200", "200-399"
      int lo = 0, hi = 0;
      char dash = 0, extra = 0;
      int got = std::sscanf(s->c_str(), "%d%c%d%c", &lo, &dash, &hi, &extra);
      if (got == 1) hi = lo;
      bool ok = (got == 1 || (got == 3 && dash == '-')) && lo >= 100 && hi <= 599 && lo <= hi &&
                s->find_first_of(" +") == std::string::npos;
      if (!ok)
        ctx.error(posOf(*v), what +
                                 ".expect_status: expected a status or a range such as "
                                 "\"200-399\", got '" +
                                 *s + "'");
      else {
        h.expectStatusLo = lo;
        h.expectStatusHi = hi;
      }
    }
  }
  if (h.timeout > h.interval)
    ctx.warn(h.pos, what +
                        ": timeout is longer than interval; checks will not overlap, so the "
                        "effective interval grows");
}

void loadOutlier(LoadContext& ctx, const toml::node& n, const std::string& what, OutlierConfig& o) {
  const auto* t = ctx.tableOf(n, what);
  if (t == nullptr) return;
  ctx.checkKeys(*t, {"consecutive_failures", "ejection_time"}, {}, "in [" + what + "]");
  o.enabled = true;
  o.pos = posOf(n);
  if (const auto* v = t->get("consecutive_failures")) {
    if (auto i = ctx.getInt(*v, what + ".consecutive_failures", 1, 1000))
      o.consecutiveFailures = static_cast<uint32_t>(*i);
  }
  if (const auto* v = t->get("ejection_time")) {
    if (auto d = ctx.getDuration(*v, what + ".ejection_time", false)) o.ejectionTime = *d;
  }
}

// hash_key, max_connections, resolve_interval, [pool.X.health], [pool.X.outlier].
void loadPoolBalancing(LoadContext& ctx, const toml::table& t, const std::string& what,
                       PoolConfig& pc) {
  if (const auto* v = t.get("hash_key")) loadHashKey(ctx, *v, what, pc);
  if (const auto* v = t.get("max_connections")) {
    if (auto m = ctx.getInt(*v, what + ".max_connections", 0, 1000000))
      pc.maxConnections = static_cast<uint32_t>(*m);
  }
  if (const auto* v = t.get("resolve_interval")) {
    if (auto d = ctx.getDuration(*v, what + ".resolve_interval", false)) {
      if (d->count() < 100)
        ctx.error(posOf(*v), what + ".resolve_interval: must be at least 100ms");
      else
        pc.resolveInterval = *d;
    }
  }
  if (const auto* v = t.get("health")) loadHealth(ctx, *v, what + ".health", pc.health);
  if (const auto* v = t.get("outlier")) loadOutlier(ctx, *v, what + ".outlier", pc.outlier);
}

void loadBackend(LoadContext& ctx, FirstSeen<SourcePos>& seen, const toml::node& el,
                 const std::string& bw, PoolConfig& pc) {
  const auto* t = el.as_table();
  if (t == nullptr) {
    ctx.error(posOf(el),
              bw + ": expected a table like { address = \"host:port\" }, got " + typeName(el));
    return;
  }
  ctx.checkKeys(*t, {"address", "weight"}, {}, "in " + bw);
  BackendConfig bc;
  bc.pos = posOf(el);
  if (const auto* v = ctx.required(*t, "address", bc.pos, bw)) {
    if (auto s = ctx.getString(*v, bw + ".address")) {
      std::string err;
      if (!parseHostPort(*s, bc.hostPort, err)) {
        ctx.error(posOf(*v), bw + ".address: " + err);
      } else if (const SourcePos* first = seen.claim(formatHostPort(bc.hostPort), posOf(*v))) {
        ctx.error(posOf(*v), bw + ".address: duplicate backend '" + *s + "' (first at " +
                                 lineRef(*first) + ")");
      }
      bc.address = *s;
    }
  }
  if (const auto* v = t->get("weight")) {
    if (auto w = ctx.getInt(*v, bw + ".weight", 1, 1000)) bc.weight = static_cast<uint32_t>(*w);
  }
  pc.backends.push_back(std::move(bc));
}

void loadBackends(LoadContext& ctx, const toml::node& n, const std::string& poolWhat,
                  PoolConfig& pc) {
  std::string what = poolWhat + ".backends";
  const auto* arr = n.as_array();
  if (arr == nullptr) {
    ctx.error(posOf(n), what + ": expected an array of { address = \"host:port\" } tables, got " +
                            typeName(n));
    return;
  }
  if (arr->empty()) {
    ctx.error(posOf(n), what + ": must not be empty");
    return;
  }
  // The admin API names backends by address, so two equal addresses would be ambiguous.
  FirstSeen<SourcePos> seen;
  for (size_t i = 0; i < arr->size(); ++i)
    loadBackend(ctx, seen, (*arr)[i], what + "[" + std::to_string(i) + "]", pc);
}

void loadBalance(LoadContext& ctx, const toml::node& v, const std::string& what, PoolConfig& pc) {
  auto s = ctx.getString(v, what + ".balance");
  if (!s) return;
  if (*s == "round_robin") {
    pc.balance = Balance::RoundRobin;
  } else if (*s == "least_conn") {
    pc.balance = Balance::LeastConn;
  } else if (*s == "p2c") {
    pc.balance = Balance::P2c;
  } else if (*s == "hash") {
    pc.balance = Balance::Hash;
  } else {
    ctx.error(posOf(v), what +
                            ".balance: expected \"round_robin\", \"least_conn\", "
                            "\"p2c\" or \"hash\", got '" +
                            *s + "'");
  }
}

void loadPool(LoadContext& ctx, const std::string& name, const toml::node& pn,
              const toml::table& t) {
  std::string what = "pool." + name;
  ctx.checkKeys(t,
                {"backends", "balance", "connect_timeout", "response_timeout", "idle_timeout",
                 "retries", "tls", "tls_verify", "tls_ca", "tls_server_name", "hash_key",
                 "max_connections", "resolve_interval", "health", "outlier"},
                {}, "in [pool." + name + "]");
  PoolConfig pc;
  pc.name = name;
  pc.pos = posOf(pn);
  if (const auto* v = ctx.required(t, "backends", pc.pos, what)) loadBackends(ctx, *v, what, pc);
  if (const auto* v = t.get("balance")) loadBalance(ctx, *v, what, pc);
  loadPoolBalancing(ctx, t, what, pc);
  if (const auto* v = t.get("connect_timeout")) {
    if (auto d = ctx.getDuration(*v, what + ".connect_timeout", false)) pc.connectTimeout = *d;
  }
  if (const auto* v = t.get("response_timeout")) {
    if (auto d = ctx.getDuration(*v, what + ".response_timeout", false)) pc.responseTimeout = *d;
  }
  if (const auto* v = t.get("idle_timeout")) {
    if (auto d = ctx.getDuration(*v, what + ".idle_timeout", false)) pc.idleTimeout = *d;
  }
  if (const auto* v = t.get("retries")) {
    if (auto r = ctx.getInt(*v, what + ".retries", 0, 10)) pc.retries = static_cast<uint32_t>(*r);
  }
  loadPoolTls(ctx, t, what, pc);
  ctx.config().pools.push_back(std::move(pc));
}

}  // namespace

void loadPools(LoadContext& ctx, const toml::node& n) {
  forEachNamedTable(ctx, n, "pool", "pools",
                    [&](const std::string& name, const toml::node& pn, const toml::table* t) {
                      // Remember the name even if the pool is invalid, so routes using it do
                      // not get a second, misleading "no such pool" error.
                      ctx.poolNames.emplace(name, posOf(pn));
                      if (t != nullptr) loadPool(ctx, name, pn, *t);
                    });
  sortByPosition(ctx.config().pools);
}

}  // namespace sluice::config
