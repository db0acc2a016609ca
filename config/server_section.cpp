// [server], [admin], [log] and [redis]: the single-table sections.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <string>

#include "config/redis_url.h"
#include "config/sections.h"
#include "config/units.h"

namespace sluice::config {

namespace {

// "auto" (returned as 0) or an integer in [1, hi]; a numeric string is accepted too, so
// `workers = "${SLUICE_WORKERS:-auto}"` works. nullopt after an error.
std::optional<uint64_t> getAutoCount(LoadContext& ctx, const toml::node& v, const std::string& what,
                                     int64_t hi) {
  const std::string expect = "expected \"auto\" or an integer between 1 and " + std::to_string(hi);
  if (v.is_integer()) {
    auto n = ctx.getInt(v, what, 1, hi);
    if (!n) return std::nullopt;
    return uint64_t(*n);
  }
  if (!v.is_string()) {
    ctx.error(posOf(v), what + ": " + expect + ", got " + typeName(v));
    return std::nullopt;
  }
  auto s = ctx.getString(v, what);
  if (!s) return std::nullopt;
  if (*s == "auto") return 0;
  bool digitsOnly = !s->empty() && s->find_first_not_of("0123456789") == std::string::npos;
  auto n = digitsOnly ? parseSize(*s) : std::nullopt;  // digits only: a plain number
  if (!n || *n < 1 || *n > uint64_t(hi)) {
    ctx.error(posOf(v), what + ": " + expect + ", got '" + *s + "'");
    return std::nullopt;
  }
  return *n;
}

void loadTrustedProxies(LoadContext& ctx, const toml::node& v) {
  const auto* arr = v.as_array();
  if (arr == nullptr) {
    ctx.error(posOf(v),
              "server.trusted_proxies: expected an array of CIDR strings, got " + typeName(v));
    return;
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    std::string what = "server.trusted_proxies[" + std::to_string(i) + "]";
    auto str = ctx.getString((*arr)[i], what);
    if (!str) continue;
    Cidr c;
    if (!parseCidr(*str, c)) {
      ctx.error(posOf((*arr)[i]), what + ": invalid CIDR '" + *str +
                                      "' (expected e.g. \"10.0.0.0/8\" or \"::1/128\")");
      continue;
    }
    ctx.config().server.trustedProxies.push_back(c);
  }
}

}  // namespace

void loadServer(LoadContext& ctx, const toml::node& n) {
  const auto* t = ctx.tableOf(n, "server");
  if (t == nullptr) return;
  ctx.checkKeys(*t,
                {"workers", "pid_file", "shutdown_timeout", "max_header_size", "max_body_size",
                 "client_header_timeout", "client_idle_timeout", "trusted_proxies", "state_file",
                 "release_store", "max_connections"},
                {}, "in [server]");
  ServerSettings& s = ctx.config().server;
  if (const auto* v = t->get("workers")) {
    if (auto n = getAutoCount(ctx, *v, "server.workers", 256)) s.workers = unsigned(*n);
  }
  if (const auto* v = t->get("max_connections")) {
    if (auto n = getAutoCount(ctx, *v, "server.max_connections", kMaxConnectionsLimit))
      s.maxConnections = *n;
  }
  if (const auto* v = t->get("pid_file")) {
    if (auto str = ctx.getString(*v, "server.pid_file")) s.pidFile = *str;
  }
  if (const auto* v = t->get("shutdown_timeout")) {
    // 0 is meaningful here: exit without waiting for in-flight requests.
    if (auto d = ctx.getDuration(*v, "server.shutdown_timeout", true)) s.shutdownTimeout = *d;
  }
  if (const auto* v = t->get("max_header_size")) {
    if (auto sz = ctx.getSize(*v, "server.max_header_size")) {
      if (*sz < 1024 || *sz > 1024 * 1024) {
        ctx.error(posOf(*v), "server.max_header_size: must be between 1k and 1m");
      } else {
        s.maxHeaderSize = *sz;
      }
    }
  }
  if (const auto* v = t->get("max_body_size")) {
    if (auto sz = ctx.getSize(*v, "server.max_body_size")) s.maxBodySize = *sz;
  }
  if (const auto* v = t->get("client_header_timeout")) {
    if (auto d = ctx.getDuration(*v, "server.client_header_timeout", false)) {
      s.clientHeaderTimeout = *d;
    }
  }
  if (const auto* v = t->get("client_idle_timeout")) {
    if (auto d = ctx.getDuration(*v, "server.client_idle_timeout", false)) s.clientIdleTimeout = *d;
  }
  if (const auto* v = t->get("trusted_proxies")) loadTrustedProxies(ctx, *v);
  if (const auto* v = t->get("state_file")) {
    if (auto str = ctx.getString(*v, "server.state_file")) {
      if (str->empty()) {
        ctx.error(posOf(*v), "server.state_file: expected a file path");
      } else {
        s.stateFile = ctx.resolvePath(*str);
        // Written after every change (temporary file + rename in its folder): say now when
        // that cannot work, rather than in the log at the first change.
        const size_t slash = s.stateFile.rfind('/');
        const std::string dir = slash == std::string::npos ? "."
                                : slash == 0               ? "/"
                                                           : s.stateFile.substr(0, slash);
        if (::access(dir.c_str(), W_OK | X_OK) != 0)
          ctx.warn(posOf(*v), "server.state_file: cannot write in '" + dir + "' (" +
                                  std::strerror(errno) + "): the release state is not kept");
      }
    }
  }
  if (const auto* v = t->get("release_store")) {
    s.releaseStorePos = posOf(*v);
    if (auto str = ctx.getString(*v, "server.release_store")) {
      if (*str == "redis") {
        s.releaseStore = ReleaseStore::Redis;
      } else if (*str != "local") {
        ctx.error(posOf(*v),
                  "server.release_store: expected \"local\" or \"redis\", got '" + *str + "'");
      }
    }
  }
}

void loadAdmin(LoadContext& ctx, const toml::node& n) {
  const auto* t = ctx.tableOf(n, "admin");
  if (t == nullptr) return;
  ctx.checkKeys(*t, {"listen", "token"}, {}, "in [admin]");
  AdminSettings& a = ctx.config().admin;
  a.enabled = true;
  a.pos = posOf(n);
  if (const auto* v = ctx.required(*t, "listen", a.pos, "admin")) {
    if (ctx.getListen(*v, "admin.listen", a.listen)) {
      ctx.claimListenAddress(a.listen, "[admin]", posOf(*v), "admin.listen");
    }
  }
  if (const auto* v = t->get("token")) {
    if (auto s = ctx.getString(*v, "admin.token")) a.token = *s;
  }
}

void loadLog(LoadContext& ctx, const toml::node& n) {
  const auto* t = ctx.tableOf(n, "log");
  if (t == nullptr) return;
  ctx.checkKeys(*t, {"access", "format", "level"}, {}, "in [log]");
  LogSettings& l = ctx.config().log;
  if (const auto* v = t->get("access")) {
    if (auto s = ctx.getString(*v, "log.access")) {
      if (s->empty()) {
        ctx.error(posOf(*v), "log.access: expected \"stdout\", \"off\" or a file path, got ''");
      } else {
        l.access = *s;
      }
    }
  }
  if (const auto* v = t->get("format")) {
    if (auto s = ctx.getString(*v, "log.format")) {
      if (*s == "json") {
        l.format = LogFormat::Json;
      } else if (*s == "combined") {
        l.format = LogFormat::Combined;
      } else {
        ctx.error(posOf(*v), "log.format: expected \"json\" or \"combined\", got '" + *s + "'");
      }
    }
  }
  if (const auto* v = t->get("level")) {
    if (auto s = ctx.getString(*v, "log.level")) {
      static const std::map<std::string, LogLevel, std::less<>> kLevels = {
          {"debug", LogLevel::Debug},
          {"info", LogLevel::Info},
          {"warn", LogLevel::Warn},
          {"error", LogLevel::Error}};
      if (auto it = kLevels.find(*s); it != kLevels.end()) {
        l.level = it->second;
      } else {
        ctx.error(
            posOf(*v),
            "log.level: expected \"debug\", \"info\", \"warn\" or \"error\", got '" + *s + "'");
      }
    }
  }
}

// ---- [redis]: the shared store of `store = "redis"` rate limits ----

void loadRedis(LoadContext& ctx, const toml::node& n) {
  const auto* t = ctx.tableOf(n, "redis");
  if (t == nullptr) return;
  ctx.checkKeys(*t, {"url", "timeout", "failure_mode"}, {}, "in [redis]");
  RedisSettings& r = ctx.config().redis;
  r.enabled = true;
  r.pos = posOf(n);
  if (const auto* v = t->get("url")) {
    if (auto s = ctx.getString(*v, "redis.url")) {
      std::string err;
      if (!parseRedisUrl(*s, r, err)) {
        ctx.error(posOf(*v), "redis.url: " + err);
      } else {
        r.url = *s;
      }
    }
  } else {
    std::string err;
    parseRedisUrl(r.url, r, err);
  }
  if (const auto* v = t->get("timeout")) {
    if (auto d = ctx.getDuration(*v, "redis.timeout", false)) r.timeout = *d;
  }
  if (const auto* v = t->get("failure_mode")) {
    if (auto s = ctx.getString(*v, "redis.failure_mode")) {
      if (*s == "open") {
        r.failureMode = RedisFailureMode::Open;
      } else if (*s == "closed") {
        r.failureMode = RedisFailureMode::Closed;
      } else {
        ctx.error(posOf(*v),
                  "redis.failure_mode: expected \"open\" or \"closed\", got '" + *s + "'");
      }
    }
  }
}

}  // namespace sluice::config
