#include "proxy/upstream/retry_policy.h"

namespace sluice::upstream {

using observe::UpstreamErrorKind;

bool isIdempotentMethod(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "PUT" || m == "DELETE" || m == "TRACE";
}

namespace {
bool isStale(const AttemptFailure& f) {
  return f.reusedConnection && f.kind == UpstreamErrorKind::Reset && !f.responseBytes;
}
}  // namespace

bool blameBackend(const AttemptFailure& f) { return !isStale(f); }

RetryDecision decideRetry(const AttemptFailure& f) {
  const bool replayable = !f.bodySent && !f.responseBytes && !f.websocket;
  if (!replayable) return RetryDecision::Fail;
  if (isStale(f) && !f.staleRetried && f.idempotent) return RetryDecision::RetryStale;
  const bool connectError = f.kind == UpstreamErrorKind::ConnectFailed ||
                            f.kind == UpstreamErrorKind::ConnectTimeout ||
                            f.kind == UpstreamErrorKind::TlsHandshake;
  const bool retryable = connectError || (f.kind == UpstreamErrorKind::Reset && f.idempotent);
  if (retryable && f.attempts < f.maxRetries) return RetryDecision::Retry;
  return RetryDecision::Fail;
}

int failureStatus(UpstreamErrorKind kind) {
  // 504 is for a backend that took the connection but did not answer in response_timeout; one
  // that could not be reached at all is a 502, like a refused connect.
  return kind == UpstreamErrorKind::Timeout ? 504 : 502;
}

}  // namespace sluice::upstream
