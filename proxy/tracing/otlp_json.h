// OTLP/HTTP JSON encoding of span records (the protobuf JSON mapping of
// ExportTraceServiceRequest): resourceSpans -> resource attributes (service.name first) ->
// scopeSpans (scope "sluice") -> spans. Ids are lower-case hex, times are Unix nanoseconds as
// strings, integer attributes are {"intValue":"N"} and string ones {"stringValue":"..."}.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proxy/tracing/span_ring.h"

namespace sluice::tracing {

struct Resource {
  std::string serviceName = "sluice";
  std::vector<std::pair<std::string, std::string>> attributes;
};

// Interned names (routes, patterns, pools) as the exporter thread sees them; a miss asks the
// process-wide table once.
class NameCache {
 public:
  const std::string& get(uint32_t id);

 private:
  std::unordered_map<uint32_t, std::string> names_;
};

// Appends the whole request body for `n` records. `monoToUnixNs` is added to the records'
// monotonic times.
void encodeOtlpJson(const SpanRecord* spans, size_t n, const Resource& res, int64_t monoToUnixNs,
                    NameCache& names, std::string& out);

}  // namespace sluice::tracing
