// upstream blocks and proxy_pass targets -> [pool.NAME]. A pool also carries what nginx sets
// per location (timeouts, retries, TLS to the backend), so one upstream used with different
// settings becomes one pool per combination.
#include <algorithm>

#include "config/nginx/converter.h"

namespace sluice::config::nginx {

namespace {

std::string poolName(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')
      out.push_back(c);
    else if (!out.empty() && out.back() != '-')
      out.push_back('-');
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  while (!out.empty() && out.front() == '-') out.erase(out.begin());
  return out.empty() ? "backend" : out;
}

bool sameSettings(const PoolOut& a, const PoolOut& b) {
  auto backends = [](const PoolOut& p) {
    std::string s;
    for (const auto& be : p.backends)
      s += be.address + "/" + std::to_string(be.weight) + "/" + be.disabled + ";";
    return s;
  };
  return backends(a) == backends(b) && a.balance == b.balance && a.hashKey == b.hashKey &&
         a.connectMs == b.connectMs && a.responseMs == b.responseMs && a.idleMs == b.idleMs &&
         a.retries == b.retries && a.maxConnections == b.maxConnections &&
         a.outlierFailures == b.outlierFailures && a.outlierMs == b.outlierMs && a.tls == b.tls &&
         a.tlsVerify == b.tlsVerify && a.tlsCa == b.tlsCa && a.tlsServerName == b.tlsServerName;
}

}  // namespace

void Converter::upstream(const Directive& d) {
  if (d.args.size() != 1) {
    tracker_.skipBlock(d, "expected upstream NAME { ... }");
    return;
  }
  UpstreamInfo info;
  info.d = &d;
  PoolOut& p = info.pool;
  p.name = poolName(d.arg(0));
  p.comments.push_back(from(d));
  std::optional<uint64_t> maxFails;
  std::optional<int64_t> failTimeout;
  const Directive* failsAt = nullptr;
  std::optional<uint64_t> maxConns;
  bool maxConnsMixed = false;
  for (const Directive& c : d.children) {
    const std::string& n = c.name;
    if (n == "server") {
      if (c.args.empty()) {
        tracker_.skip(c, "no address");
        continue;
      }
      if (c.arg(0).starts_with("unix:")) {
        tracker_.skip(c, "Sluice connects to backends over TCP only");
        continue;
      }
      std::string err;
      BackendOut be;
      be.address = parseAuthority(c.arg(0), 80, err);
      if (be.address.empty()) {
        tracker_.skip(c, err);
        continue;
      }
      std::vector<std::string> diffs;
      std::optional<uint64_t> fails;
      std::optional<int64_t> timeout;
      std::optional<uint64_t> conns;
      for (size_t i = 1; i < c.args.size(); ++i) {
        const std::string& a = c.arg(i);
        auto num = [&](size_t from) { return parseSize(a.substr(from)); };
        if (a.starts_with("weight=")) {
          auto w = num(7);
          if (!w || *w == 0 || a.find_first_not_of("0123456789", 7) != std::string::npos) {
            diffs.push_back("invalid " + a);
          } else {
            be.weight = uint32_t(std::min<uint64_t>(*w, 1000));
            if (*w > 1000) diffs.push_back("Sluice's weights go up to 1000");
          }
        } else if (a.starts_with("max_fails=")) {
          fails = num(10);
        } else if (a.starts_with("fail_timeout=")) {
          timeout = parseTimeMs(a.substr(13));
        } else if (a.starts_with("max_conns=")) {
          conns = num(10);
        } else if (a == "backup") {
          be.disabled = "backup server: Sluice has no backup servers";
          diffs.push_back(
              "Sluice has no backup servers: this one is left out (written as a "
              "comment); when every other server fails, requests get 503 instead");
        } else if (a == "down") {
          be.disabled = "marked down in nginx";
        } else if (a == "resolve") {
          continue;  // Sluice re-resolves host names every resolve_interval anyway
        } else {
          diffs.push_back(a + " is not converted");
        }
      }
      if (be.disabled.empty()) {
        ++info.usable;
        if (fails && *fails > 0 && !maxFails) {
          maxFails = fails;
          failTimeout = timeout;
          failsAt = &c;
        } else if ((fails && maxFails && *fails != *maxFails) ||
                   (timeout && failTimeout && *timeout != *failTimeout)) {
          diffs.push_back("Sluice ejects with one rule per pool: max_fails/fail_timeout of " +
                          display(failsAt->at) + " are used");
        }
        if (conns) {
          if (maxConns && *maxConns != *conns) maxConnsMixed = true;
          if (!maxConns) maxConns = conns;
        } else if (maxConns) {
          maxConnsMixed = true;
        }
      }
      for (const auto& other : p.backends)
        if (other.address == be.address) diffs.push_back("duplicate address, left out");
      if (diffs.empty() || diffs.back() != "duplicate address, left out") p.backends.push_back(be);
      tracker_.outcome(c, diffs);
    } else if (n == "least_conn") {
      p.balance = "least_conn";
      tracker_.converted(c);
    } else if (n == "ip_hash") {
      p.balance = "hash";
      p.hashKey = "ip";
      tracker_.differs(c,
                       "Sluice hashes the whole client address on a consistent ring: clients "
                       "stay on one backend, but not the one nginx chose");
    } else if (n == "hash" && !c.args.empty()) {
      const std::string& key = c.arg(0);
      std::string hk;
      if (key == "$remote_addr" || key == "$binary_remote_addr") {
        hk = "ip";
      } else if (key.starts_with("$http_") && key.size() > 6) {
        hk = "header:" + key.substr(6);
        std::replace(hk.begin(), hk.end(), '_', '-');
      } else if (key.starts_with("$cookie_") && key.size() > 8) {
        hk = "cookie:" + key.substr(8);
      }
      if (hk.empty()) {
        tracker_.skip(c, "Sluice hashes the client IP, a header or a cookie; '" + key +
                             "' is not converted and requests are balanced round robin");
        continue;
      }
      p.balance = "hash";
      p.hashKey = hk;
      if (c.args.size() == 2 && c.arg(1) == "consistent")
        tracker_.differs(c,
                         "the same keys stay together, but the ring is Sluice's own (160 "
                         "points per weight), so a key may land on another backend than "
                         "with nginx");
      else
        tracker_.differs(c,
                         "Sluice's hash is always consistent: keys map to other backends "
                         "than nginx's modulo hash");
    } else if (n == "random") {
      if (c.args.size() >= 1 && c.arg(0) == "two" &&
          (c.args.size() == 1 || c.arg(1) == "least_conn")) {
        p.balance = "p2c";
        tracker_.converted(c);
      } else {
        tracker_.differs(c,
                         "Sluice has no plain random balancing: smooth weighted round robin "
                         "spreads the same shares");
      }
    } else if (n == "keepalive") {
      tracker_.converted(c);  // Sluice always keeps idle upstream connections per worker
    } else if (n == "keepalive_timeout" && c.args.size() == 1) {
      if (auto ms = parseTimeMs(c.arg(0)); ms && *ms > 0) {
        p.idleMs = *ms;
        p.keyComments["idle_timeout"] = "keepalive_timeout, " + display(c.at);
        tracker_.converted(c);
      } else {
        tracker_.skip(c, "invalid time");
      }
    } else if (n == "keepalive_requests" || n == "keepalive_time" || n == "zone") {
      tracker_.noEffect(c,
                        "Sluice manages its upstream connections and shares backend state "
                        "between workers itself");
    } else {
      tracker_.skip(c, "not converted (Sluice has no equivalent)");
    }
  }
  if (maxFails) {
    p.outlierFailures = *maxFails;
    p.outlierMs = failTimeout.value_or(10000);
    p.keyComments["outlier"] = "max_fails / fail_timeout, " + display(failsAt->at);
    tracker_.differs(*failsAt,
                     "Sluice ejects a backend after max_fails failures in a row (5xx "
                     "answers count too) for fail_timeout, longer after repeated "
                     "ejections; nginx counts failures within fail_timeout");
  }
  if (maxConns && !maxConnsMixed && *maxConns > 0) p.maxConnections = *maxConns;
  if (maxConnsMixed)
    tracker_.differs(d,
                     "servers with different max_conns: Sluice has one max_connections per "
                     "pool, not converted");
  if (info.usable == 0) {
    tracker_.skip(d, "no server that is neither backup nor down: nothing to send requests to");
  }
  upstreams_[d.arg(0)] = std::move(info);
}

std::string Converter::poolFor(const Directive& pp, const Scope& sc, std::string& uri,
                               bool& hasUri) {
  if (pp.args.size() != 1) {
    tracker_.skip(pp, "expected one URL");
    return "";
  }
  const std::string& url = pp.arg(0);
  bool tls = false;
  std::string rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
    tls = true;
  } else {
    tracker_.skip(pp, "only http:// and https:// backends are converted");
    return "";
  }
  if (rest.find('$') != std::string::npos) {
    tracker_.skip(pp,
                  "a proxy_pass with variables chooses its backend per request; Sluice's "
                  "pools are fixed");
    return "";
  }
  if (rest.starts_with("unix:")) {
    tracker_.skip(pp, "Sluice connects to backends over TCP only");
    return "";
  }
  const size_t slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  hasUri = slash != std::string::npos;
  uri = hasUri ? rest.substr(slash) : "";
  PoolOut wanted;
  std::string base;
  auto up = upstreams_.find(authority);
  if (up != upstreams_.end()) {
    if (up->second.usable == 0) {
      tracker_.skip(pp, "the upstream " + authority + " has no usable server");
      return "";
    }
    wanted = up->second.pool;
    base = wanted.name;
    tracker_.converted(*up->second.d);
  } else {
    std::string err;
    const std::string addr = parseAuthority(authority, tls ? 443 : 80, err);
    if (addr.empty()) {
      tracker_.skip(pp, err);
      return "";
    }
    BackendOut be;
    be.address = addr;
    wanted.backends.push_back(be);
    base = poolName(addr);
    wanted.name = base;
    wanted.comments.push_back(from(pp));
  }
  size_t usable = 0;
  for (const auto& be : wanted.backends) usable += be.disabled.empty() ? 1 : 0;
  // proxy_connect_timeout / proxy_read_timeout (nginx: 60s each).
  if (const Directive* d = sc.last("proxy_connect_timeout")) {
    if (auto ms = d->args.size() == 1 ? parseTimeMs(d->arg(0)) : std::nullopt; ms && *ms > 0) {
      wanted.connectMs = *ms;
      wanted.keyComments["connect_timeout"] = "proxy_connect_timeout, " + display(d->at);
      tracker_.converted(*d);
    } else {
      tracker_.skip(*d, "invalid time");
    }
  }
  wanted.responseMs = 60000;
  wanted.keyComments["response_timeout"] = "nginx's default proxy_read_timeout";
  if (const Directive* d = sc.last("proxy_read_timeout")) {
    if (auto ms = d->args.size() == 1 ? parseTimeMs(d->arg(0)) : std::nullopt; ms && *ms > 0) {
      wanted.responseMs = *ms;
      wanted.keyComments["response_timeout"] = "proxy_read_timeout, " + display(d->at);
      tracker_.converted(*d);
    } else {
      tracker_.skip(*d, "invalid time");
    }
  }
  // Retries: nginx tries every server on errors and timeouts (proxy_next_upstream error
  // timeout, proxy_next_upstream_tries 0).
  int retries = int(std::min<size_t>(usable > 0 ? usable - 1 : 0, 10));
  std::string retryWhy = usable > 1 ? "nginx tries every server on an error or timeout"
                                    : "one server: nothing else to try";
  if (const Directive* d = sc.last("proxy_next_upstream")) {
    bool off = false, statuses = false;
    for (const Arg& a : d->args) {
      off = off || a.text == "off";
      statuses = statuses || a.text.starts_with("http_") || a.text == "invalid_header";
    }
    if (off) {
      retries = 0;
      retryWhy = "proxy_next_upstream off, " + display(d->at);
      tracker_.converted(*d);
    } else if (statuses) {
      tracker_.differs(*d,
                       "Sluice retries connect failures and resets, never an answer with a "
                       "status");
    } else {
      tracker_.converted(*d);
    }
  }
  if (const Directive* d = sc.last("proxy_next_upstream_tries")) {
    auto n = d->args.size() == 1 ? parseSize(d->arg(0)) : std::nullopt;
    if (n && *n > 0) {
      retries = int(std::min<uint64_t>(*n - 1, uint64_t(retries)));
      retryWhy = "proxy_next_upstream_tries, " + display(d->at);
    }
    tracker_.converted(*d);
  }
  if (retries != 1) {
    wanted.retries = retries;
    wanted.keyComments["retries"] = retryWhy;
  }
  if (tls) {
    wanted.tls = true;
    const Directive* verify = sc.last("proxy_ssl_verify");
    if (verify != nullptr && verify->args.size() == 1 && verify->arg(0) == "on") {
      wanted.tlsVerify = true;
      tracker_.converted(*verify);
      if (const Directive* ca = sc.last("proxy_ssl_trusted_certificate")) {
        if (ca->args.size() == 1) wanted.tlsCa = resolvePath(ca->arg(0), true);
        tracker_.converted(*ca);
      }
    } else {
      wanted.tlsVerify = false;
      wanted.keyComments["tls_verify"] =
          "nginx's default proxy_ssl_verify off: set true with tls_ca to check the backend";
      if (verify != nullptr) tracker_.converted(*verify);
    }
    if (const Directive* n = sc.last("proxy_ssl_name")) {
      if (n->args.size() == 1 && n->arg(0).find('$') == std::string::npos) {
        wanted.tlsServerName = n->arg(0);
        tracker_.converted(*n);
      } else {
        tracker_.skip(*n, "only a fixed name is converted");
      }
    }
    if (const Directive* n = sc.last("proxy_ssl_server_name")) tracker_.converted(*n);
  }
  if (const Directive* d = sc.last("proxy_redirect")) {
    if (d->args.size() == 1 && (d->arg(0) == "off" || d->arg(0) == "default"))
      tracker_.noEffect(*d, "Sluice passes the backend's Location header through unchanged");
    else
      tracker_.skip(*d, "Sluice passes the backend's Location header through unchanged");
  }
  if (const Directive* d = sc.last("proxy_http_version")) {
    if (d->args.size() == 1 && d->arg(0) == "1.1")
      tracker_.converted(*d);
    else
      tracker_.differs(*d, "Sluice always talks HTTP/1.1 to backends, with keep-alive");
  }
  return poolVariant(base, wanted);
}

std::string Converter::poolVariant(const std::string& base, const PoolOut& wanted) {
  std::string firstName;
  for (const std::string& name : poolOrder_) {
    PoolOut& p = pools_[name];
    if (p.base != base) continue;
    if (firstName.empty()) firstName = name;
    if (sameSettings(p, wanted)) return name;
  }
  PoolOut p = wanted;
  p.base = base;
  std::string name = base;
  for (int n = 2; pools_.count(name) != 0; ++n) name = base + "-" + std::to_string(n);
  p.name = name;
  if (!firstName.empty()) {
    const PoolOut& first = pools_[firstName];
    std::string what;
    auto differs = [&](bool d, const std::string& key) {
      if (d) what += (what.empty() ? "" : ", ") + key;
    };
    differs(first.connectMs != p.connectMs, "connect_timeout");
    differs(first.responseMs != p.responseMs, "response_timeout");
    differs(first.retries != p.retries, "retries");
    differs(first.tls != p.tls || first.tlsVerify != p.tlsVerify || first.tlsCa != p.tlsCa ||
                first.tlsServerName != p.tlsServerName,
            "TLS settings");
    p.comments.push_back("the backends of pool " + firstName + " with another " +
                         (what.empty() ? std::string("setting") : what) +
                         " (nginx sets it per location)");
  }
  pools_[name] = p;
  poolOrder_.push_back(name);
  return name;
}

}  // namespace sluice::config::nginx
