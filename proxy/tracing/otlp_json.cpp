// OTLP JSON encoding (see otlp_json.h).
#include "proxy/tracing/otlp_json.h"

#include <charconv>
#include <string_view>

#include "proxy/observe/log.h"
#include "proxy/observe/metrics.h"

namespace sluice::tracing {

const std::string& NameCache::get(uint32_t id) {
  auto it = names_.find(id);
  if (it == names_.end()) it = names_.emplace(id, observe::nameOf(id)).first;
  return it->second;
}

namespace {

// JSON string content: runs of plain printable ASCII are appended at once (the common case,
// a few hundred bytes per span); anything else goes through the log's escaper.
void appendEscaped(std::string& out, std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size()) {
      const auto c = static_cast<unsigned char>(s[j]);
      if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') break;
      ++j;
    }
    out.append(s.data() + i, j - i);
    if (j == s.size()) return;
    observe::appendJsonEscaped(out, s.substr(j, 1));
    i = j + 1;
  }
}

void appendInt(std::string& out, int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, size_t(r.ptr - buf));
}

class Attributes {
 public:
  explicit Attributes(std::string& out) : out_(out) { out_.append("\"attributes\":["); }
  ~Attributes() { out_.push_back(']'); }
  Attributes(const Attributes&) = delete;
  Attributes& operator=(const Attributes&) = delete;

  void str(std::string_view key, std::string_view v) {
    open(key);
    out_.append("{\"stringValue\":\"");
    appendEscaped(out_, v);
    out_.append("\"}}");
  }
  // Only when not empty.
  void strIf(std::string_view key, std::string_view v) {
    if (!v.empty()) str(key, v);
  }
  void integer(std::string_view key, int64_t v) {
    open(key);
    out_.append("{\"intValue\":\"");
    appendInt(out_, v);
    out_.append("\"}}");
  }

 private:
  void open(std::string_view key) {
    if (!first_) out_.push_back(',');
    first_ = false;
    out_.append("{\"key\":\"");
    appendEscaped(out_, key);
    out_.append("\",\"value\":");
  }
  std::string& out_;
  bool first_ = true;
};

void field(std::string& out, std::string_view key, std::string_view hex) {
  out.push_back('"');
  out.append(key);
  out.append("\":\"");
  out.append(hex);
  out.append("\",");
}

void times(std::string& out, uint64_t startNs, uint64_t endNs, int64_t offset) {
  out.append("\"startTimeUnixNano\":\"");
  appendInt(out, int64_t(startNs) + offset);
  out.append("\",\"endTimeUnixNano\":\"");
  appendInt(out, int64_t(endNs) + offset);
  out.append("\",");
}

// "host:port", "[v6]:port" -> host (no brackets), port (0 when absent).
void splitAddress(std::string_view a, std::string_view& host, int& port) {
  host = a;
  port = 0;
  const size_t colon = a.rfind(':');
  if (colon != std::string_view::npos && a.find(']', colon) == std::string_view::npos &&
      (a.front() == '[' || a.find(':') == colon)) {
    host = a.substr(0, colon);
    port = 0;
    for (char c : a.substr(colon + 1)) {
      if (c < '0' || c > '9' || port > 65535) {
        port = 0;
        break;
      }
      port = port * 10 + (c - '0');
    }
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
}

void serverSpan(const SpanRecord& r, int64_t offset, NameCache& names, std::string& out) {
  const std::string& pattern = names.get(r.patternId);
  const std::string_view trace(r.traceId, 32);
  out.push_back('{');
  field(out, "traceId", trace);
  field(out, "spanId", std::string_view(r.spanId, 16));
  if (r.hasParent) field(out, "parentSpanId", std::string_view(r.parentId, 16));
  out.append("\"name\":\"");
  appendEscaped(out, r.method.view());
  out.push_back(' ');
  appendEscaped(out, pattern);
  out.append("\",\"kind\":2,");
  times(out, r.startNs, r.endNs, offset);
  {
    Attributes a(out);
    a.str("http.request.method", r.method.view());
    a.str("http.route", pattern);
    a.integer("http.response.status_code", r.status);
    a.strIf("client.address", r.clientIp.view());
    a.str("url.path", r.path.view());
    a.str("url.scheme", r.tls ? "https" : "http");
    a.strIf("server.address", r.host.view());
    a.strIf("user_agent.original", r.userAgent.view());
    const std::string& route = names.get(r.routeId);
    a.str("sluice.route", route);
    if (r.poolId) a.str("sluice.pool", names.get(r.poolId));
    a.strIf("sluice.backend", r.backend.view());
    if (r.split) a.str("sluice.split", route);
    a.strIf("sluice.ratelimit", r.ratelimit.view());
  }
  // Status: ERROR for an answer the server failed (5xx), else UNSET (left out).
  out.append(r.status >= 500 ? ",\"status\":{\"code\":2}}" : "}");
}

// The attempt(s) toward the backend: from the first connect to the response head (or to the
// end of the exchange when no head came).
void clientSpan(const SpanRecord& r, int64_t offset, NameCache& names, std::string& out) {
  out.append(",{");
  field(out, "traceId", std::string_view(r.traceId, 32));
  field(out, "spanId", std::string_view(r.clientSpanId, 16));
  field(out, "parentSpanId", std::string_view(r.spanId, 16));
  out.append("\"name\":\"");
  appendEscaped(out, r.method.view());
  out.append("\",\"kind\":3,");
  const bool head = r.upstreamHeadNs != 0;
  times(out, r.upstreamStartNs, head ? r.upstreamHeadNs : r.endNs, offset);
  {
    Attributes a(out);
    a.str("http.request.method", r.method.view());
    std::string_view host;
    int port = 0;
    splitAddress(r.backend.view(), host, port);
    a.strIf("server.address", host);
    if (port) a.integer("server.port", port);
    if (head) a.integer("http.response.status_code", r.status);
    if (r.poolId) a.str("sluice.pool", names.get(r.poolId));
    a.strIf("sluice.backend", r.backend.view());
  }
  out.append(!head || r.status >= 500 ? ",\"status\":{\"code\":2}}" : "}");
}

}  // namespace

void encodeOtlpJson(const SpanRecord* spans, size_t n, const Resource& res, int64_t monoToUnixNs,
                    NameCache& names, std::string& out) {
  out.append("{\"resourceSpans\":[{\"resource\":{");
  {
    Attributes a(out);
    a.str("service.name", res.serviceName);
    for (const auto& [k, v] : res.attributes) a.str(k, v);
  }
  out.append("},\"scopeSpans\":[{\"scope\":{\"name\":\"sluice\",\"version\":\"" SLUICE_VERSION
             "\"},\"spans\":[");
  for (size_t i = 0; i < n; ++i) {
    if (i) out.push_back(',');
    serverSpan(spans[i], monoToUnixNs, names, out);
    if (spans[i].upstreamStartNs) clientSpan(spans[i], monoToUnixNs, names, out);
  }
  out.append("]}]}]}");
}

}  // namespace sluice::tracing
