// [tracing]: OpenTelemetry export settings (see docs/configuration.md).

#include "config/sections.h"
#include "config/units.h"

namespace sluice::config {

namespace {

// "http://host[:port][/path]" -> host, port, path. https is refused with a hint: the exporter
// speaks plain HTTP (a local collector or agent is the usual next hop).
bool parseEndpoint(std::string_view url, TracingSettings& t, std::string& err) {
  constexpr std::string_view kHttp = "http://";
  if (url.substr(0, 8) == "https://") {
    err = "https endpoints are not supported; send to a local collector over http://";
    return false;
  }
  if (url.substr(0, kHttp.size()) != kHttp) {
    err = "expected an http:// URL such as \"http://collector:4318/v1/traces\", got '" +
          std::string(url) + "'";
    return false;
  }
  std::string_view rest = url.substr(kHttp.size());
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  t.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (t.path.find_first_of(" \t\r\n#") != std::string::npos) {
    err = "the path may not contain spaces, control characters or '#'";
    return false;
  }
  if (authority.empty() || authority.find('@') != std::string_view::npos) {
    err = "expected a host (without user info) after http://";
    return false;
  }
  // Without a port: 80. "[v6]" alone is bracketed without a port.
  const bool hasPort = authority.back() != ']' && authority.find(':') != std::string_view::npos &&
                       (authority.front() != '[' || authority.find("]:") != std::string_view::npos);
  HostPort hp;
  std::string hpErr;
  if (!parseHostPort(hasPort ? std::string(authority) : std::string(authority) + ":80", hp,
                     hpErr)) {
    err = hpErr;
    return false;
  }
  t.host = hp.host;
  t.port = hp.port;
  return true;
}

}  // namespace

void loadTracing(LoadContext& ctx, const toml::node& n) {
  const auto* tbl = ctx.tableOf(n, "tracing");
  if (tbl == nullptr) return;
  ctx.checkKeys(*tbl,
                {"otlp_endpoint", "sample_ratio", "service_name", "resource_attributes",
                 "queue_size", "batch_size", "export_interval", "export_timeout"},
                {}, "in [tracing]");
  TracingSettings& t = ctx.config().tracing;
  t.enabled = true;
  t.pos = posOf(n);
  if (const auto* v = ctx.required(*tbl, "otlp_endpoint", t.pos, "tracing",
                                   "(e.g. \"http://127.0.0.1:4318/v1/traces\")")) {
    if (auto s = ctx.getString(*v, "tracing.otlp_endpoint")) {
      std::string err;
      if (parseEndpoint(*s, t, err))
        t.endpoint = *s;
      else
        ctx.error(posOf(*v), "tracing.otlp_endpoint: " + err);
    }
  }
  if (const auto* v = tbl->get("sample_ratio")) {
    if (auto d = ctx.getNumber(*v, "tracing.sample_ratio", 0.0, 1.0)) t.sampleRatio = *d;
  }
  if (const auto* v = tbl->get("service_name")) {
    if (auto s = ctx.getString(*v, "tracing.service_name")) {
      if (s->empty())
        ctx.error(posOf(*v), "tracing.service_name: must not be empty");
      else
        t.serviceName = *s;
    }
  }
  if (const auto* v = tbl->get("resource_attributes")) {
    if (auto attrs = ctx.getStringTable(*v, "tracing.resource_attributes")) {
      for (auto& [key, value] : *attrs) {
        if (key.value == "service.name") {
          ctx.error(key.pos,
                    "tracing.resource_attributes: set service.name with tracing.service_name");
          continue;
        }
        t.resourceAttributes.emplace_back(key.value, value);
      }
    }
  }
  if (const auto* v = tbl->get("queue_size")) {
    if (auto i = ctx.getInt(*v, "tracing.queue_size", 16, 1 << 20)) t.queueSize = uint32_t(*i);
  }
  if (const auto* v = tbl->get("batch_size")) {
    if (auto i = ctx.getInt(*v, "tracing.batch_size", 1, 8192)) t.batchSize = uint32_t(*i);
  }
  if (const auto* v = tbl->get("export_interval")) {
    if (auto d = ctx.getDuration(*v, "tracing.export_interval", false)) t.exportInterval = *d;
  }
  if (const auto* v = tbl->get("export_timeout")) {
    if (auto d = ctx.getDuration(*v, "tracing.export_timeout", false)) t.exportTimeout = *d;
  }
}

}  // namespace sluice::config
