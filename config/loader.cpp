// TOML -> Config (see loader.h). The Loader walks the parsed toml++ tree section by section,
// records every problem with its position and keeps going, so one `sluice -t` run shows the
// operator everything that is wrong with the file.
#include "config/loader.h"

#include <fcntl.h>
#include <unistd.h>

#include <toml++/toml.h>

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "config/redis_url.h"
#include "config/units.h"
#include "middleware/jwt.h"
#include "tls/tls_context.h"

namespace sluice::config {

std::string ConfigError::str() const {
  if (line <= 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + message;
}

namespace {

using Keys = std::initializer_list<std::string_view>;

SourcePos toPos(const toml::source_region& r) {
  // Implicitly created tables have no position; point at the top of the file instead of 0:0
  // so every message keeps the FILE:LINE:COL shape.
  if (r.begin.line == 0) return {1, 1};
  return {static_cast<int>(r.begin.line), static_cast<int>(r.begin.column)};
}

SourcePos posOf(const toml::node& n) {
  return toPos(n.source());
}

std::string typeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      return "a date/time";
    default:
      return "nothing";
  }
}

bool contains(Keys keys, std::string_view key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

std::string lineRef(SourcePos p) {
  return "line " + std::to_string(p.line);
}

bool isValidPoolName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// An HTTP method token (RFC 9110 tchar) with no lower-case letters: methods are
// case-sensitive and every standard one is upper-case, so "get" is almost surely a typo.
bool isUpperToken(std::string_view m) {
  if (m.empty()) return false;
  static constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  for (char c : m) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              kSpecials.find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

// Route hosts: "api.example.com" or "*.example.com", no port. Lower-cased in place because
// Host matching is case-insensitive.
bool normalizeRouteHost(std::string& host) {
  for (char& c : host) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  std::string_view rest = host;
  if (rest.starts_with("*.")) rest.remove_prefix(2);
  if (rest.empty() || rest.front() == '.' || rest.find("..") != std::string_view::npos) {
    return false;
  }
  for (char c : rest) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

bool hasSpaceOrControl(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f) return true;
  }
  return false;
}

// Identity of a bound address for duplicate detection: family + address bytes + port, so
// "[::]:80" and "[0::0]:80" compare equal.
std::string listenKey(const HostPort& hp) {
  sockaddr_storage ss;
  socklen_t len = 0;
  if (!toSockaddr(hp, ss, len)) return formatHostPort(hp);
  return std::string(reinterpret_cast<const char*>(&ss), len);
}

class Loader {
 public:
  explicit Loader(std::string file, bool checkNames = false)
      : file_(std::move(file)), checkNames_(checkNames) {}

  LoadResult run(std::string_view text) {
    try {
      toml::table root;
      try {
        root = toml::parse(text, std::string_view(file_));
      } catch (const toml::parse_error& e) {
        error(toPos(e.source()), "TOML syntax error: " + std::string(e.description()));
        return finish();
      }
      load(root);
    } catch (const std::exception& e) {
      error({0, 0}, std::string("internal error while loading the config: ") + e.what());
    } catch (...) {
      error({0, 0}, "internal error while loading the config");
    }
    return finish();
  }

 private:
  void error(SourcePos p, std::string msg) {
    errors_.push_back({file_, p.line, p.col, std::move(msg)});
  }
  void warn(SourcePos p, std::string msg) {
    warnings_.push_back({file_, p.line, p.col, std::move(msg)});
  }

  LoadResult finish() {
    auto byPos = [](const ConfigError& a, const ConfigError& b) {
      return a.line != b.line ? a.line < b.line : a.col < b.col;
    };
    std::stable_sort(errors_.begin(), errors_.end(), byPos);
    std::stable_sort(warnings_.begin(), warnings_.end(), byPos);
    LoadResult r;
    if (errors_.empty()) {
      cfg_.file = file_;
      r.config = std::move(cfg_);
    }
    r.errors = std::move(errors_);
    r.warnings = std::move(warnings_);
    return r;
  }

  // Reports keys of `t` that are not `known`. `later` are keys product.md documents but this
  // version does not implement: they are still errors (silently ignoring a rate limit or a
  // TLS block would be worse), with a hint that says why.
  void checkKeys(const toml::table& t, Keys known, Keys later, const std::string& where) {
    for (auto&& kv : t) {
      std::string_view key = kv.first.str();
      if (contains(known, key)) continue;
      std::string msg = "unknown key '" + std::string(key) + "' " + where;
      if (contains(later, key)) msg += " (not supported in this version)";
      error(toPos(kv.first.source()), std::move(msg));
    }
  }

  std::optional<std::string> getString(const toml::node& n, const std::string& what) {
    const auto* s = n.as_string();
    if (s == nullptr) {
      error(posOf(n), what + ": expected a string, got " + typeName(n));
      return std::nullopt;
    }
    std::string out, err;
    if (!interpolateEnv(s->get(), out, err)) {
      error(posOf(n), what + ": " + err);
      return std::nullopt;
    }
    return out;
  }

  std::optional<int64_t> getInt(const toml::node& n, const std::string& what, int64_t lo,
                                int64_t hi) {
    const auto* i = n.as_integer();
    if (i == nullptr) {
      error(posOf(n), what + ": expected an integer, got " + typeName(n));
      return std::nullopt;
    }
    int64_t v = i->get();
    if (v < lo || v > hi) {
      error(posOf(n), what + ": must be between " + std::to_string(lo) + " and " +
                          std::to_string(hi) + ", got " + std::to_string(v));
      return std::nullopt;
    }
    return v;
  }

  std::optional<bool> getBool(const toml::node& n, const std::string& what) {
    const auto* b = n.as_boolean();
    if (b == nullptr) {
      error(posOf(n), what + ": expected a boolean (true or false), got " + typeName(n));
      return std::nullopt;
    }
    return b->get();
  }

  std::optional<Duration> getDuration(const toml::node& n, const std::string& what,
                                      bool allowZero) {
    if (!n.is_string()) {
      // A bare number is ambiguous (seconds? milliseconds?), so durations are strings only.
      error(posOf(n), what + ": expected a duration string such as \"2s\", got " + typeName(n));
      return std::nullopt;
    }
    auto s = getString(n, what);
    if (!s) return std::nullopt;
    auto d = parseDuration(*s);
    if (!d) {
      error(posOf(n), what + ": invalid duration '" + *s +
                          "' (expected e.g. \"250ms\", \"2s\", \"5m\", \"1h\")");
      return std::nullopt;
    }
    if (!allowZero && d->count() == 0) {
      error(posOf(n), what + ": must be greater than 0");
      return std::nullopt;
    }
    return d;
  }

  // Sizes are strings ("16k"); a plain non-negative integer is also taken as bytes, since
  // `max_body_size = 0` is the natural way to write "unlimited".
  std::optional<uint64_t> getSize(const toml::node& n, const std::string& what) {
    if (const auto* i = n.as_integer()) {
      if (i->get() < 0) {
        error(posOf(n), what + ": must not be negative");
        return std::nullopt;
      }
      return static_cast<uint64_t>(i->get());
    }
    if (!n.is_string()) {
      error(posOf(n), what + ": expected a size string such as \"16k\", got " + typeName(n));
      return std::nullopt;
    }
    auto s = getString(n, what);
    if (!s) return std::nullopt;
    auto v = parseSize(*s);
    if (!v) {
      error(posOf(n),
            what + ": invalid size '" + *s + "' (expected e.g. \"512\", \"16k\", \"1m\")");
    }
    return v;
  }

  // A listen address: host must be an IP literal because it is bound, not resolved.
  bool getListen(const toml::node& n, const std::string& what, HostPort& out) {
    auto s = getString(n, what);
    if (!s) return false;
    std::string err;
    if (!parseHostPort(*s, out, err)) {
      error(posOf(n), what + ": " + err);
      return false;
    }
    if (!isIpLiteral(out.host)) {
      error(posOf(n), what +
                          ": host must be an IP address (e.g. \"0.0.0.0:8080\" or "
                          "\"[::]:8080\"), got '" +
                          out.host + "'");
      return false;
    }
    return true;
  }

  void claimListenAddress(const HostPort& hp, const std::string& owner, SourcePos p,
                          const std::string& what) {
    auto [it, inserted] = listenAddrs_.emplace(listenKey(hp), std::make_pair(owner, p));
    if (!inserted) {
      error(p, what + ": address " + formatHostPort(hp) + " is already used by " +
                   it->second.first + " (" + lineRef(it->second.second) + ")");
    }
  }

  void load(const toml::table& root) {
    checkKeys(root, {"server", "admin", "log", "listener", "pool", "route", "redis", "middleware"},
              {}, "at the top level");
    if (const auto* n = root.get("server")) loadServer(*n);
    if (const auto* n = root.get("admin")) loadAdmin(*n);
    if (const auto* n = root.get("log")) loadLog(*n);
    const auto* listeners = root.get("listener");
    if (listeners != nullptr) loadListeners(*listeners);
    if (listeners == nullptr || (listeners->is_array() && listeners->as_array()->empty())) {
      error({1, 1}, "at least one [[listener]] is required");
    }
    if (const auto* n = root.get("pool")) loadPools(*n);
    if (const auto* n = root.get("redis")) loadRedis(*n);
    if (const auto* n = root.get("middleware")) loadMiddleware(*n);
    if (const auto* n = root.get("route")) loadRoutes(*n);
    finalChecks(root);
  }

  const toml::table* sectionTable(const toml::node& n, const std::string& name) {
    const auto* t = n.as_table();
    if (t == nullptr) {
      error(posOf(n), name + ": expected a table ([" + name + "]), got " + typeName(n));
    }
    return t;
  }

  void loadServer(const toml::node& n) {
    const auto* t = sectionTable(n, "server");
    if (t == nullptr) return;
    checkKeys(*t,
              {"workers", "pid_file", "shutdown_timeout", "max_header_size", "max_body_size",
               "client_header_timeout", "client_idle_timeout", "trusted_proxies"},
              {}, "in [server]");
    ServerSettings& s = cfg_.server;
    if (const auto* v = t->get("workers")) loadWorkers(*v);
    if (const auto* v = t->get("pid_file")) {
      if (auto str = getString(*v, "server.pid_file")) s.pidFile = *str;
    }
    if (const auto* v = t->get("shutdown_timeout")) {
      // 0 is meaningful here: exit without waiting for in-flight requests.
      if (auto d = getDuration(*v, "server.shutdown_timeout", true)) s.shutdownTimeout = *d;
    }
    if (const auto* v = t->get("max_header_size")) {
      if (auto sz = getSize(*v, "server.max_header_size")) {
        if (*sz < 1024 || *sz > 1024 * 1024) {
          error(posOf(*v), "server.max_header_size: must be between 1k and 1m");
        } else {
          s.maxHeaderSize = *sz;
        }
      }
    }
    if (const auto* v = t->get("max_body_size")) {
      if (auto sz = getSize(*v, "server.max_body_size")) s.maxBodySize = *sz;
    }
    if (const auto* v = t->get("client_header_timeout")) {
      if (auto d = getDuration(*v, "server.client_header_timeout", false)) {
        s.clientHeaderTimeout = *d;
      }
    }
    if (const auto* v = t->get("client_idle_timeout")) {
      if (auto d = getDuration(*v, "server.client_idle_timeout", false)) s.clientIdleTimeout = *d;
    }
    if (const auto* v = t->get("trusted_proxies")) {
      const auto* arr = v->as_array();
      if (arr == nullptr) {
        error(posOf(*v),
              "server.trusted_proxies: expected an array of CIDR strings, got " + typeName(*v));
        return;
      }
      for (size_t i = 0; i < arr->size(); ++i) {
        std::string what = "server.trusted_proxies[" + std::to_string(i) + "]";
        auto str = getString((*arr)[i], what);
        if (!str) continue;
        Cidr c;
        if (!parseCidr(*str, c)) {
          error(posOf((*arr)[i]), what + ": invalid CIDR '" + *str +
                                      "' (expected e.g. \"10.0.0.0/8\" or \"::1/128\")");
          continue;
        }
        s.trustedProxies.push_back(c);
      }
    }
  }

  void loadWorkers(const toml::node& v) {
    static const std::string kWhat = "server.workers";
    static const std::string kExpect = "expected \"auto\" or an integer between 1 and 256";
    if (v.is_integer()) {
      if (auto w = getInt(v, kWhat, 1, 256)) cfg_.server.workers = static_cast<unsigned>(*w);
      return;
    }
    if (!v.is_string()) {
      error(posOf(v), kWhat + ": " + kExpect + ", got " + typeName(v));
      return;
    }
    auto s = getString(v, kWhat);
    if (!s) return;
    if (*s == "auto") {
      cfg_.server.workers = 0;
      return;
    }
    // A numeric string is accepted so `workers = "${SLUICE_WORKERS:-auto}"` works.
    bool digitsOnly = !s->empty() && s->find_first_not_of("0123456789") == std::string::npos;
    auto n = digitsOnly ? parseSize(*s) : std::nullopt;  // digits only: a plain number
    if (!n || *n < 1 || *n > 256) {
      error(posOf(v), kWhat + ": " + kExpect + ", got '" + *s + "'");
      return;
    }
    cfg_.server.workers = static_cast<unsigned>(*n);
  }

  void loadAdmin(const toml::node& n) {
    const auto* t = sectionTable(n, "admin");
    if (t == nullptr) return;
    checkKeys(*t, {"listen", "token"}, {}, "in [admin]");
    AdminSettings& a = cfg_.admin;
    a.enabled = true;
    a.pos = posOf(n);
    if (const auto* v = t->get("listen")) {
      if (getListen(*v, "admin.listen", a.listen)) {
        claimListenAddress(a.listen, "[admin]", posOf(*v), "admin.listen");
      }
    } else {
      error(a.pos, "admin: missing required key 'listen'");
    }
    if (const auto* v = t->get("token")) {
      if (auto s = getString(*v, "admin.token")) a.token = *s;
    }
  }

  void loadLog(const toml::node& n) {
    const auto* t = sectionTable(n, "log");
    if (t == nullptr) return;
    checkKeys(*t, {"access", "format", "level"}, {}, "in [log]");
    LogSettings& l = cfg_.log;
    if (const auto* v = t->get("access")) {
      if (auto s = getString(*v, "log.access")) {
        if (s->empty()) {
          error(posOf(*v), "log.access: expected \"stdout\", \"off\" or a file path, got ''");
        } else {
          l.access = *s;
        }
      }
    }
    if (const auto* v = t->get("format")) {
      if (auto s = getString(*v, "log.format")) {
        if (*s == "json") {
          l.format = LogFormat::Json;
        } else if (*s == "combined") {
          l.format = LogFormat::Combined;
        } else {
          error(posOf(*v), "log.format: expected \"json\" or \"combined\", got '" + *s + "'");
        }
      }
    }
    if (const auto* v = t->get("level")) {
      if (auto s = getString(*v, "log.level")) {
        static const std::map<std::string, LogLevel, std::less<>> kLevels = {
            {"debug", LogLevel::Debug},
            {"info", LogLevel::Info},
            {"warn", LogLevel::Warn},
            {"error", LogLevel::Error}};
        if (auto it = kLevels.find(*s); it != kLevels.end()) {
          l.level = it->second;
        } else {
          error(posOf(*v),
                "log.level: expected \"debug\", \"info\", \"warn\" or \"error\", got '" + *s + "'");
        }
      }
    }
  }

  void loadListeners(const toml::node& n) {
    const auto* arr = n.as_array();
    if (arr == nullptr) {
      error(posOf(n), "listener: expected an array of tables ([[listener]]), got " + typeName(n));
      return;
    }
    std::map<std::string, SourcePos> names;
    for (size_t i = 0; i < arr->size(); ++i) {
      const toml::node& el = (*arr)[i];
      std::string what = "listener[" + std::to_string(i) + "]";
      const auto* t = el.as_table();
      if (t == nullptr) {
        error(posOf(el), what + ": expected a table, got " + typeName(el));
        continue;
      }
      checkKeys(*t, {"name", "listen", "redirect_https", "tls"}, {}, "in [[listener]]");
      ListenerConfig lc;
      lc.pos = posOf(el);
      if (const auto* v = t->get("name")) {
        if (auto s = getString(*v, what + ".name")) {
          lc.name = *s;
          if (s->empty()) {
            error(posOf(*v), what + ".name: must not be empty");
          } else if (auto [it, inserted] = names.emplace(*s, posOf(*v)); !inserted) {
            error(posOf(*v), what + ".name: duplicate listener name '" + *s + "' (first used at " +
                                 lineRef(it->second) + ")");
          }
        }
      } else {
        error(lc.pos, what + ": missing required key 'name'");
      }
      if (const auto* v = t->get("listen")) {
        if (getListen(*v, what + ".listen", lc.listen)) {
          std::string owner = lc.name.empty() ? what : "listener '" + lc.name + "'";
          claimListenAddress(lc.listen, owner, posOf(*v), what + ".listen");
        }
      } else {
        error(lc.pos, what + ": missing required key 'listen'");
      }
      if (const auto* v = t->get("redirect_https")) {
        if (auto s = getString(*v, what + ".redirect_https")) {
          if (s->find("{uri}") == std::string::npos && !s->starts_with("https://")) {
            error(posOf(*v), what +
                                 ".redirect_https: expected an https:// URL or a template "
                                 "containing {uri} (e.g. \"https://{host}{uri}\"), got '" +
                                 *s + "'");
          } else {
            lc.redirectHttps = *s;
          }
        }
      }
      if (const auto* v = t->get("tls")) loadListenerTls(*v, what + ".tls", lc.tls);
      if (lc.tls.enabled && !lc.redirectHttps.empty())
        warn(lc.pos, what + ": redirect_https on a TLS listener redirects HTTPS to itself");
      cfg_.listeners.push_back(std::move(lc));
    }
  }

  // Relative certificate paths are taken from the config file's directory.
  std::string resolvePath(const std::string& p) const {
    if (p.empty() || p[0] == '/') return p;
    size_t slash = file_.rfind('/');
    return slash == std::string::npos ? p : file_.substr(0, slash + 1) + p;
  }

  void loadListenerTls(const toml::node& n, const std::string& what, ListenerTls& tls) {
    const auto* t = n.as_table();
    if (t == nullptr) {
      error(posOf(n), what + ": expected a table ([listener.tls]), got " + typeName(n));
      return;
    }
    checkKeys(*t, {"certificates", "min_version", "alpn", "hsts", "session_tickets"}, {},
              "in [listener.tls]");
    tls.enabled = true;
    tls.pos = posOf(n);
    const auto* certs = t->get("certificates");
    const auto* arr = certs ? certs->as_array() : nullptr;
    if (certs == nullptr) {
      error(tls.pos, what + ": missing required key 'certificates'");
    } else if (arr == nullptr || arr->empty()) {
      error(posOf(*certs), what + ".certificates: expected a non-empty array of "
                                  "{ cert = \"...\", key = \"...\" } tables");
    } else {
      for (size_t i = 0; i < arr->size(); ++i) {
        std::string w = what + ".certificates[" + std::to_string(i) + "]";
        const auto* ct = (*arr)[i].as_table();
        if (ct == nullptr) {
          error(posOf((*arr)[i]), w + ": expected a table { cert = ..., key = ... }");
          continue;
        }
        checkKeys(*ct, {"cert", "key", "ocsp"}, {}, "in " + w);
        TlsCertificateConfig c;
        c.pos = posOf((*arr)[i]);
        if (const auto* v = ct->get("cert")) {
          if (auto s = getString(*v, w + ".cert")) c.cert = resolvePath(*s);
        } else {
          error(c.pos, w + ": missing required key 'cert'");
        }
        if (const auto* v = ct->get("key")) {
          if (auto s = getString(*v, w + ".key")) c.key = resolvePath(*s);
        } else {
          error(c.pos, w + ": missing required key 'key'");
        }
        if (const auto* v = ct->get("ocsp")) {
          if (auto s = getString(*v, w + ".ocsp")) c.ocsp = resolvePath(*s);
        }
        if (!c.cert.empty() && !c.key.empty()) {
          std::string err;
          if (!tls::checkCertificatePair(c.cert, c.key, err)) error(c.pos, w + ": " + err);
        }
        if (!c.ocsp.empty() && access(c.ocsp.c_str(), R_OK) != 0)
          error(c.pos, w + ".ocsp: cannot read " + c.ocsp);
        tls.certificates.push_back(std::move(c));
      }
    }
    if (const auto* v = t->get("min_version")) {
      if (auto s = getString(*v, what + ".min_version")) {
        if (*s == "1.2" || *s == "1.3")
          tls.minVersion = *s;
        else
          error(posOf(*v), what + ".min_version: expected \"1.2\" or \"1.3\", got '" + *s + "'");
      }
    }
    if (const auto* v = t->get("alpn")) {
      const auto* a = v->as_array();
      if (a == nullptr) {
        error(posOf(*v), what + ".alpn: expected an array like [\"http/1.1\"]");
      } else {
        tls.alpn.clear();
        for (size_t i = 0; i < a->size(); ++i) {
          auto s = getString((*a)[i], what + ".alpn[" + std::to_string(i) + "]");
          if (!s) continue;
          if (*s != "http/1.1" && *s != "http/1.0")
            error(posOf((*a)[i]), what + ".alpn: only \"http/1.1\" (and \"http/1.0\") can be "
                                         "served, got '" + *s + "'");
          else
            tls.alpn.push_back(*s);
        }
      }
    }
    if (const auto* v = t->get("hsts")) {
      if (auto s = getString(*v, what + ".hsts")) {
        if (!s->empty() && s->find("max-age=") == std::string::npos)
          error(posOf(*v), what + ".hsts: expected a Strict-Transport-Security value such as "
                                  "\"max-age=31536000\"");
        else if (s->find_first_of("\r\n") != std::string::npos)
          error(posOf(*v), what + ".hsts: must be one line");
        else
          tls.hsts = *s;
      }
    }
    if (const auto* v = t->get("session_tickets")) {
      if (auto b = getBool(*v, what + ".session_tickets")) tls.sessionTickets = *b;
    }
  }

  void loadPoolTls(const toml::table& t, const std::string& what, PoolConfig& pc) {
    if (const auto* v = t.get("tls")) {
      if (auto b = getBool(*v, what + ".tls")) pc.tls = *b;
    }
    if (const auto* v = t.get("tls_verify")) {
      if (auto b = getBool(*v, what + ".tls_verify")) pc.tlsVerify = *b;
    }
    if (const auto* v = t.get("tls_ca")) {
      if (auto s = getString(*v, what + ".tls_ca")) {
        pc.tlsCa = resolvePath(*s);
        if (access(pc.tlsCa.c_str(), R_OK) != 0)
          error(posOf(*v), what + ".tls_ca: cannot read " + pc.tlsCa);
      }
    }
    if (const auto* v = t.get("tls_server_name")) {
      if (auto s = getString(*v, what + ".tls_server_name")) pc.tlsServerName = *s;
    }
    if (!pc.tls && (t.get("tls_verify") || t.get("tls_ca") || t.get("tls_server_name")))
      warn(pc.pos, what + ": tls_* settings have no effect without tls = true");
  }

  // hash_key, max_connections, resolve_interval, [pool.X.health], [pool.X.outlier].
  void loadPoolBalancing(const toml::table& t, const std::string& what, PoolConfig& pc) {
    if (const auto* v = t.get("hash_key")) {
      if (auto s = getString(*v, what + ".hash_key")) {
        std::string_view k = *s;
        auto named = [&](std::string_view prefix, HashKey::Kind kind) {
          std::string_view rest = k.substr(prefix.size());
          if (rest.empty() || hasSpaceOrControl(rest)) {
            error(posOf(*v), what + ".hash_key: '" + *s + "' needs a name after '" +
                                 std::string(prefix) + "'");
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
          error(posOf(*v), what + ".hash_key: expected \"ip\", \"header:NAME\" or "
                                  "\"cookie:NAME\", got '" + *s + "'");
        if (pc.balance != Balance::Hash)
          warn(posOf(*v), what + ".hash_key: has no effect unless balance = \"hash\"");
      }
    }
    if (const auto* v = t.get("max_connections")) {
      if (auto m = getInt(*v, what + ".max_connections", 0, 1000000))
        pc.maxConnections = static_cast<uint32_t>(*m);
    }
    if (const auto* v = t.get("resolve_interval")) {
      if (auto d = getDuration(*v, what + ".resolve_interval", false)) {
        if (d->count() < 100)
          error(posOf(*v), what + ".resolve_interval: must be at least 100ms");
        else
          pc.resolveInterval = *d;
      }
    }
    if (const auto* v = t.get("health")) loadHealth(*v, what + ".health", pc.health);
    if (const auto* v = t.get("outlier")) loadOutlier(*v, what + ".outlier", pc.outlier);
  }

  void loadHealth(const toml::node& n, const std::string& what, HealthCheckConfig& h) {
    const auto* t = n.as_table();
    if (t == nullptr) {
      error(posOf(n), what + ": expected a table ([" + what + "]), got " + typeName(n));
      return;
    }
    checkKeys(*t,
              {"path", "interval", "timeout", "healthy_threshold", "unhealthy_threshold",
               "expect_status"},
              {}, "in [" + what + "]");
    h.enabled = true;
    h.pos = posOf(n);
    if (const auto* v = t->get("path")) {
      if (auto s = getString(*v, what + ".path")) {
        if (!s->starts_with("/") || hasSpaceOrControl(*s))
          error(posOf(*v), what + ".path: expected a path starting with '/' without spaces, "
                                  "got '" + *s + "'");
        else
          h.path = *s;
      }
    }
    if (const auto* v = t->get("interval")) {
      if (auto d = getDuration(*v, what + ".interval", false)) {
        if (d->count() < 10)
          error(posOf(*v), what + ".interval: must be at least 10ms");
        else
          h.interval = *d;
      }
    }
    if (const auto* v = t->get("timeout")) {
      if (auto d = getDuration(*v, what + ".timeout", false)) h.timeout = *d;
    }
    if (const auto* v = t->get("healthy_threshold")) {
      if (auto i = getInt(*v, what + ".healthy_threshold", 1, 100))
        h.healthyThreshold = static_cast<uint32_t>(*i);
    }
    if (const auto* v = t->get("unhealthy_threshold")) {
      if (auto i = getInt(*v, what + ".unhealthy_threshold", 1, 100))
        h.unhealthyThreshold = static_cast<uint32_t>(*i);
    }
    if (const auto* v = t->get("expect_status")) {
      if (auto s = getString(*v, what + ".expect_status")) {
        // "200", "200-399"
        int lo = 0, hi = 0;
        char dash = 0, extra = 0;
        int got = std::sscanf(s->c_str(), "%d%c%d%c", &lo, &dash, &hi, &extra);
        if (got == 1) hi = lo;
        bool ok = (got == 1 || (got == 3 && dash == '-')) && lo >= 100 && hi <= 599 && lo <= hi &&
                  s->find_first_of(" +") == std::string::npos;
        if (!ok)
          error(posOf(*v), what + ".expect_status: expected a status or a range such as "
                                  "\"200-399\", got '" + *s + "'");
        else {
          h.expectStatusLo = lo;
          h.expectStatusHi = hi;
        }
      }
    }
    if (h.timeout > h.interval)
      warn(h.pos, what + ": timeout is longer than interval; checks will not overlap, so the "
                         "effective interval grows");
  }

  void loadOutlier(const toml::node& n, const std::string& what, OutlierConfig& o) {
    const auto* t = n.as_table();
    if (t == nullptr) {
      error(posOf(n), what + ": expected a table ([" + what + "]), got " + typeName(n));
      return;
    }
    checkKeys(*t, {"consecutive_failures", "ejection_time"}, {}, "in [" + what + "]");
    o.enabled = true;
    o.pos = posOf(n);
    if (const auto* v = t->get("consecutive_failures")) {
      if (auto i = getInt(*v, what + ".consecutive_failures", 1, 1000))
        o.consecutiveFailures = static_cast<uint32_t>(*i);
    }
    if (const auto* v = t->get("ejection_time")) {
      if (auto d = getDuration(*v, what + ".ejection_time", false)) o.ejectionTime = *d;
    }
  }

  void loadPools(const toml::node& n) {
    const auto* pools = n.as_table();
    if (pools == nullptr) {
      error(posOf(n), "pool: expected a table of pools ([pool.NAME]), got " + typeName(n));
      return;
    }
    for (auto&& kv : *pools) {
      std::string name(kv.first.str());
      const toml::node& pn = kv.second;
      std::string what = "pool." + name;
      // Remember the name even if the pool is invalid, so routes using it do not get a
      // second, misleading "no such pool" error.
      poolNames_.emplace(name, posOf(pn));
      if (!isValidPoolName(name)) {
        error(toPos(kv.first.source()),
              "invalid pool name '" + name + "' (allowed: letters, digits, '_', '.', '-')");
      }
      const auto* t = pn.as_table();
      if (t == nullptr) {
        error(posOf(pn), what + ": expected a table ([pool." + name + "]), got " + typeName(pn));
        continue;
      }
      checkKeys(
          *t,
          {"backends", "balance", "connect_timeout", "response_timeout", "idle_timeout", "retries",
           "tls", "tls_verify", "tls_ca", "tls_server_name", "hash_key", "max_connections",
           "resolve_interval", "health", "outlier"},
          {}, "in [pool." + name + "]");
      PoolConfig pc;
      pc.name = name;
      pc.pos = posOf(pn);
      if (const auto* v = t->get("backends")) {
        loadBackends(*v, what, pc);
      } else {
        error(pc.pos, what + ": missing required key 'backends'");
      }
      if (const auto* v = t->get("balance")) {
        if (auto s = getString(*v, what + ".balance")) {
          if (*s == "round_robin") {
            pc.balance = Balance::RoundRobin;
          } else if (*s == "least_conn") {
            pc.balance = Balance::LeastConn;
          } else if (*s == "p2c") {
            pc.balance = Balance::P2c;
          } else if (*s == "hash") {
            pc.balance = Balance::Hash;
          } else {
            error(posOf(*v), what + ".balance: expected \"round_robin\", \"least_conn\", "
                                    "\"p2c\" or \"hash\", got '" + *s + "'");
          }
        }
      }
      loadPoolBalancing(*t, what, pc);
      if (const auto* v = t->get("connect_timeout")) {
        if (auto d = getDuration(*v, what + ".connect_timeout", false)) pc.connectTimeout = *d;
      }
      if (const auto* v = t->get("response_timeout")) {
        if (auto d = getDuration(*v, what + ".response_timeout", false)) pc.responseTimeout = *d;
      }
      if (const auto* v = t->get("idle_timeout")) {
        if (auto d = getDuration(*v, what + ".idle_timeout", false)) pc.idleTimeout = *d;
      }
      if (const auto* v = t->get("retries")) {
        if (auto r = getInt(*v, what + ".retries", 0, 10)) pc.retries = static_cast<uint32_t>(*r);
      }
      loadPoolTls(*t, what, pc);
      cfg_.pools.push_back(std::move(pc));
    }
    // toml++ tables are ordered by key; the schema promises file order.
    std::stable_sort(
        cfg_.pools.begin(), cfg_.pools.end(), [](const PoolConfig& a, const PoolConfig& b) {
          return a.pos.line != b.pos.line ? a.pos.line < b.pos.line : a.pos.col < b.pos.col;
        });
  }

  void loadBackends(const toml::node& n, const std::string& poolWhat, PoolConfig& pc) {
    std::string what = poolWhat + ".backends";
    const auto* arr = n.as_array();
    if (arr == nullptr) {
      error(posOf(n),
            what + ": expected an array of { address = \"host:port\" } tables, got " + typeName(n));
      return;
    }
    if (arr->empty()) {
      error(posOf(n), what + ": must not be empty");
      return;
    }
    // The admin API names backends by address, so two equal addresses would be ambiguous.
    std::map<std::string, SourcePos> seen;
    for (size_t i = 0; i < arr->size(); ++i) {
      const toml::node& el = (*arr)[i];
      std::string bw = what + "[" + std::to_string(i) + "]";
      const auto* t = el.as_table();
      if (t == nullptr) {
        error(posOf(el),
              bw + ": expected a table like { address = \"host:port\" }, got " + typeName(el));
        continue;
      }
      checkKeys(*t, {"address", "weight"}, {}, "in " + bw);
      BackendConfig bc;
      bc.pos = posOf(el);
      if (const auto* v = t->get("address")) {
        if (auto s = getString(*v, bw + ".address")) {
          std::string err;
          if (!parseHostPort(*s, bc.hostPort, err)) {
            error(posOf(*v), bw + ".address: " + err);
          } else if (auto [it, inserted] = seen.emplace(formatHostPort(bc.hostPort), posOf(*v));
                     !inserted) {
            error(posOf(*v), bw + ".address: duplicate backend '" + *s + "' (first at " +
                                 lineRef(it->second) + ")");
          }
          bc.address = *s;
        }
      } else {
        error(bc.pos, bw + ": missing required key 'address'");
      }
      if (const auto* v = t->get("weight")) {
        if (auto w = getInt(*v, bw + ".weight", 1, 1000)) bc.weight = static_cast<uint32_t>(*w);
      }
      pc.backends.push_back(std::move(bc));
    }
  }

  void loadRoutes(const toml::node& n) {
    const auto* arr = n.as_array();
    if (arr == nullptr) {
      error(posOf(n), "route: expected an array of tables ([[route]]), got " + typeName(n));
      return;
    }
    std::map<std::string, SourcePos> names;
    std::map<std::string, std::pair<std::string, SourcePos>> matchKeys;
    for (size_t i = 0; i < arr->size(); ++i) {
      const toml::node& el = (*arr)[i];
      std::string what = "route[" + std::to_string(i) + "]";
      const auto* t = el.as_table();
      if (t == nullptr) {
        error(posOf(el), what + ": expected a table, got " + typeName(el));
        continue;
      }
      checkKeys(*t,
                {"name", "host", "path", "path_exact", "methods", "strip_prefix", "pool",
                 "middleware"},
                {"path_regex", "split", "sticky", "override_header", "override_cookie",
                 "rollback"},
                "in [[route]]");
      RouteConfig rc;
      rc.pos = posOf(el);
      if (const auto* v = t->get("name")) {
        if (auto s = getString(*v, what + ".name")) {
          rc.name = *s;
          if (s->empty()) {
            error(posOf(*v), what + ".name: must not be empty");
          } else if (auto [it, inserted] = names.emplace(*s, posOf(*v)); !inserted) {
            error(posOf(*v), what + ".name: duplicate route name '" + *s + "' (first used at " +
                                 lineRef(it->second) + ")");
          }
        }
      } else {
        error(rc.pos, what + ": missing required key 'name'");
      }
      if (const auto* v = t->get("host")) {
        if (auto s = getString(*v, what + ".host")) {
          std::string host = *s;
          if (!normalizeRouteHost(host)) {
            error(posOf(*v), what + ".host: invalid host '" + *s +
                                 "' (expected e.g. \"api.example.com\" or \"*.example.com\", "
                                 "without port)");
          } else {
            rc.host = host;
          }
        }
      }
      const auto* pathNode = t->get("path");
      const auto* exactNode = t->get("path_exact");
      auto loadPath = [&](const toml::node* v, const char* key, std::string& dst) {
        if (v == nullptr) return;
        std::string w = what + "." + key;
        if (auto s = getString(*v, w)) {
          if (!s->starts_with("/")) {
            error(posOf(*v), w + ": must start with '/', got '" + *s + "'");
          } else if (hasSpaceOrControl(*s)) {
            error(posOf(*v), w + ": must not contain spaces or control characters");
          } else {
            dst = *s;
          }
        }
      };
      loadPath(pathNode, "path", rc.path);
      loadPath(exactNode, "path_exact", rc.pathExact);
      if (pathNode != nullptr && exactNode != nullptr) {
        error(posOf(*exactNode), what + ": use either 'path' or 'path_exact', not both");
      } else if (pathNode == nullptr && exactNode == nullptr) {
        error(rc.pos, what + ": missing required key 'path' (or 'path_exact')");
      }
      if (const auto* v = t->get("methods")) loadMethods(*v, what + ".methods", rc);
      if (const auto* v = t->get("strip_prefix")) {
        if (auto b = getBool(*v, what + ".strip_prefix")) {
          if (*b && exactNode != nullptr) {
            error(posOf(*v), what + ".strip_prefix: only allowed with 'path', not 'path_exact'");
          } else {
            rc.stripPrefix = *b;
          }
        }
      }
      if (const auto* v = t->get("pool")) {
        if (auto s = getString(*v, what + ".pool")) {
          rc.pool = *s;
          if (poolNames_.count(*s) == 0) {
            error(posOf(*v),
                  what + ".pool: no pool named '" + *s + "' (define it with [pool." + *s + "])");
          } else {
            usedPools_.insert(*s);
          }
        }
      } else {
        error(rc.pos, what + ": missing required key 'pool'");
      }
      if (const auto* v = t->get("middleware")) loadRouteMiddleware(*v, what, rc);
      // Two routes that match exactly the same requests: only one can ever be chosen.
      std::vector<std::string> methods = rc.methods;
      std::sort(methods.begin(), methods.end());
      std::string key = rc.host + '\n' + (exactNode ? "=" + rc.pathExact : rc.path) + '\n';
      for (const auto& m : methods) key += m + ",";
      std::string label = rc.name.empty() ? what : "route '" + rc.name + "'";
      if (auto [it, inserted] = matchKeys.emplace(key, std::make_pair(label, rc.pos)); !inserted) {
        warn(rc.pos, label + " matches the same host, path and methods as " + it->second.first +
                         " (" + lineRef(it->second.second) + "); only one of them can be used");
      }
      cfg_.routes.push_back(std::move(rc));
    }
  }

  // ---- [redis] and [middleware.NAME] ----------------------------------------------------

  void loadRedis(const toml::node& n) {
    const auto* t = sectionTable(n, "redis");
    if (t == nullptr) return;
    checkKeys(*t, {"url", "timeout", "failure_mode"}, {}, "in [redis]");
    RedisSettings& r = cfg_.redis;
    r.enabled = true;
    r.pos = posOf(n);
    if (const auto* v = t->get("url")) {
      if (auto s = getString(*v, "redis.url")) {
        std::string err;
        if (!parseRedisUrl(*s, r, err)) {
          error(posOf(*v), "redis.url: " + err);
        } else {
          r.url = *s;
        }
      }
    } else {
      std::string err;
      parseRedisUrl(r.url, r, err);
    }
    if (const auto* v = t->get("timeout")) {
      if (auto d = getDuration(*v, "redis.timeout", false)) r.timeout = *d;
    }
    if (const auto* v = t->get("failure_mode")) {
      if (auto s = getString(*v, "redis.failure_mode")) {
        if (*s == "open") {
          r.failureMode = RedisFailureMode::Open;
        } else if (*s == "closed") {
          r.failureMode = RedisFailureMode::Closed;
        } else {
          error(posOf(*v), "redis.failure_mode: expected \"open\" or \"closed\", got '" + *s + "'");
        }
      }
    }
  }

  void loadMiddleware(const toml::node& n) {
    const auto* all = n.as_table();
    if (all == nullptr) {
      error(posOf(n),
            "middleware: expected a table of middleware ([middleware.NAME]), got " + typeName(n));
      return;
    }
    for (auto&& kv : *all) {
      std::string name(kv.first.str());
      const toml::node& mn = kv.second;
      std::string what = "middleware." + name;
      auto& slot = middlewareNames_[name];
      slot = {"", posOf(mn)};
      if (!isValidPoolName(name)) {
        error(toPos(kv.first.source()),
              "invalid middleware name '" + name + "' (allowed: letters, digits, '_', '.', '-')");
      }
      const auto* t = mn.as_table();
      if (t == nullptr) {
        error(posOf(mn),
              what + ": expected a table ([middleware." + name + "]), got " + typeName(mn));
        continue;
      }
      MiddlewareConfig mc;
      mc.name = name;
      mc.pos = posOf(mn);
      const auto* typeNode = t->get("type");
      if (typeNode == nullptr) {
        error(mc.pos, what + ": missing required key 'type' (\"rate_limit\" or \"jwt\")");
        continue;
      }
      auto type = getString(*typeNode, what + ".type");
      if (!type) continue;
      if (*type == "rate_limit") {
        mc.type = MiddlewareType::RateLimit;
        checkKeys(*t, {"type", "key", "rate", "burst", "store"}, {},
                  "in [middleware." + name + "] (type = \"rate_limit\")");
        if (!loadRateLimit(*t, what, mc)) continue;
      } else if (*type == "jwt") {
        mc.type = MiddlewareType::Jwt;
        checkKeys(*t,
                  {"type", "algorithms", "secret", "public_key", "issuer", "audience", "required"},
                  {}, "in [middleware." + name + "] (type = \"jwt\")");
        if (!loadJwt(*t, what, mc)) continue;
      } else if (*type == "cors" || *type == "headers") {
        error(posOf(*typeNode), what + ".type: '" + *type +
                                    "' is not supported in this version (use \"rate_limit\" or "
                                    "\"jwt\")");
        continue;
      } else {
        error(posOf(*typeNode),
              what + ".type: expected \"rate_limit\" or \"jwt\", got '" + *type + "'");
        continue;
      }
      slot.first = *type;
      cfg_.middleware.push_back(std::move(mc));
    }
    std::stable_sort(cfg_.middleware.begin(), cfg_.middleware.end(),
                     [](const MiddlewareConfig& a, const MiddlewareConfig& b) {
                       return a.pos.line != b.pos.line ? a.pos.line < b.pos.line
                                                       : a.pos.col < b.pos.col;
                     });
  }

  // "100/s", "100/m", "100/h".
  bool loadRate(const toml::node& v, const std::string& what, RateLimitConfig& rl) {
    auto s = getString(v, what);
    if (!s) return false;
    size_t slash = s->find('/');
    std::string_view num = std::string_view(*s).substr(0, slash);
    std::string_view unit =
        slash == std::string::npos ? std::string_view() : std::string_view(*s).substr(slash + 1);
    bool digits = !num.empty() && num.size() <= 9 &&
                  num.find_first_not_of("0123456789") == std::string_view::npos;
    uint64_t n = digits ? std::stoull(std::string(num)) : 0;
    int64_t periodMs = unit == "s" ? 1000 : unit == "m" ? 60000 : unit == "h" ? 3600000 : 0;
    if (!digits || n == 0 || n > 1000000 || periodMs == 0) {
      error(posOf(v), what + ": expected \"N/s\", \"N/m\" or \"N/h\" with N between 1 and " +
                          "1000000 (e.g. \"100/m\"), got '" + *s + "'");
      return false;
    }
    rl.rate = n;
    rl.period = Duration(periodMs);
    return true;
  }

  bool loadRateLimit(const toml::table& t, const std::string& what, MiddlewareConfig& mc) {
    RateLimitConfig& rl = mc.rateLimit;
    bool ok = true;
    if (const auto* v = t.get("key")) {
      if (auto s = getString(*v, what + ".key")) {
        rl.key = *s;
        auto colon = s->find(':');
        std::string kind = s->substr(0, colon);
        std::string arg = colon == std::string::npos ? "" : s->substr(colon + 1);
        if (*s == "ip") {
          rl.keyKind = RateLimitKeyKind::Ip;
        } else if ((kind == "header" || kind == "cookie" || kind == "jwt") && !arg.empty() &&
                   !hasSpaceOrControl(arg) && arg.find(':') == std::string::npos) {
          rl.keyKind = kind == "header"   ? RateLimitKeyKind::Header
                       : kind == "cookie" ? RateLimitKeyKind::Cookie
                                          : RateLimitKeyKind::JwtClaim;
          rl.keyName = arg;
        } else {
          error(posOf(*v), what +
                               ".key: expected \"ip\", \"header:NAME\", \"cookie:NAME\" or "
                               "\"jwt:CLAIM\", got '" +
                               *s + "'");
          ok = false;
        }
      } else {
        ok = false;
      }
    }
    if (const auto* v = t.get("rate")) {
      ok = loadRate(*v, what + ".rate", rl) && ok;
    } else {
      error(mc.pos, what + ": missing required key 'rate' (e.g. rate = \"100/m\")");
      ok = false;
    }
    if (const auto* v = t.get("burst")) {
      if (auto b = getInt(*v, what + ".burst", 0, 1000000)) {
        rl.burst = uint64_t(*b);
      } else {
        ok = false;
      }
    }
    rl.store = cfg_.redis.enabled ? RateLimitStore::Redis : RateLimitStore::Local;
    if (const auto* v = t.get("store")) {
      if (auto s = getString(*v, what + ".store")) {
        if (*s == "redis") {
          if (!cfg_.redis.enabled) {
            error(posOf(*v), what + ".store: \"redis\" needs a [redis] table (or use "
                                    "store = \"local\")");
            ok = false;
          }
          rl.store = RateLimitStore::Redis;
        } else if (*s == "local") {
          rl.store = RateLimitStore::Local;
        } else {
          error(posOf(*v), what + ".store: expected \"redis\" or \"local\", got '" + *s + "'");
          ok = false;
        }
      } else {
        ok = false;
      }
    }
    return ok;
  }

  bool loadJwt(const toml::table& t, const std::string& what, MiddlewareConfig& mc) {
    JwtConfig& j = mc.jwt;
    bool ok = true;
    const auto* algNode = t.get("algorithms");
    if (algNode == nullptr) {
      error(mc.pos, what + ": missing required key 'algorithms' (e.g. [\"RS256\"])");
      return false;
    }
    const auto* arr = algNode->as_array();
    if (arr == nullptr || arr->empty()) {
      error(posOf(*algNode), what + ".algorithms: expected a non-empty array of \"HS256\", "
                                    "\"RS256\", \"ES256\"");
      return false;
    }
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string w = what + ".algorithms[" + std::to_string(i) + "]";
      auto s = getString((*arr)[i], w);
      if (!s) {
        ok = false;
        continue;
      }
      if (*s != "HS256" && *s != "RS256" && *s != "ES256") {
        error(posOf((*arr)[i]), w + ": expected \"HS256\", \"RS256\" or \"ES256\", got '" + *s +
                                    "'" + (*s == "none" ? " (unsigned tokens are never accepted)"
                                                        : ""));
        ok = false;
        continue;
      }
      if (std::find(j.algorithms.begin(), j.algorithms.end(), *s) == j.algorithms.end())
        j.algorithms.push_back(*s);
    }
    if (const auto* v = t.get("secret")) {
      if (auto s = getString(*v, what + ".secret")) j.secret = *s;
    }
    middleware::PublicKeyKind keyKind = middleware::PublicKeyKind::None;
    const auto* keyNode = t.get("public_key");
    if (keyNode != nullptr) {
      if (auto s = getString(*keyNode, what + ".public_key")) {
        j.publicKey = resolvePath(*s);
        std::string err;
        if (!middleware::inspectPublicKeyFile(j.publicKey, keyKind, err)) {
          error(posOf(*keyNode), what + ".public_key: " + err);
          ok = false;
        }
      } else {
        ok = false;
      }
    }
    if (const auto* v = t.get("issuer")) {
      if (auto s = getString(*v, what + ".issuer")) j.issuer = *s;
    }
    if (const auto* v = t.get("audience")) {
      if (auto s = getString(*v, what + ".audience")) j.audience = *s;
    }
    if (const auto* v = t.get("required")) {
      if (auto b = getBool(*v, what + ".required")) j.required = *b;
    }
    if (!ok) return false;
    // An algorithm without the key it needs can never verify a token: a warning when other
    // algorithms still work (the spec's example lists all three), an error when none does.
    int usable = 0;
    for (const auto& a : j.algorithms) {
      std::string why;
      if (a == "HS256" && j.secret.empty()) {
        why = "HS256 needs a non-empty 'secret'";
      } else if (a == "RS256" && keyKind != middleware::PublicKeyKind::Rsa) {
        why = keyNode == nullptr ? "RS256 needs 'public_key'"
                                 : "RS256 needs an RSA public key, public_key is not one";
      } else if (a == "ES256" && keyKind != middleware::PublicKeyKind::EcP256) {
        why = keyNode == nullptr ? "ES256 needs 'public_key'"
                                 : "ES256 needs an EC P-256 public key, public_key is not one";
      }
      if (why.empty()) {
        ++usable;
      } else {
        warn(posOf(*algNode), what + ".algorithms: " + why + "; " + a +
                                  " tokens will be rejected");
      }
    }
    if (usable == 0) {
      error(posOf(*algNode), what + ".algorithms: no listed algorithm can verify a token "
                                    "(HS256 needs 'secret', RS256/ES256 need a matching "
                                    "'public_key')");
      return false;
    }
    return true;
  }

  void loadRouteMiddleware(const toml::node& n, const std::string& routeWhat, RouteConfig& rc) {
    std::string what = routeWhat + ".middleware";
    const auto* arr = n.as_array();
    if (arr == nullptr) {
      error(posOf(n), what + ": expected an array of middleware names like [\"auth\"], got " +
                          typeName(n));
      return;
    }
    bool jwtBefore = false;
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string w = what + "[" + std::to_string(i) + "]";
      auto s = getString((*arr)[i], w);
      if (!s) continue;
      auto it = middlewareNames_.find(*s);
      if (it == middlewareNames_.end()) {
        error(posOf((*arr)[i]),
              w + ": no middleware named '" + *s + "' (define it with [middleware." + *s + "])");
        continue;
      }
      if (std::find(rc.middleware.begin(), rc.middleware.end(), *s) != rc.middleware.end()) {
        error(posOf((*arr)[i]), w + ": middleware '" + *s + "' is listed twice");
        continue;
      }
      usedMiddleware_.insert(*s);
      rc.middleware.push_back(*s);
      if (it->second.first == "jwt") jwtBefore = true;
      if (it->second.first == "rate_limit" && !jwtBefore) {
        for (const auto& m : cfg_.middleware) {
          if (m.name == *s && m.rateLimit.keyKind == RateLimitKeyKind::JwtClaim) {
            warn(posOf((*arr)[i]), w + ": '" + *s + "' keys on '" + m.rateLimit.key +
                                       "' but no jwt middleware comes before it in this route; "
                                       "every request falls back to the client IP");
          }
        }
      }
    }
  }

  void loadMethods(const toml::node& n, const std::string& what, RouteConfig& rc) {
    const auto* arr = n.as_array();
    if (arr == nullptr) {
      error(posOf(n),
            what + ": expected an array of strings like [\"GET\", \"POST\"], got " + typeName(n));
      return;
    }
    if (arr->empty()) {
      error(posOf(n), what + ": must not be empty (leave 'methods' out to allow any method)");
      return;
    }
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string w = what + "[" + std::to_string(i) + "]";
      auto s = getString((*arr)[i], w);
      if (!s) continue;
      if (!isUpperToken(*s)) {
        error(posOf((*arr)[i]),
              w + ": invalid method '" + *s + "' (expected an upper-case token such as \"GET\")");
        continue;
      }
      if (std::find(rc.methods.begin(), rc.methods.end(), *s) != rc.methods.end()) {
        warn(posOf((*arr)[i]), w + ": method '" + *s + "' is listed twice");
        continue;
      }
      rc.methods.push_back(*s);
    }
  }

  // Hostname backends that do not resolve now are not an error (the proxy keeps resolving
  // them), but `sluice -t` should say so. Lookups run in parallel on helper threads and are
  // given at most one second in total, so a slow resolver cannot stall a reload.
  void warnUnresolvedBackends() {
    struct Lookup {
      std::string host;
      SourcePos pos;
      std::string what;
      bool done = false;
      int rc = 0;
    };
    struct Shared {
      std::mutex mu;
      std::condition_variable cv;
      std::vector<Lookup> items;
      size_t pending = 0;
    };
    auto sh = std::make_shared<Shared>();
    std::set<std::string> seen;
    for (const auto& pc : cfg_.pools)
      for (const auto& bc : pc.backends) {
        sockaddr_storage ss;
        socklen_t len;
        if (bc.hostPort.host.empty() || toSockaddr(bc.hostPort, ss, len)) continue;  // IP
        if (!seen.insert(bc.hostPort.host).second) continue;
        sh->items.push_back({bc.hostPort.host, bc.pos, "pool." + pc.name + ": backend " + bc.address});
      }
    if (sh->items.empty()) return;
    sh->pending = sh->items.size();
    for (size_t i = 0; i < sh->items.size(); ++i) {
      std::thread([sh, i] {
        std::string host;
        {
          std::lock_guard<std::mutex> lock(sh->mu);
          host = sh->items[i].host;
        }
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
        if (res) freeaddrinfo(res);
        std::lock_guard<std::mutex> lock(sh->mu);
        sh->items[i].done = true;
        sh->items[i].rc = rc;
        if (--sh->pending == 0) sh->cv.notify_all();
      }).detach();
    }
    std::unique_lock<std::mutex> lock(sh->mu);
    sh->cv.wait_for(lock, std::chrono::seconds(1), [&] { return sh->pending == 0; });
    for (const auto& it : sh->items) {
      if (!it.done)
        warn(it.pos, it.what + ": host name '" + it.host +
                         "' did not resolve within 1s (it is resolved again while running)");
      else if (it.rc != 0)
        warn(it.pos, it.what + ": host name '" + it.host + "' does not resolve (" +
                         gai_strerror(it.rc) +
                         "); the pool has no address for it until it does");
    }
  }

  void finalChecks(const toml::table& root) {
    for (const auto& m : cfg_.middleware) {
      if (usedMiddleware_.count(m.name) == 0)
        warn(m.pos, "middleware '" + m.name + "' is not used by any route");
    }
    if (checkNames_) warnUnresolvedBackends();
    for (const auto& pool : cfg_.pools) {
      if (usedPools_.count(pool.name) == 0) {
        warn(pool.pos, "pool '" + pool.name + "' is not used by any route");
      }
    }
    bool allRedirect = !cfg_.listeners.empty();
    for (const auto& l : cfg_.listeners) allRedirect = allRedirect && !l.redirectHttps.empty();
    if (cfg_.routes.empty() && !cfg_.listeners.empty() && !allRedirect &&
        root.get("route") == nullptr) {
      warn({1, 1}, "no [[route]] defined: every request will be answered 404");
    }
  }

  std::string file_;
  bool checkNames_ = false;  // look up backend host names (files only: -t, start, reload)
  Config cfg_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
  std::map<std::string, SourcePos> poolNames_;  // every declared pool, valid or not
  std::set<std::string> usedPools_;
  // Every declared middleware (valid or not) -> its type ("" when unknown/invalid) and position.
  std::map<std::string, std::pair<std::string, SourcePos>> middlewareNames_;
  std::set<std::string> usedMiddleware_;
  std::map<std::string, std::pair<std::string, SourcePos>> listenAddrs_;  // key -> owner, pos
};

}  // namespace

LoadResult loadConfigString(std::string_view text, const std::string& fileName) {
  try {
    return Loader(fileName).run(text);
  } catch (...) {
    // Only reachable on allocation failure while building the result.
    LoadResult r;
    r.errors.push_back({fileName, 0, 0, "internal error while loading the config"});
    return r;
  }
}

LoadResult loadConfigFile(const std::string& path) {
  // POSIX read so a directory or unreadable file gives a precise errno (EISDIR, EACCES).
  std::string text;
  int readErrno = 0;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    readErrno = errno;
  } else {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n > 0) {
        text.append(buf, static_cast<size_t>(n));
      } else if (n == 0) {
        break;
      } else if (errno != EINTR) {
        readErrno = errno;
        break;
      }
    }
    ::close(fd);
  }
  if (readErrno != 0) {
    LoadResult r;
    r.errors.push_back(
        {path, 0, 0, std::string("cannot read config file: ") + std::strerror(readErrno)});
    return r;
  }
  try {
    return Loader(path, true).run(text);
  } catch (...) {
    LoadResult r;
    r.errors.push_back({path, 0, 0, "internal error while loading the config"});
    return r;
  }
}

}  // namespace sluice::config
