// Unit tests for proxy/observe/metrics: accumulation, merge() and Prometheus rendering.
#include "proxy/observe/metrics.h"

#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

using namespace sluice::observe;

namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

bool hasLine(const std::string& text, const std::string& line) {
  for (const std::string& l : lines(text))
    if (l == line) return true;
  return false;
}

size_t countPrefix(const std::string& text, const std::string& prefix) {
  size_t n = 0;
  for (const std::string& l : lines(text))
    if (l.rfind(prefix, 0) == 0) ++n;
  return n;
}

std::string render(const WorkerMetrics& m, const ProcessMetrics& p = {}) {
  std::string out;
  renderPrometheus(m, p, out);
  return out;
}

}  // namespace

TEST_SUITE("metrics") {
  TEST_CASE("internName") {
    uint32_t a = internName("metrics_test_name_a");
    uint32_t b = internName("metrics_test_name_b");
    CHECK(a != 0);
    CHECK(a != b);
    CHECK(internName("metrics_test_name_a") == a);
    CHECK(nameOf(a) == "metrics_test_name_a");
    CHECK(nameOf(b) == "metrics_test_name_b");
    CHECK(nameOf(0) == "");
    CHECK(nameOf(0xfffff) == "");
  }

  TEST_CASE("Histogram observe and merge") {
    Histogram h;
    h.observe(0.0005);  // on a bound: counted in that bucket
    h.observe(0.00051);
    h.observe(11);  // above every bound: only in count/+Inf
    CHECK(h.buckets[0] == 1);
    CHECK(h.buckets[1] == 1);
    uint64_t inBuckets = 0;
    for (uint64_t b : h.buckets) inBuckets += b;
    CHECK(inBuckets == 2);
    CHECK(h.count == 3);
    CHECK(h.sum == doctest::Approx(11.00101));
    Histogram o;
    o.observe(0.0001);
    h.merge(o);
    CHECK(h.buckets[0] == 2);
    CHECK(h.count == 4);
    CHECK(h.sum == doctest::Approx(11.00111));
  }

  TEST_CASE("renderPrometheus: requests, histogram, errors, gauges") {
    const uint32_t route = internName("mt_render_route");
    const uint32_t pool = internName("mt_render_pool");
    const uint32_t backend = internName("10.0.0.1:8080");
    const uint32_t listener = internName("mt_render_listener");
    WorkerMetrics m;
    m.request(route, pool, 200, 0.003);
    m.request(route, pool, 200, 0.2);
    m.request(route, pool, 502, 7.0);
    m.request(route, pool, 504, 30.0);
    m.upstreamError(pool, backend, UpstreamErrorKind::Reset);
    m.upstreamError(pool, backend, UpstreamErrorKind::Reset);
    m.upstreamError(pool, backend, UpstreamErrorKind::ConnectTimeout);
    m.connectionsActive[listener] = 2;
    m.connectionsTotal[listener] = 5;
    ProcessMetrics p;
    p.generation = 3;
    p.reloadsOk = 2;
    p.reloadsError = 1;
    p.backends.push_back({"mt_render_pool", "10.0.0.1:8080", true, false, 4});
    p.backends.push_back({"mt_render_pool", "10.0.0.2:8080", false});

    std::string out = render(m, p);
    INFO(out);
    CHECK(hasLine(out, "# TYPE sluice_requests_total counter"));
    CHECK(hasLine(
        out,
        R"(sluice_requests_total{route="mt_render_route",pool="mt_render_pool",code="200"} 2)"));
    CHECK(hasLine(
        out,
        R"(sluice_requests_total{route="mt_render_route",pool="mt_render_pool",code="502"} 1)"));
    CHECK(hasLine(
        out,
        R"(sluice_requests_total{route="mt_render_route",pool="mt_render_pool",code="504"} 1)"));
    CHECK(countPrefix(out, "sluice_requests_total{") == 3);

    // Cumulative buckets, +Inf == count.
    CHECK(hasLine(out, "# TYPE sluice_request_duration_seconds histogram"));
    const std::string b = R"(sluice_request_duration_seconds_bucket{route="mt_render_route",le=")";
    const std::vector<std::pair<std::string, int>> want = {
        {"0.0005", 0}, {"0.001", 0}, {"0.0025", 0}, {"0.005", 1}, {"0.01", 1},
        {"0.025", 1},  {"0.05", 1},  {"0.1", 1},    {"0.25", 2},  {"0.5", 2},
        {"1", 2},      {"2.5", 2},   {"5", 2},      {"10", 3},    {"+Inf", 4}};
    for (const auto& [bound, n] : want) {
      const std::string& le = bound;  // clang 14 cannot capture a structured binding
      CAPTURE(le);
      CHECK(hasLine(out, b + le + "\"} " + std::to_string(n)));
    }
    CHECK(countPrefix(out, b) == want.size());
    // The buckets come in ascending order.
    std::vector<std::string> ls = lines(out);
    size_t firstBucket = 0;
    while (firstBucket < ls.size() && ls[firstBucket].rfind(b, 0) != 0) ++firstBucket;
    REQUIRE(firstBucket + want.size() <= ls.size());
    for (size_t i = 0; i < want.size(); ++i)
      CHECK(ls[firstBucket + i] == b + want[i].first + "\"} " + std::to_string(want[i].second));
    CHECK(hasLine(out, R"(sluice_request_duration_seconds_sum{route="mt_render_route"} 37.203)"));
    CHECK(hasLine(out, R"(sluice_request_duration_seconds_count{route="mt_render_route"} 4)"));

    CHECK(hasLine(out, "# TYPE sluice_upstream_errors_total counter"));
    CHECK(hasLine(
        out,
        R"(sluice_upstream_errors_total{pool="mt_render_pool",backend="10.0.0.1:8080",kind="reset"} 2)"));
    CHECK(hasLine(
        out,
        R"(sluice_upstream_errors_total{pool="mt_render_pool",backend="10.0.0.1:8080",kind="connect_timeout"} 1)"));

    CHECK(hasLine(out, R"(sluice_backend_up{pool="mt_render_pool",backend="10.0.0.1:8080"} 1)"));
    CHECK(hasLine(out, R"(sluice_backend_up{pool="mt_render_pool",backend="10.0.0.2:8080"} 0)"));
    CHECK(hasLine(
        out,
        R"(sluice_backend_state_changes_total{pool="mt_render_pool",backend="10.0.0.1:8080"} 4)"));
    CHECK(hasLine(
        out,
        R"(sluice_backend_state_changes_total{pool="mt_render_pool",backend="10.0.0.2:8080"} 0)"));
    CHECK(hasLine(out, R"(sluice_connections_active{listener="mt_render_listener"} 2)"));
    CHECK(hasLine(out, R"(sluice_connections_total{listener="mt_render_listener"} 5)"));
    CHECK(hasLine(out, R"(sluice_config_reloads_total{result="success"} 2)"));
    CHECK(hasLine(out, R"(sluice_config_reloads_total{result="error"} 1)"));
    CHECK(hasLine(out, "sluice_config_generation 3"));
    CHECK(out.back() == '\n');

    // Every family has exactly one TYPE line and HELP line.
    for (const char* fam :
         {"sluice_requests_total", "sluice_request_duration_seconds",
          "sluice_upstream_errors_total", "sluice_backend_up", "sluice_backend_state_changes_total",
          "sluice_connections_active", "sluice_connections_total", "sluice_config_reloads_total",
          "sluice_config_generation"}) {
      CAPTURE(fam);
      CHECK(countPrefix(out, std::string("# TYPE ") + fam + " ") == 1);
      CHECK(countPrefix(out, std::string("# HELP ") + fam + " ") == 1);
    }
  }

  TEST_CASE("renderPrometheus: empty metrics still render the process families") {
    std::string out = render(WorkerMetrics{});
    CHECK(countPrefix(out, "sluice_requests_total{") == 0);
    CHECK(countPrefix(out, "sluice_request_duration_seconds_bucket{") == 0);
    CHECK(hasLine(out, R"(sluice_config_reloads_total{result="success"} 0)"));
    CHECK(hasLine(out, "sluice_config_generation 0"));
  }

  TEST_CASE("renderPrometheus: label values are escaped") {
    const uint32_t route = internName("mt_we\"ird\\route\nx");
    WorkerMetrics m;
    m.request(route, 0, 404, 0.01);
    std::string out = render(m);
    INFO(out);
    CHECK(hasLine(out,
                  R"(sluice_requests_total{route="mt_we\"ird\\route\nx",pool="",code="404"} 1)"));
    CHECK(hasLine(out, R"(sluice_request_duration_seconds_count{route="mt_we\"ird\\route\nx"} 1)"));
  }

  TEST_CASE("merge() sums every metric") {
    const uint32_t route = internName("mt_merge_route");
    const uint32_t route2 = internName("mt_merge_route2");
    const uint32_t pool = internName("mt_merge_pool");
    const uint32_t backend = internName("mt_merge_backend");
    const uint32_t listener = internName("mt_merge_listener");
    WorkerMetrics w1, w2;
    w1.request(route, pool, 200, 0.004);
    w1.request(route, pool, 200, 0.3);
    w2.request(route, pool, 200, 0.02);
    w2.request(route, pool, 500, 2.0);
    w2.request(route2, pool, 201, 0.001);
    w1.upstreamError(pool, backend, UpstreamErrorKind::Timeout);
    w2.upstreamError(pool, backend, UpstreamErrorKind::Timeout);
    w2.upstreamError(pool, backend, UpstreamErrorKind::BadResponse);
    w1.connectionsActive[listener] = 3;
    w2.connectionsActive[listener] = -1;
    w1.connectionsTotal[listener] = 10;
    w2.connectionsTotal[listener] = 4;
    w1.connectionRefused(listener, ConnRefusal::PerIp);
    w2.connectionRefused(listener, ConnRefusal::PerIp);
    w2.connectionRefused(listener, ConnRefusal::FdLimit);

    WorkerMetrics total;
    total.merge(w1);
    total.merge(w2);
    const Histogram& h = total.durations.at(route);
    CHECK(h.count == 4);
    CHECK(h.sum == doctest::Approx(2.324));
    CHECK(h.buckets[3] == 1);  // 0.004
    CHECK(h.buckets[5] == 1);  // 0.02
    CHECK(h.buckets[8] == 0);
    CHECK(h.buckets[9] == 1);   // 0.3
    CHECK(h.buckets[11] == 1);  // 2.0
    CHECK(total.durations.at(route2).count == 1);
    CHECK(total.connectionsActive.at(listener) == 2);
    CHECK(total.connectionsTotal.at(listener) == 14);

    std::string out = render(total);
    CHECK(out.find("sluice_connections_refused_total{listener=\"mt_merge_listener\","
                   "reason=\"per_ip\"} 2\n") != std::string::npos);
    CHECK(out.find("sluice_connections_refused_total{listener=\"mt_merge_listener\","
                   "reason=\"fd_limit\"} 1\n") != std::string::npos);
    CHECK(out.find("reason=\"max_connections\"") == std::string::npos);
    INFO(out);
    CHECK(hasLine(
        out, R"(sluice_requests_total{route="mt_merge_route",pool="mt_merge_pool",code="200"} 3)"));
    CHECK(hasLine(
        out, R"(sluice_requests_total{route="mt_merge_route",pool="mt_merge_pool",code="500"} 1)"));
    CHECK(hasLine(
        out,
        R"(sluice_requests_total{route="mt_merge_route2",pool="mt_merge_pool",code="201"} 1)"));
    CHECK(hasLine(
        out, R"(sluice_request_duration_seconds_bucket{route="mt_merge_route",le="0.0025"} 0)"));
    CHECK(hasLine(
        out, R"(sluice_request_duration_seconds_bucket{route="mt_merge_route",le="0.005"} 1)"));
    CHECK(hasLine(
        out, R"(sluice_request_duration_seconds_bucket{route="mt_merge_route",le="0.025"} 2)"));
    CHECK(hasLine(out,
                  R"(sluice_request_duration_seconds_bucket{route="mt_merge_route",le="0.5"} 3)"));
    CHECK(hasLine(out,
                  R"(sluice_request_duration_seconds_bucket{route="mt_merge_route",le="2.5"} 4)"));
    CHECK(hasLine(out,
                  R"(sluice_request_duration_seconds_bucket{route="mt_merge_route",le="+Inf"} 4)"));
    CHECK(hasLine(out, R"(sluice_request_duration_seconds_count{route="mt_merge_route"} 4)"));
    CHECK(hasLine(
        out,
        R"(sluice_upstream_errors_total{pool="mt_merge_pool",backend="mt_merge_backend",kind="timeout"} 2)"));
    CHECK(hasLine(
        out,
        R"(sluice_upstream_errors_total{pool="mt_merge_pool",backend="mt_merge_backend",kind="bad_response"} 1)"));
    CHECK(hasLine(out, R"(sluice_connections_active{listener="mt_merge_listener"} 2)"));
    CHECK(hasLine(out, R"(sluice_connections_total{listener="mt_merge_listener"} 14)"));

    // Merging into a copy leaves the sources alone.
    CHECK(w1.requests.size() == 1);
    CHECK(w1.durations.at(route).count == 2);
  }

  TEST_CASE("renderPrometheus: upstream duration by pool, draining, last reload") {
    const uint32_t pool = internName("mt_upstream_pool");
    WorkerMetrics w1, w2;
    w1.upstreamResponse(pool, 0.004);
    w2.upstreamResponse(pool, 0.3);
    w2.upstreamResponse(pool, 20);
    WorkerMetrics m;
    m.merge(w1);
    m.merge(w2);
    CHECK(m.upstreamDurations.at(pool).count == 3);
    ProcessMetrics p;
    p.lastReloadOk = false;
    p.backends.push_back({"mt_upstream_pool", "10.0.0.9:80", false, true});
    p.backends.push_back({"mt_upstream_pool", "10.0.0.8:80", true, false});
    const std::string out = render(m, p);
    INFO(out);
    CHECK(hasLine(out, "# TYPE sluice_upstream_duration_seconds histogram"));
    const std::string b = R"(sluice_upstream_duration_seconds_bucket{pool="mt_upstream_pool",le=")";
    CHECK(hasLine(out, b + "0.005\"} 1"));
    CHECK(hasLine(out, b + "0.25\"} 1"));
    CHECK(hasLine(out, b + "0.5\"} 2"));
    CHECK(hasLine(out, b + "10\"} 2"));
    CHECK(hasLine(out, b + "+Inf\"} 3"));
    CHECK(countPrefix(out, b) == kDurationBuckets.size() + 1);
    CHECK(hasLine(out, R"(sluice_upstream_duration_seconds_count{pool="mt_upstream_pool"} 3)"));
    CHECK(hasLine(out, R"(sluice_upstream_duration_seconds_sum{pool="mt_upstream_pool"} 20.304)"));
    CHECK(hasLine(out,
                  R"(sluice_backend_draining{pool="mt_upstream_pool",backend="10.0.0.9:80"} 1)"));
    CHECK(hasLine(out,
                  R"(sluice_backend_draining{pool="mt_upstream_pool",backend="10.0.0.8:80"} 0)"));
    CHECK(hasLine(out, "sluice_config_last_reload_successful 0"));
    for (const char* fam : {"sluice_upstream_duration_seconds", "sluice_backend_draining",
                            "sluice_config_last_reload_successful"}) {
      CAPTURE(fam);
      CHECK(countPrefix(out, std::string("# TYPE ") + fam + " ") == 1);
      CHECK(countPrefix(out, std::string("# HELP ") + fam + " ") == 1);
    }
    CHECK(hasLine(render(WorkerMetrics{}), "sluice_config_last_reload_successful 1"));
  }

  TEST_CASE("upstreamErrorKindName") {
    CHECK(std::string(upstreamErrorKindName(UpstreamErrorKind::ConnectFailed)) == "connect_failed");
    CHECK(std::string(upstreamErrorKindName(UpstreamErrorKind::ConnectTimeout)) ==
          "connect_timeout");
    CHECK(std::string(upstreamErrorKindName(UpstreamErrorKind::Reset)) == "reset");
    CHECK(std::string(upstreamErrorKindName(UpstreamErrorKind::Timeout)) == "timeout");
    CHECK(std::string(upstreamErrorKindName(UpstreamErrorKind::BadResponse)) == "bad_response");
  }
}
