// The pure retry policy (proxy/upstream/retry_policy): one table of failed attempts and what
// the policy says about each (retry, blame), plus the client status and idempotent methods.
#include "proxy/upstream/retry_policy.h"

#include <doctest/doctest.h>

#include <string_view>

using namespace sluice::upstream;
using sluice::observe::UpstreamErrorKind;

namespace {

const char* decisionName(RetryDecision d) {
  switch (d) {
    case RetryDecision::RetryStale:
      return "RetryStale";
    case RetryDecision::Retry:
      return "Retry";
    case RetryDecision::Fail:
      return "Fail";
  }
  return "?";
}

// What a failure looks like, built from a few words so each table row reads as a sentence.
struct Row {
  const char* what;
  AttemptFailure failure;
  RetryDecision decision;
  bool blame;
};

AttemptFailure failure(UpstreamErrorKind kind, bool idempotent, uint32_t attempts,
                       uint32_t maxRetries) {
  AttemptFailure f;
  f.kind = kind;
  f.idempotent = idempotent;
  f.attempts = attempts;
  f.maxRetries = maxRetries;
  return f;
}
// The same failure with one more fact set (reusedConnection, bodySent, ...).
AttemptFailure with(AttemptFailure f, bool AttemptFailure::*fact) {
  f.*fact = true;
  return f;
}
AttemptFailure pooled(AttemptFailure f) { return with(f, &AttemptFailure::reusedConnection); }
AttemptFailure staleRetried(AttemptFailure f) { return with(f, &AttemptFailure::staleRetried); }
AttemptFailure bodySent(AttemptFailure f) { return with(f, &AttemptFailure::bodySent); }
AttemptFailure responseBytes(AttemptFailure f) { return with(f, &AttemptFailure::responseBytes); }
AttemptFailure websocket(AttemptFailure f) { return with(f, &AttemptFailure::websocket); }

constexpr bool kGet = true, kPost = false;
using K = UpstreamErrorKind;
constexpr RetryDecision kStale = RetryDecision::RetryStale, kRetry = RetryDecision::Retry,
                        kFail = RetryDecision::Fail;

}  // namespace

TEST_SUITE("retry_policy") {
  TEST_CASE("decideRetry and blameBackend over a table of failed attempts") {
    const Row rows[] = {
        // A pooled keep-alive connection the backend had closed: one free retry, no blame.
        {"stale pooled reset, GET", pooled(failure(K::Reset, kGet, 0, 0)), kStale, false},
        {"stale pooled reset, GET, retries left", pooled(failure(K::Reset, kGet, 0, 3)), kStale,
         false},
        {"stale pooled reset, POST, no retries", pooled(failure(K::Reset, kPost, 0, 0)), kFail,
         false},
        {"stale pooled reset, POST, retries left", pooled(failure(K::Reset, kPost, 0, 2)), kFail,
         false},
        {"stale pooled reset, GET, already stale-retried, no retries",
         staleRetried(pooled(failure(K::Reset, kGet, 0, 0))), kFail, false},
        {"stale pooled reset, GET, already stale-retried, retries left",
         staleRetried(pooled(failure(K::Reset, kGet, 0, 1))), kRetry, false},
        {"pooled reset after response bytes is not stale",
         responseBytes(pooled(failure(K::Reset, kGet, 0, 3))), kFail, true},
        {"pooled connection timing out is not stale", pooled(failure(K::Timeout, kGet, 0, 3)),
         kFail, true},
        // Connect-phase failures: nothing reached the backend, any method may go elsewhere.
        {"connect failed, retries left", failure(K::ConnectFailed, kPost, 0, 2), kRetry, true},
        {"connect failed, last retry", failure(K::ConnectFailed, kPost, 1, 2), kRetry, true},
        {"connect failed, retries exhausted", failure(K::ConnectFailed, kPost, 2, 2), kFail, true},
        {"connect failed, no retries", failure(K::ConnectFailed, kGet, 0, 0), kFail, true},
        {"connect timeout, retries left", failure(K::ConnectTimeout, kGet, 0, 1), kRetry, true},
        {"connect timeout, retries exhausted", failure(K::ConnectTimeout, kGet, 1, 1), kFail,
         true},
        {"TLS handshake, retries left", failure(K::TlsHandshake, kPost, 0, 1), kRetry, true},
        {"TLS handshake, retries exhausted", failure(K::TlsHandshake, kPost, 1, 1), kFail, true},
        // A fresh connection reset: only an idempotent request may be replayed.
        {"reset on POST, retries left", failure(K::Reset, kPost, 0, 3), kFail, true},
        {"reset on GET, retries left", failure(K::Reset, kGet, 0, 3), kRetry, true},
        {"reset on GET, retries exhausted", failure(K::Reset, kGet, 3, 3), kFail, true},
        // Nothing replayable: body already sent, response bytes seen, a websocket.
        {"body already sent (PUT reset)", bodySent(failure(K::Reset, kGet, 0, 3)), kFail, true},
        {"body already sent, connect-class error", bodySent(failure(K::ConnectFailed, kPost, 0, 3)),
         kFail, true},
        {"response bytes, reset", responseBytes(failure(K::Reset, kGet, 0, 3)), kFail, true},
        {"websocket connect failed", websocket(failure(K::ConnectFailed, kGet, 0, 3)), kFail,
         true},
        {"websocket stale pooled reset", websocket(pooled(failure(K::Reset, kGet, 0, 3))), kFail,
         false},
        // The backend took the request and did not answer well: never retried.
        {"response timeout", failure(K::Timeout, kGet, 0, 3), kFail, true},
        {"bad response", failure(K::BadResponse, kGet, 0, 3), kFail, true},
    };
    for (const Row& r : rows) {
      CAPTURE(r.what);
      CHECK(std::string_view(decisionName(decideRetry(r.failure))) ==
            std::string_view(decisionName(r.decision)));
      CHECK(blameBackend(r.failure) == r.blame);
    }
  }

  TEST_CASE("failureStatus: 504 for a response timeout, 502 otherwise") {
    CHECK(failureStatus(K::Timeout) == 504);
    for (K k : {K::ConnectFailed, K::ConnectTimeout, K::Reset, K::BadResponse, K::TlsHandshake}) {
      CAPTURE(int(k));
      CHECK(failureStatus(k) == 502);
    }
  }

  TEST_CASE("isIdempotentMethod follows RFC 9110 9.2.2 (case-sensitive method tokens)") {
    for (std::string_view m : {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}) {
      CAPTURE(m);
      CHECK(isIdempotentMethod(m));
    }
    for (std::string_view m : {"POST", "PATCH", "CONNECT", "get", "", "GETS"}) {
      CAPTURE(m);
      CHECK_FALSE(isIdempotentMethod(m));
    }
  }
}
