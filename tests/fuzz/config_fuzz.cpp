// libFuzzer target: arbitrary text through the config loader (TOML parse, ${ENV}
// interpolation, every section and middleware parser, cross-section checks) and, when it
// loads, through the snapshot build (routes and their RE2 patterns, pools, splits, middleware
// factories). Bad input must give errors, never a crash, a hang or a leak. Invariants: a
// config comes back exactly when there are no errors, every error has a message and a
// position inside the text.
// Build: scripts/sanitize.sh --build-only (or cmake -DSLUICE_FUZZ=ON with clang++)
// Run:   mkdir -p /tmp/f; build-san/config_fuzz -max_total_time=60 /tmp/f \
//          tests/fuzz/corpus-config   (new inputs go to /tmp/f; the seeds are only read)
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.h"
#include "middleware/registry.h"
#include "proxy/snapshot.h"
#include "proxy/upstream/pool.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = sluice::config::loadConfigString(text, "fuzz.toml", sluice::middleware::parsers());
  if (r.config.has_value() == !r.errors.empty()) abort();
  size_t lines = 1;
  for (char c : text) lines += c == '\n';
  for (const auto* list : {&r.errors, &r.warnings}) {
    for (const auto& e : *list) {
      if (e.message.empty() || e.line < 0 || size_t(e.line) > lines) abort();
      (void)e.str();
    }
  }
  if (!r.config) return 0;
  sluice::upstream::BackendRegistry registry;
  std::vector<std::string> warnings;
  std::string err;
  auto snap = sluice::buildSnapshot(*r.config, registry, 1, warnings, err);
  if (!snap && err.empty()) abort();  // a failed build says why
  return 0;
}
