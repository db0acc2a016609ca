#include "proxy/upstream/outcome.h"

namespace sluice::upstream {

void recordOutcome(const Pool& pool, Backend& backend, const AttemptOutcome& o, uint64_t nowMs) {
  if (o.kind == AttemptOutcome::Kind::Response) {
    if (o.status >= 500)
      reportFailure(pool, backend, nowMs);
    else
      reportSuccess(pool, backend, nowMs);
    return;
  }
  if (o.blame) reportFailure(pool, backend, nowMs);
  if (o.error == observe::UpstreamErrorKind::ConnectFailed) requestResolve();
}

}  // namespace sluice::upstream
