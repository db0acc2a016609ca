// Request ids and W3C trace context. One IdGenerator per worker thread (no shared state): a
// splitmix64 stream seeded from the OS, which is plenty for ids that only need to be unique.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::observe {

class IdGenerator {
 public:
  IdGenerator();
  uint64_t next();
  // 32 lower-case hex characters.
  void requestId(std::string& out);
  void hex(std::string& out, size_t bytes);

 private:
  uint64_t state_;
};

// A client-supplied X-Request-Id is kept when it is 1..128 of [A-Za-z0-9._:-].
bool isSaneRequestId(std::string_view id);

// Builds the traceparent to send upstream: the incoming one's trace-id and flags with a new
// parent-id when `incoming` is valid, else a new trace. Appends to `out`.
void nextTraceparent(std::string_view incoming, IdGenerator& gen, std::string& out);
bool isValidTraceparent(std::string_view tp);

// 16 lower-case hex characters of `v`, most significant byte first.
void appendHex64(std::string& out, uint64_t v);
void writeHex64(char* out, uint64_t v);

// Sampling with [tracing] (TraceIdRatioBased): a trace without a parent is sampled when the
// lower 8 bytes of its id, read as a big-endian number, are below ratio x 2^64.
uint64_t sampleThreshold(double ratio);  // UINT64_MAX: every trace
inline bool sampledByRatio(uint64_t traceIdLow, uint64_t threshold) {
  return threshold == UINT64_MAX || traceIdLow < threshold;
}

// The span ids of a request traced with [tracing].
struct TraceStart {
  char spanId[16];    // the server span (hex)
  char parentId[16];  // the incoming traceparent's parent-id, when hasParent
  bool hasParent = false;
  bool sampled = false;
};
// With [tracing]: like nextTraceparent (its parent-id is the id of the CLIENT span toward the
// backend), but parent-based sampling: an incoming valid traceparent's sampled flag decides,
// else `threshold` on the new trace id, and the flags sent say the decision. Fills `ts`; the
// server span id is made only for a sampled request.
void startTrace(std::string_view incoming, IdGenerator& gen, uint64_t threshold, std::string& out,
                TraceStart& ts);

}  // namespace sluice::observe
