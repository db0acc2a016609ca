// Access-log line formatting (JSON or nginx "combined"). Lines are appended to the worker's
// buffer; the worker hands the buffer to the LogWriter once per loop turn.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/observe/log.h"

namespace sluice::observe {

struct AccessRecord {
  std::string_view requestId, traceId, clientIp, method, host, path, upstream, route, pool,
      userAgent, referer;
  std::string_view ratelimit = "-";
  std::string_view tls = "-";
  int status = 0;
  uint64_t bytesSent = 0;
  uint64_t bodyBytesSent = 0;
  double durationMs = 0;
  double upstreamMs = -1;  // < 0: no upstream answer
  int httpMinor = 1;
};

void appendAccessLine(std::string& out, const AccessRecord& r);

}  // namespace sluice::observe
