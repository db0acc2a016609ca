// Access-log formatting.
#include "proxy/observe/access_log.h"

#include <cstdio>

namespace sluice::observe {

static void appendMs(std::string& out, double ms) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%.3f", ms);
  out.append(buf, size_t(n));
}

static void jsonField(std::string& out, std::string_view key, std::string_view v,
                      bool dashIfEmpty) {
  out.append(",\"");
  out.append(key);
  out.append("\":\"");
  if (v.empty() && dashIfEmpty)
    out.push_back('-');
  else
    appendJsonEscaped(out, v);
  out.push_back('"');
}

// nginx escapes '"', '\' and bytes outside printable ASCII as \xHH in combined logs.
static void appendNginxEscaped(std::string& out, std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  if (s.empty()) {
    out.push_back('-');
    return;
  }
  for (unsigned char c : s) {
    if (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f) {
      out.append("\\x");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(char(c));
    }
  }
}

void appendAccessLine(std::string& out, const AccessRecord& r) {
  int64_t now = nowUnixMs();
  if (LogWriter::instance().format() == config::LogFormat::Combined) {
    out.append(r.clientIp);
    out.append(" - - [");
    appendTimeLocal(out, now);
    out.append("] \"");
    appendNginxEscaped(out, r.method);
    out.push_back(' ');
    appendNginxEscaped(out, r.path);
    out.append(r.httpMinor == 0 ? " HTTP/1.0\" " : " HTTP/1.1\" ");
    out.append(std::to_string(r.status));
    out.push_back(' ');
    out.append(std::to_string(r.bodyBytesSent));
    out.append(" \"");
    appendNginxEscaped(out, r.referer);
    out.append("\" \"");
    appendNginxEscaped(out, r.userAgent);
    out.append("\" ");
    appendNginxEscaped(out, r.traceId);  // an addition to nginx's combined: the trace id
    out.push_back('\n');
    return;
  }
  out.append("{\"time\":\"");
  appendRfc3339Ms(out, now);
  out.push_back('"');
  jsonField(out, "request_id", r.requestId, true);
  jsonField(out, "trace_id", r.traceId, true);
  jsonField(out, "client_ip", r.clientIp, true);
  jsonField(out, "method", r.method, true);
  jsonField(out, "host", r.host, true);
  jsonField(out, "path", r.path, true);
  out.append(",\"status\":");
  out.append(std::to_string(r.status));
  out.append(",\"bytes_sent\":");
  out.append(std::to_string(r.bytesSent));
  out.append(",\"duration_ms\":");
  appendMs(out, r.durationMs);
  jsonField(out, "upstream", r.upstream, true);
  out.append(",\"upstream_ms\":");
  if (r.upstreamMs < 0)
    out.append("null");
  else
    appendMs(out, r.upstreamMs);
  jsonField(out, "route", r.route, true);
  jsonField(out, "pool", r.pool, true);
  jsonField(out, "user_agent", r.userAgent, true);
  jsonField(out, "ratelimit", r.ratelimit, true);
  jsonField(out, "tls", r.tls, true);
  out.append("}\n");
}

}  // namespace sluice::observe
