// Metric accumulation and Prometheus text rendering.
#include "proxy/observe/metrics.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <map>
#include <tuple>

namespace sluice::observe {

namespace {
std::mutex gNamesMu;
std::unordered_map<std::string, uint32_t> gNameIds;
std::vector<std::string> gNames{""};  // id 0 = ""
}  // namespace

uint32_t internName(std::string_view name) {
  std::lock_guard<std::mutex> lock(gNamesMu);
  auto it = gNameIds.find(std::string(name));
  if (it != gNameIds.end()) return it->second;
  uint32_t id = uint32_t(gNames.size());
  gNames.emplace_back(name);
  gNameIds.emplace(std::string(name), id);
  return id;
}

std::string nameOf(uint32_t id) {
  std::lock_guard<std::mutex> lock(gNamesMu);
  return id < gNames.size() ? gNames[id] : std::string();
}

const char* upstreamErrorKindName(UpstreamErrorKind k) {
  switch (k) {
    case UpstreamErrorKind::ConnectFailed:
      return "connect_failed";
    case UpstreamErrorKind::ConnectTimeout:
      return "connect_timeout";
    case UpstreamErrorKind::Reset:
      return "reset";
    case UpstreamErrorKind::Timeout:
      return "timeout";
    case UpstreamErrorKind::BadResponse:
      return "bad_response";
    case UpstreamErrorKind::TlsHandshake:
      return "tls_handshake";
  }
  return "unknown";
}

const char* rateLimitResultName(RateLimitResult r) {
  switch (r) {
    case RateLimitResult::Allowed:
      return "allowed";
    case RateLimitResult::Limited:
      return "limited";
    case RateLimitResult::StoreError:
      return "store_error";
  }
  return "unknown";
}

const char* redisErrorKindName(RedisErrorKind k) {
  switch (k) {
    case RedisErrorKind::Connect:
      return "connect";
    case RedisErrorKind::ConnectionLost:
      return "connection_lost";
    case RedisErrorKind::Timeout:
      return "timeout";
    case RedisErrorKind::Reply:
      return "reply";
  }
  return "unknown";
}

const char* connRefusalName(ConnRefusal r) {
  switch (r) {
    case ConnRefusal::MaxConnections:
      return "max_connections";
    case ConnRefusal::PerIp:
      return "per_ip";
    case ConnRefusal::FdLimit:
      return "fd_limit";
  }
  return "unknown";
}

void Histogram::observe(double seconds) {
  for (size_t i = 0; i < kDurationBuckets.size(); ++i) {
    if (seconds <= kDurationBuckets[i]) {
      ++buckets[i];
      break;
    }
  }
  ++count;
  sum += seconds;
}

void Histogram::merge(const Histogram& o) {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
  count += o.count;
  sum += o.sum;
}

void WorkerMetrics::request(uint32_t route, uint32_t pool, int status, double seconds) {
  uint64_t key = (uint64_t(route) << 36) | (uint64_t(pool) << 16) | uint64_t(status & 0xffff);
  ++requests[key];
  durations[route].observe(seconds);
}

void WorkerMetrics::upstreamError(uint32_t pool, uint32_t backend, UpstreamErrorKind kind) {
  uint64_t key = (uint64_t(pool) << 32) | (uint64_t(backend) << 8) | uint64_t(kind);
  ++upstreamErrors[key];
}

namespace {
const char* const kTlsVersions[] = {"TLSv1.2", "TLSv1.3", "other"};
}

void WorkerMetrics::tlsHandshake(uint32_t listener, const char* version, bool resumed) {
  uint64_t v = 2;
  for (uint64_t i = 0; i < 2; ++i)
    if (std::strcmp(version, kTlsVersions[i]) == 0) v = i;
  ++tlsHandshakes[(uint64_t(listener) << 16) | (v << 1) | (resumed ? 1 : 0)];
}

void WorkerMetrics::tlsHandshakeError(uint32_t listener, const std::string& reason) {
  // Interning takes a lock, but only on a failed handshake.
  ++tlsErrors[(uint64_t(listener) << 32) | internName(reason)];
}

void WorkerMetrics::merge(const WorkerMetrics& o) {
  for (auto& [k, v] : o.tlsHandshakes) tlsHandshakes[k] += v;
  for (auto& [k, v] : o.tlsErrors) tlsErrors[k] += v;
  for (auto& [k, v] : o.requests) requests[k] += v;
  for (auto& [k, v] : o.durations) durations[k].merge(v);
  for (auto& [k, v] : o.upstreamDurations) upstreamDurations[k].merge(v);
  for (auto& [k, v] : o.upstreamErrors) upstreamErrors[k] += v;
  for (auto& [k, v] : o.connectionsActive) connectionsActive[k] += v;
  for (auto& [k, v] : o.connectionsTotal) connectionsTotal[k] += v;
  for (auto& [k, v] : o.connectionsRefused) connectionsRefused[k] += v;
  for (auto& [k, v] : o.ratelimit) ratelimit[k] += v;
  for (auto& [k, v] : o.splitRequests) splitRequests[k] += v;
  redisClients += o.redisClients;
  redisConnected += o.redisConnected;
  for (size_t i = 0; i < redisErrors.size(); ++i) redisErrors[i] += o.redisErrors[i];
}

static void appendLabelValue(std::string& out, const std::string& v) {
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out.append("\\n");
      continue;
    }
    out.push_back(c);
  }
}

static void appendNumber(std::string& out, double v) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%.6g", v);
  out.append(buf, size_t(n));
}

static void appendUnsigned(std::string& out, uint64_t v) {
  out.append(std::to_string(v));
}

// One histogram family with one label, series sorted by label value, cumulative buckets.
static void appendHistograms(std::string& out, const char* name, const char* help,
                             const char* label, const std::unordered_map<uint32_t, Histogram>& by) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" histogram\n");
  std::map<std::string, Histogram> hists;
  for (const auto& [k, v] : by) hists[nameOf(k)].merge(v);
  for (const auto& entry : hists) {
    const std::string& value = entry.first;  // clang 14 cannot capture a structured binding
    const Histogram& h = entry.second;
    auto series = [&](const char* suffix) {
      out.append(name).append(suffix).append("{").append(label).append("=\"");
      appendLabelValue(out, value);
      out.push_back('"');
    };
    uint64_t cum = 0;
    for (size_t i = 0; i <= kDurationBuckets.size(); ++i) {
      series("_bucket");
      out.append(",le=\"");
      if (i < kDurationBuckets.size()) {
        cum += h.buckets[i];
        appendNumber(out, kDurationBuckets[i]);
      } else {
        cum = h.count;
        out.append("+Inf");
      }
      out.append("\"} ");
      appendUnsigned(out, cum);
      out.push_back('\n');
    }
    series("_sum");
    out.append("} ");
    appendNumber(out, h.sum);
    out.push_back('\n');
    series("_count");
    out.append("} ");
    appendUnsigned(out, h.count);
    out.push_back('\n');
  }
}

// A counter family with fixed label sets: {labels ("" for none), value}.
static void appendCounter(std::string& out, std::string_view name, std::string_view help,
                          std::initializer_list<std::pair<std::string_view, uint64_t>> series) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ");
  out.append(name).append(" counter\n");
  for (const auto& [labels, v] : series) {
    out.append(name);
    if (!labels.empty()) out.append("{").append(labels).append("}");
    out.push_back(' ');
    appendUnsigned(out, v);
    out.push_back('\n');
  }
}

void renderPrometheus(const WorkerMetrics& m, const ProcessMetrics& p, std::string& out) {
  // Sort by names so the output is stable from scrape to scrape.
  out.append("# HELP sluice_requests_total Requests answered, by route, pool and status code.\n");
  out.append("# TYPE sluice_requests_total counter\n");
  std::map<std::tuple<std::string, std::string, int>, uint64_t> reqs;
  for (auto& [k, v] : m.requests)
    reqs[{nameOf(uint32_t(k >> 36)), nameOf(uint32_t((k >> 16) & 0xfffff)), int(k & 0xffff)}] += v;
  for (auto& [k, v] : reqs) {
    out.append("sluice_requests_total{route=\"");
    appendLabelValue(out, std::get<0>(k));
    out.append("\",pool=\"");
    appendLabelValue(out, std::get<1>(k));
    out.append("\",code=\"");
    out.append(std::to_string(std::get<2>(k)));
    out.append("\"} ");
    appendUnsigned(out, v);
    out.push_back('\n');
  }

  appendHistograms(out, "sluice_request_duration_seconds",
                   "Time from the complete request head to the end of the answer, by route.",
                   "route", m.durations);
  appendHistograms(out, "sluice_upstream_duration_seconds",
                   "Backend time to the response head (the attempt that answered), by pool.",
                   "pool", m.upstreamDurations);

  out.append("# HELP sluice_upstream_errors_total Failed upstream attempts, by kind.\n");
  out.append("# TYPE sluice_upstream_errors_total counter\n");
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> errs;
  for (auto& [k, v] : m.upstreamErrors)
    errs[{nameOf(uint32_t(k >> 32)), nameOf(uint32_t((k >> 8) & 0xffffff)),
          upstreamErrorKindName(UpstreamErrorKind(k & 0xff))}] += v;
  for (auto& [k, v] : errs) {
    out.append("sluice_upstream_errors_total{pool=\"");
    appendLabelValue(out, std::get<0>(k));
    out.append("\",backend=\"");
    appendLabelValue(out, std::get<1>(k));
    out.append("\",kind=\"");
    out.append(std::get<2>(k));
    out.append("\"} ");
    appendUnsigned(out, v);
    out.push_back('\n');
  }

  // One series per backend: 0/1 gauges and the state-change counter.
  auto perBackend = [&](const char* name, const char* type, const char* help, auto value) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
    for (const auto& b : p.backends) {
      out.append(name).append("{pool=\"");
      appendLabelValue(out, b.pool);
      out.append("\",backend=\"");
      appendLabelValue(out, b.backend);
      out.append("\"} ");
      appendUnsigned(out, value(b));
      out.push_back('\n');
    }
  };
  using Backend = ProcessMetrics::BackendState;
  perBackend("sluice_backend_up", "gauge", "1 when the backend takes traffic.",
             [](const Backend& b) { return uint64_t(b.up); });
  perBackend("sluice_backend_draining", "gauge", "1 when the backend is drained (admin API).",
             [](const Backend& b) { return uint64_t(b.draining); });
  perBackend("sluice_backend_state_changes_total", "counter",
             "Backend state changes (up, down, ejected, draining).",
             [](const Backend& b) { return b.stateChanges; });

  out.append("# HELP sluice_split_weight Live weight of each pool of a split route.\n");
  out.append("# TYPE sluice_split_weight gauge\n");
  for (auto& w : p.splitWeights) {
    out.append("sluice_split_weight{route=\"");
    appendLabelValue(out, w.route);
    out.append("\",pool=\"");
    appendLabelValue(out, w.pool);
    out.append("\"} ");
    appendUnsigned(out, w.weight);
    out.push_back('\n');
  }
  out.append("# HELP sluice_rollbacks_total Canary rollbacks (automatic or by the admin API).\n");
  out.append("# TYPE sluice_rollbacks_total counter\n");
  for (auto& w : p.splitWeights) {
    out.append("sluice_rollbacks_total{route=\"");
    appendLabelValue(out, w.route);
    out.append("\",pool=\"");
    appendLabelValue(out, w.pool);
    out.append("\"} ");
    appendUnsigned(out, w.rollbacks);
    out.push_back('\n');
  }
  out.append("# HELP sluice_release_step Promotion steps reached by the release (0 = none).\n");
  out.append("# TYPE sluice_release_step gauge\n");
  for (auto& r : p.releaseSteps) {
    out.append("sluice_release_step{route=\"");
    appendLabelValue(out, r.route);
    out.append("\"} ");
    appendUnsigned(out, r.step);
    out.push_back('\n');
  }

  out.append("# HELP sluice_connections_active Open client connections, by listener.\n");
  out.append("# TYPE sluice_connections_active gauge\n");
  std::map<std::string, int64_t> active;
  for (auto& [k, v] : m.connectionsActive) active[nameOf(k)] += v;
  for (auto& [k, v] : active) {
    out.append("sluice_connections_active{listener=\"");
    appendLabelValue(out, k);
    out.append("\"} ");
    out.append(std::to_string(v));
    out.push_back('\n');
  }
  out.append("# HELP sluice_connections_total Accepted client connections, by listener.\n");
  out.append("# TYPE sluice_connections_total counter\n");
  std::map<std::string, uint64_t> total;
  for (auto& [k, v] : m.connectionsTotal) total[nameOf(k)] += v;
  for (auto& [k, v] : total) {
    out.append("sluice_connections_total{listener=\"");
    appendLabelValue(out, k);
    out.append("\"} ");
    appendUnsigned(out, v);
    out.push_back('\n');
  }

  out.append(
      "# HELP sluice_connections_refused_total Client connections not taken, by listener and "
      "reason (max_connections, per_ip: closed at once; fd_limit: accept failed for lack of "
      "file descriptors, the listener paused).\n");
  out.append("# TYPE sluice_connections_refused_total counter\n");
  std::map<std::pair<std::string, std::string>, uint64_t> refused;
  for (auto& [k, v] : m.connectionsRefused)
    refused[{nameOf(uint32_t(k >> 8)), connRefusalName(ConnRefusal(k & 0xff))}] += v;
  for (auto& [k, v] : refused) {
    out.append("sluice_connections_refused_total{listener=\"");
    appendLabelValue(out, k.first);
    out.append("\",reason=\"");
    out.append(k.second);
    out.append("\"} ");
    appendUnsigned(out, v);
    out.push_back('\n');
  }

  out.append("# HELP sluice_tls_handshakes_total Completed TLS handshakes.\n");
  out.append("# TYPE sluice_tls_handshakes_total counter\n");
  std::map<std::tuple<std::string, std::string, bool>, uint64_t> hs;
  for (auto& [k, v] : m.tlsHandshakes)
    hs[{nameOf(uint32_t(k >> 16)), kTlsVersions[(k >> 1) & 0x7fff], (k & 1) != 0}] += v;
  for (auto& [k, v] : hs) {
    out.append("sluice_tls_handshakes_total{listener=\"");
    appendLabelValue(out, std::get<0>(k));
    out.append("\",version=\"");
    out.append(std::get<1>(k));
    out.append(std::get<2>(k) ? "\",resumed=\"true\"} " : "\",resumed=\"false\"} ");
    appendUnsigned(out, v);
    out.push_back('\n');
  }
  out.append("# HELP sluice_tls_handshake_errors_total Failed TLS handshakes, by reason.\n");
  out.append("# TYPE sluice_tls_handshake_errors_total counter\n");
  std::map<std::pair<std::string, std::string>, uint64_t> he;
  for (auto& [k, v] : m.tlsErrors) he[{nameOf(uint32_t(k >> 32)), nameOf(uint32_t(k))}] += v;
  for (auto& [k, v] : he) {
    out.append("sluice_tls_handshake_errors_total{listener=\"");
    appendLabelValue(out, k.first);
    out.append("\",reason=\"");
    appendLabelValue(out, k.second);
    out.append("\"} ");
    appendUnsigned(out, v);
    out.push_back('\n');
  }

  out.append("# HELP sluice_split_requests_total Requests of split routes, by the pool chosen.\n");
  out.append("# TYPE sluice_split_requests_total counter\n");
  std::map<std::pair<std::string, std::string>, uint64_t> split;
  for (auto& [k, v] : m.splitRequests)
    split[{nameOf(uint32_t(k >> 32)), nameOf(uint32_t(k & 0xffffffff))}] += v;
  for (auto& [k, v] : split) {
    out.append("sluice_split_requests_total{route=\"");
    appendLabelValue(out, k.first);
    out.append("\",pool=\"");
    appendLabelValue(out, k.second);
    out.append("\"} ");
    appendUnsigned(out, v);
    out.push_back('\n');
  }

  out.append("# HELP sluice_ratelimit_total Rate-limit decisions, by middleware and result.\n");
  out.append("# TYPE sluice_ratelimit_total counter\n");
  std::map<std::pair<std::string, std::string>, uint64_t> rl;
  for (auto& [k, v] : m.ratelimit)
    rl[{nameOf(uint32_t(k >> 8)), rateLimitResultName(RateLimitResult(k & 0xff))}] += v;
  for (auto& [k, v] : rl) {
    out.append("sluice_ratelimit_total{middleware=\"");
    appendLabelValue(out, k.first);
    out.append("\",result=\"");
    out.append(k.second);
    out.append("\"} ");
    appendUnsigned(out, v);
    out.push_back('\n');
  }
  if (m.redisClients > 0) {
    out.append("# HELP sluice_redis_up 1 when every worker's Redis connection is ready.\n");
    out.append("# TYPE sluice_redis_up gauge\nsluice_redis_up ");
    out.append(m.redisConnected >= m.redisClients ? "1\n" : "0\n");
    out.append("# HELP sluice_redis_connections Ready Redis connections (one per worker).\n");
    out.append("# TYPE sluice_redis_connections gauge\nsluice_redis_connections ");
    appendUnsigned(out, m.redisConnected);
    out.push_back('\n');
    out.append("# HELP sluice_redis_errors_total Redis failures, by kind.\n");
    out.append("# TYPE sluice_redis_errors_total counter\n");
    for (size_t i = 0; i < m.redisErrors.size(); ++i) {
      out.append("sluice_redis_errors_total{kind=\"");
      out.append(redisErrorKindName(RedisErrorKind(i)));
      out.append("\"} ");
      appendUnsigned(out, m.redisErrors[i]);
      out.push_back('\n');
    }
  }

  out.append("# HELP sluice_config_reloads_total Configuration reloads, by result.\n");
  out.append("# TYPE sluice_config_reloads_total counter\n");
  out.append("sluice_config_reloads_total{result=\"success\"} ");
  appendUnsigned(out, p.reloadsOk);
  out.append("\nsluice_config_reloads_total{result=\"error\"} ");
  appendUnsigned(out, p.reloadsError);
  out.append(
      "\n# HELP sluice_config_last_reload_successful 1 when the last reload (or the startup) "
      "succeeded.\n# TYPE sluice_config_last_reload_successful gauge\n"
      "sluice_config_last_reload_successful ");
  out.append(p.lastReloadOk ? "1" : "0");
  out.append("\n# HELP sluice_config_generation Generation of the running configuration.\n");
  out.append("# TYPE sluice_config_generation gauge\nsluice_config_generation ");
  appendUnsigned(out, p.generation);
  out.push_back('\n');
  if (p.tracing.enabled) {
    const auto& t = p.tracing;
    appendCounter(out, "sluice_tracing_spans_exported_total", "Spans the OTLP collector accepted.",
                  {{"", t.exported}});
    appendCounter(out, "sluice_tracing_dropped_total",
                  "Spans dropped: a worker's queue was full, or the export failed after its "
                  "retries.",
                  {{"reason=\"queue_full\"", t.droppedQueueFull},
                   {"reason=\"export_failed\"", t.droppedExportFailed}});
    appendCounter(out, "sluice_tracing_export_errors_total",
                  "Failed export attempts (no answer, or an error status).",
                  {{"", t.exportErrors}});
  }
}

}  // namespace sluice::observe
