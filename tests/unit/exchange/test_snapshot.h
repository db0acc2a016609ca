// Test helper: a config snapshot from TOML text. The one place tests call the config loader
// and buildSnapshot, so a change of their signatures is a one-line fix here.
#pragma once

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.h"
#include "middleware/registry.h"
#include "proxy/snapshot.h"

namespace sluice::test {

// Mutable, so a test can add its own filters to a route (see Snapshot::routes).
inline std::shared_ptr<Snapshot> snapshotFromToml(std::string_view toml) {
  config::LoadResult r = config::loadConfigString(toml, "test.toml", middleware::parsers());
  std::string errors;
  for (const config::ConfigError& e : r.errors) errors += e.str() + "\n";
  INFO(errors);
  REQUIRE(r.config.has_value());
  static upstream::BackendRegistry registry;  // backends outlive a test's snapshot: harmless
  std::vector<std::string> warnings;
  std::string error;
  std::shared_ptr<Snapshot> snap = buildSnapshot(*r.config, registry, 1, warnings, error);
  INFO(error);
  REQUIRE(snap != nullptr);
  return snap;
}

}  // namespace sluice::test
