// The retry decision after a failed upstream attempt, as a pure function of what is known about
// the attempt (tested as a table in tests/unit/upstream/retry_policy_test.cpp).
#pragma once

#include <cstdint>
#include <string_view>

#include "proxy/observe/metrics.h"

namespace sluice::upstream {

struct AttemptFailure {
  observe::UpstreamErrorKind kind = observe::UpstreamErrorKind::Reset;
  bool reusedConnection = false;  // the attempt used a pooled keep-alive connection
  bool staleRetried = false;      // this request already had its free stale-connection retry
  bool bodySent = false;          // request body bytes went to the backend
  bool responseBytes = false;     // any response byte arrived
  bool idempotent = false;        // the request method (RFC 9110 9.2.2)
  bool websocket = false;
  uint32_t attempts = 0;    // counted attempts so far (the failed one not yet counted)
  uint32_t maxRetries = 0;  // the pool's `retries`
};

enum class RetryDecision : uint8_t {
  RetryStale,  // a pooled connection the backend had closed: retry, no attempt counted, no blame
  Retry,       // try another backend; the failed one is skipped and the attempt counted
  Fail,        // answer the client (502, or 504 for a response timeout)
};

bool isIdempotentMethod(std::string_view method);
RetryDecision decideRetry(const AttemptFailure& f);
// Whether the failure counts against the backend (passive outlier detection): everything but
// the stale pooled connection.
bool blameBackend(const AttemptFailure& f);
// The status the client gets when the exchange gives up.
int failureStatus(observe::UpstreamErrorKind kind);

}  // namespace sluice::upstream
