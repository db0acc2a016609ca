// Assertions on a LoadResult, shared by the loader tests (tests/unit/config, and
// tests/unit/middleware for the registered types).
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "config/loader.h"

namespace sluice::config::testing {

inline std::string dump(const std::vector<ConfigError>& errs) {
  std::string s;
  for (const auto& e : errs) s += e.str() + "\n";
  return s;
}

// The first error whose message contains `needle`, or nullptr.
inline const ConfigError* findError(const LoadResult& r, std::string_view needle) {
  for (const auto& e : r.errors) {
    if (e.message.find(needle) != std::string::npos) return &e;
  }
  return nullptr;
}

// Asserts the load failed with an error containing `needle` at line:col of "test.toml".
inline void expectError(const LoadResult& r, std::string_view needle, int line, int col) {
  INFO("looking for '", needle, "' in:\n", dump(r.errors));
  CHECK_FALSE(r.config.has_value());
  const ConfigError* e = findError(r, needle);
  REQUIRE(e != nullptr);
  CHECK(e->line == line);
  CHECK(e->col == col);
  CHECK(e->file == "test.toml");
}

// A valid file of lines 1-5 (a listener and pool "p", no route) to append sections to.
inline constexpr std::string_view kListenerAndPool = R"([[listener]]
name = "web"
listen = "127.0.0.1:8080"
[pool.p]
backends = [{ address = "127.0.0.1:9000" }]
)";

// Loads kListenerAndPool + `rest` as "test.toml" with the given middleware types.
inline LoadResult loadAfterBase(std::string_view rest, MiddlewareParsers types) {
  return loadConfigString(std::string(kListenerAndPool) + std::string(rest), "test.toml", types);
}

inline bool hasWarning(const LoadResult& r, std::string_view needle) {
  for (const auto& w : r.warnings)
    if (w.message.find(needle) != std::string::npos) return true;
  return false;
}

}  // namespace sluice::config::testing
