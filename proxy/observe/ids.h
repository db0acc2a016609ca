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

}  // namespace sluice::observe
