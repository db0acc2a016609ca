// The config loader: reads a TOML file with toml++, interpolates ${ENV}, validates every
// key and fills the plain structs of config/schema.h. It reports every problem it finds
// (not only the first), each with the 1-based line:col of the offending key or value, so
// `sluice -t` can print them all at once. Never throws. No DNS lookups (backend host
// names are checked by `sluice -t` only, config/backend_dns.h).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/middleware_types.h"
#include "config/schema.h"

namespace sluice::config {

struct ConfigError {
  std::string file;
  int line = 0;  // 1-based; 0 = not tied to a position (e.g. the file cannot be read)
  int col = 0;
  std::string message;

  // "FILE:LINE:COL: message", or "FILE: message" when line is 0.
  std::string str() const;
};

struct LoadResult {
  std::optional<Config> config;       // set only when `errors` is empty
  std::vector<ConfigError> errors;    // sorted by position
  std::vector<ConfigError> warnings;  // valid but probably not what was meant
};

// Orders errors or warnings by position (stable), as a LoadResult keeps them.
void sortByPosition(std::vector<ConfigError>& list);

// Reads and validates the file at `path`. Config::file is set to `path`. [middleware.NAME]
// tables are parsed by the parser of their `type` in `middlewareTypes` (the proxy passes
// middleware::parsers()); any other type is an error.
LoadResult loadConfigFile(const std::string& path, MiddlewareParsers middlewareTypes);

// Same, for text already in memory; `fileName` is used in errors and Config::file.
LoadResult loadConfigString(std::string_view text, const std::string& fileName,
                            MiddlewareParsers middlewareTypes);

}  // namespace sluice::config
