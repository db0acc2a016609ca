// One outcome per upstream attempt: what became of it (a response with its status, or a
// failure of some kind), how long it took, and whether it counts against the backend. The
// upstream request emits it once per attempt (proxy/exchange/upstream_request.cpp) and
// recordOutcome() feeds passive outlier detection, and an OutcomeSink (a split route's release
// controller: windows and automatic rollback) gets the same event.
#pragma once

#include <cstdint>

#include "proxy/observe/metrics.h"
#include "proxy/upstream/pool.h"

namespace sluice::upstream {

struct AttemptOutcome {
  enum class Kind : uint8_t { Response, Failure };
  Kind kind = Kind::Response;
  int status = 0;  // Response: the status code
  observe::UpstreamErrorKind error = observe::UpstreamErrorKind::Reset;  // Failure
  bool blame = true;  // Failure: counts against the backend (a stale pooled connection does not)
  bool afterHead = false;  // Failure: the response had started (its head was an outcome too)
  uint64_t latencyNs = 0;  // from the attempt's start to the head or the failure

  bool failed() const { return kind == Kind::Failure || status >= 500; }
};

// Receives the outcomes of the attempts of one exchange (set per request by the exchange).
class OutcomeSink {
 public:
  virtual ~OutcomeSink() = default;
  virtual void onOutcome(const Pool& pool, const AttemptOutcome& o, uint64_t nowMs) const = 0;
};

// Passive health for one attempt's outcome (a 5xx or a blamed failure is a failure); a refused
// connect also asks for host names to be re-resolved.
void recordOutcome(const Pool& pool, Backend& backend, const AttemptOutcome& o, uint64_t nowMs);

}  // namespace sluice::upstream
