// libFuzzer target: arbitrary bytes as an Origin header value and as an allow_origins entry,
// through the CORS origin parser, the pattern matcher and the preflight judgement. Checks the
// invariants an attacker probes: a parsed origin serialises to something that parses again to
// the same origin, and nothing but a literal "null" pattern ever allows "null".
// Build: scripts/sanitize.sh --build-only (or cmake -DSLUICE_FUZZ=ON with clang++)
// Run:   mkdir -p /tmp/f; build-san/cors_origin_fuzz -max_total_time=60 /tmp/f \
//          tests/fuzz/corpus-cors   (new inputs go to /tmp/f; the seeds are only read)
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "middleware/cors.h"

using namespace sluice::middleware;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  // First byte splits the input into a pattern and an origin.
  const size_t cut = size ? data[0] % (size) : 0;
  const std::string_view pattern = in.substr(size ? 1 : 0, cut > 0 ? cut - 1 : 0);
  const std::string_view origin = in.substr(cut);

  if (auto o = parseOrigin(origin)) {
    auto again = parseOrigin(o->str());
    if (!again || !(*again == *o)) abort();  // normalisation is stable
  }
  CorsPolicy p;
  if (auto pat = parseOriginPattern(pattern)) p.origins.push_back(*pat);
  p.methods = {"GET", "PUT"};
  p.headers = {"content-type"};
  p.finish();
  const bool allowed = p.originAllowed(origin);
  if (origin == "null" && allowed && pattern != "null") abort();
  (void)judgePreflight(p, origin, "PUT", origin, size % 2 == 0);
  return 0;
}
