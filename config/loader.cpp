// TOML -> Config (see loader.h). The sections (config/*_section.cpp) walk the parsed toml++
// tree in dependency order; every problem is recorded with its position and loading goes on,
// so one `sluice -t` run shows the operator everything that is wrong with the file.
#include "config/loader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "config/load_context.h"
#include "config/sections.h"

namespace sluice::config {

std::string ConfigError::str() const {
  if (line <= 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + message;
}

void sortByPosition(std::vector<ConfigError>& list) {
  std::stable_sort(list.begin(), list.end(), [](const ConfigError& a, const ConfigError& b) {
    return a.line != b.line ? a.line < b.line : a.col < b.col;
  });
}

namespace {

void loadSections(LoadContext& ctx, const toml::table& root) {
  ctx.checkKeys(
      root,
      {"server", "admin", "log", "listener", "pool", "route", "redis", "middleware", "tracing"}, {},
      "at the top level");
  if (const auto* n = root.get("server")) loadServer(ctx, *n);
  if (const auto* n = root.get("admin")) loadAdmin(ctx, *n);
  if (const auto* n = root.get("log")) loadLog(ctx, *n);
  const auto* listeners = root.get("listener");
  if (listeners != nullptr) loadListeners(ctx, *listeners);
  if (listeners == nullptr || (listeners->is_array() && listeners->as_array()->empty())) {
    ctx.error({1, 1}, "at least one [[listener]] is required");
  }
  if (const auto* n = root.get("pool")) loadPools(ctx, *n);
  if (const auto* n = root.get("redis")) loadRedis(ctx, *n);
  if (const auto* n = root.get("middleware")) loadMiddleware(ctx, *n);
  if (const auto* n = root.get("route")) loadRoutes(ctx, *n);
  if (const auto* n = root.get("tracing")) loadTracing(ctx, *n);
}

// Whole-file warnings, once every section is loaded.
void finalChecks(LoadContext& ctx, const toml::table& root) {
  const Config& cfg = ctx.config();
  for (const auto& m : cfg.middleware) {
    if (ctx.usedMiddleware.count(m.name) == 0)
      ctx.warn(m.pos, "middleware '" + m.name + "' is not used by any route");
  }
  for (const auto& pool : cfg.pools) {
    if (ctx.usedPools.count(pool.name) == 0) {
      ctx.warn(pool.pos, "pool '" + pool.name + "' is not used by any route");
    }
  }
  if (cfg.server.releaseStore == ReleaseStore::Redis && !cfg.redis.enabled)
    ctx.error(cfg.server.releaseStorePos,
              "server.release_store: \"redis\" needs a [redis] table (or use \"local\")");
  bool allRedirect = !cfg.listeners.empty();
  for (const auto& l : cfg.listeners) allRedirect = allRedirect && !l.redirectHttps.empty();
  if (cfg.routes.empty() && !cfg.listeners.empty() && !allRedirect &&
      root.get("route") == nullptr) {
    ctx.warn({1, 1}, "no [[route]] defined: every request will be answered 404");
  }
}

LoadResult load(std::string_view text, const std::string& file, MiddlewareParsers middlewareTypes) {
  LoadContext ctx(file, middlewareTypes);
  try {
    toml::table root;
    try {
      root = toml::parse(text, std::string_view(file));
    } catch (const toml::parse_error& e) {
      ctx.error(toPos(e.source()), "TOML syntax error: " + std::string(e.description()));
      return ctx.finish();
    }
    loadSections(ctx, root);
    finalChecks(ctx, root);
  } catch (const std::exception& e) {
    ctx.error({0, 0}, std::string("internal error while loading the config: ") + e.what());
  } catch (...) {
    ctx.error({0, 0}, "internal error while loading the config");
  }
  return ctx.finish();
}

}  // namespace

LoadResult loadConfigString(std::string_view text, const std::string& fileName,
                            MiddlewareParsers middlewareTypes) {
  try {
    return load(text, fileName, middlewareTypes);
  } catch (...) {
    // Only reachable on allocation failure while building the result.
    LoadResult r;
    r.errors.push_back({fileName, 0, 0, "internal error while loading the config"});
    return r;
  }
}

LoadResult loadConfigFile(const std::string& path, MiddlewareParsers middlewareTypes) {
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
  return loadConfigString(text, path, middlewareTypes);
}

}  // namespace sluice::config
