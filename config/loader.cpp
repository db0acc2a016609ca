// TOML -> Config (see loader.h). The Loader walks the parsed toml++ tree section by section,
// records every problem with its position and keeps going, so one `sluice -t` run shows the
// operator everything that is wrong with the file.
#include "config/loader.h"

#include <fcntl.h>
#include <unistd.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "config/units.h"
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
  explicit Loader(std::string file) : file_(std::move(file)) {}

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
    checkKeys(root, {"server", "admin", "log", "listener", "pool", "route"},
              {"redis", "middleware"}, "at the top level");
    if (const auto* n = root.get("server")) loadServer(*n);
    if (const auto* n = root.get("admin")) loadAdmin(*n);
    if (const auto* n = root.get("log")) loadLog(*n);
    const auto* listeners = root.get("listener");
    if (listeners != nullptr) loadListeners(*listeners);
    if (listeners == nullptr || (listeners->is_array() && listeners->as_array()->empty())) {
      error({1, 1}, "at least one [[listener]] is required");
    }
    if (const auto* n = root.get("pool")) loadPools(*n);
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
           "tls", "tls_verify", "tls_ca", "tls_server_name"},
          {"hash_key", "max_connections", "resolve_interval", "health", "outlier"},
          "in [pool." + name + "]");
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
          } else if (*s == "least_conn" || *s == "p2c" || *s == "hash") {
            error(posOf(*v), what + ".balance: '" + *s +
                                 "' is not supported in this version (use \"round_robin\")");
          } else {
            error(posOf(*v), what + ".balance: expected \"round_robin\", got '" + *s + "'");
          }
        }
      }
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
      checkKeys(*t, {"name", "host", "path", "path_exact", "methods", "strip_prefix", "pool"},
                {"path_regex", "middleware", "split", "sticky", "override_header",
                 "override_cookie", "rollback"},
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

  void finalChecks(const toml::table& root) {
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
  Config cfg_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
  std::map<std::string, SourcePos> poolNames_;  // every declared pool, valid or not
  std::set<std::string> usedPools_;
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
  return loadConfigString(text, path);
}

}  // namespace sluice::config
