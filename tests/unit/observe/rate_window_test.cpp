// Unit tests for proxy/observe/rate_window: quantiles from histogram buckets and the last
// minute's rates, error ratios and sparkline series from samples of cumulative metrics.
#include "proxy/observe/rate_window.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <string>

using namespace sluice::observe;
using nlohmann::json;

namespace {

json window(const RateWindow& w) {
  std::string out;
  w.appendJson(out);
  return json::parse(out);
}

const json& named(const json& list, const std::string& name) {
  for (const json& x : list)
    if (x.contains("name") && x["name"] == name) return x;
  static const json none;
  FAIL("no entry named " << name << " in " << list.dump());
  return none;
}

}  // namespace

TEST_SUITE("rate_window") {
  TEST_CASE("histogramQuantile interpolates inside the bucket like histogram_quantile()") {
    Histogram h;
    CHECK(std::isnan(histogramQuantile(h, 0.5)));
    for (int i = 0; i < 50; ++i) h.observe(0.07);  // (0.05, 0.1]
    for (int i = 0; i < 10; ++i) h.observe(0.2);   // (0.1, 0.25]
    for (int i = 0; i < 40; ++i) h.observe(0.3);   // (0.25, 0.5]
    // rank 50 of 100: the top of the first non-empty bucket; rank 95: 0.25 + 0.25 * 35 / 40.
    CHECK(histogramQuantile(h, 0.5) == doctest::Approx(0.1));
    CHECK(histogramQuantile(h, 0.95) == doctest::Approx(0.46875));
    CHECK(histogramQuantile(h, 0.55) == doctest::Approx(0.175));
    Histogram first;
    first.observe(0.0002);
    first.observe(0.0004);
    CHECK(histogramQuantile(first, 0.5) == doctest::Approx(0.00025));  // from 0 to 0.5 ms
    Histogram fast;  // sub-millisecond answers are told apart from 1-2 ms ones
    for (int i = 0; i < 90; ++i) fast.observe(0.0004);
    for (int i = 0; i < 10; ++i) fast.observe(0.002);
    CHECK(histogramQuantile(fast, 0.5) < 0.0005);
    CHECK(histogramQuantile(fast, 0.99) > 0.001);
    Histogram tail;
    tail.observe(30);  // above every bound: the highest bound known
    CHECK(histogramQuantile(tail, 0.99) == doctest::Approx(10));
  }

  TEST_CASE("empty window") {
    RateWindow w(2000, 60000);
    json j = window(w);
    CHECK(j["interval_ms"] == 2000);
    CHECK(j["span_ms"] == 0);
    CHECK(j["routes"].empty());
    CHECK(j["tls"]["handshakes"] == 0);
  }

  TEST_CASE("rates, error ratio and quantiles over the window, per route and pool") {
    const uint32_t route = internName("rw_route");
    const uint32_t pool = internName("rw_pool");
    const uint32_t listener = internName("rw_listener");
    const uint32_t mw = internName("rw_limit");
    RateWindow w(2000, 60000);
    // Cumulative, as the workers keep it; the first answer is before the window.
    WorkerMetrics m;
    m.request(route, pool, 200, 0.003);
    m.upstreamResponse(pool, 0.002);
    m.connectionsTotal[listener] = 5;
    w.add(1000, m);
    // 10 s later: 18 more answers, 2 of them 502, of 300 ms each; the backend took 250 ms.
    for (int i = 0; i < 16; ++i) m.request(route, pool, 200, 0.3);
    for (int i = 0; i < 2; ++i) m.request(route, pool, 502, 0.3);
    for (int i = 0; i < 18; ++i) m.upstreamResponse(pool, 0.25);
    m.request(0, 0, 404, 0.001);  // no route: counted under route "" and no pool
    m.connectionsTotal[listener] = 25;
    m.connectionsActive[listener] = 3;
    m.ratelimitDecision(mw, RateLimitResult::Allowed);
    m.ratelimitDecision(mw, RateLimitResult::Limited);
    m.ratelimitDecision(mw, RateLimitResult::Limited);
    m.tlsHandshakes[1] = 4;
    w.add(11000, m);

    json j = window(w);
    INFO(j.dump());
    CHECK(j["span_ms"] == 10000);
    const json& r = named(j["routes"], "rw_route");
    CHECK(r["requests"] == 18);
    CHECK(r["errors"] == 2);
    CHECK(r["rps"].get<double>() == doctest::Approx(1.8));
    CHECK(r["error_ratio"].get<double>() == doctest::Approx(0.1111).epsilon(0.001));
    // All 18 in (0.25, 0.5]: p50 = 0.25 + 0.25 * 9 / 18.
    CHECK(r["p50_ms"].get<double>() == doctest::Approx(375));
    CHECK(r["p99_ms"].get<double>() == doctest::Approx(497.5));
    const json& p = named(j["pools"], "rw_pool");
    CHECK(p["requests"] == 18);
    CHECK(p["errors"] == 2);
    // The pool's latency is the backend's: all 18 in (0.1, 0.25].
    CHECK(p["p50_ms"].get<double>() == doctest::Approx(175));
    CHECK(named(j["routes"], "")["requests"] == 1);
    CHECK(j["pools"].size() == 1);  // no pool "" for local answers
    // One point per interval, oldest first, null where there is no history.
    CHECK(r["rps_series"].size() == 30);
    CHECK(r["rps_series"][28].is_null());
    CHECK(r["rps_series"][29].get<double>() == doctest::Approx(1.8));
    CHECK(r["p95_series"][29].get<double>() == doctest::Approx(487.5));
    const json& l = named(j["listeners"], "rw_listener");
    CHECK(l["active"] == 3);
    CHECK(l["accepted"] == 20);
    CHECK(l["cps"].get<double>() == doctest::Approx(2));
    REQUIRE(j["ratelimit"].size() == 1);
    CHECK(j["ratelimit"][0]["middleware"] == "rw_limit");
    CHECK(j["ratelimit"][0]["allowed"] == 1);
    CHECK(j["ratelimit"][0]["limited"] == 2);
    CHECK(j["ratelimit"][0]["store_error"] == 0);
    CHECK(j["tls"]["handshakes"] == 4);
  }

  TEST_CASE("the ring keeps one minute; quiet intervals have a rate of 0 and no p95") {
    const uint32_t route = internName("rw_ring_route");
    RateWindow w(2000, 60000);
    WorkerMetrics m;
    for (uint64_t t = 0; t <= 100000; t += 2000) {
      if (t == 100000) m.request(route, 0, 200, 0.01);
      w.add(t, m);
    }
    CHECK(w.samples() == 31);
    json j = window(w);
    CHECK(j["span_ms"] == 60000);
    const json& r = named(j["routes"], "rw_ring_route");
    CHECK(r["requests"] == 1);
    CHECK(r["rps_series"].size() == 30);
    CHECK(r["rps_series"][0] == 0);
    CHECK(r["p95_series"][0].is_null());
    CHECK(r["rps_series"][29].get<double>() == doctest::Approx(0.5));
    CHECK(r["p95_series"][29].get<double>() == doctest::Approx(9.75));
  }

  TEST_CASE("a counter that went backwards is taken as started again") {
    const uint32_t route = internName("rw_reset_route");
    RateWindow w(2000, 60000);
    WorkerMetrics before;
    for (int i = 0; i < 10; ++i) before.request(route, 0, 200, 0.01);
    w.add(0, before);
    WorkerMetrics after;
    after.request(route, 0, 200, 0.01);
    w.add(2000, after);
    json j = window(w);
    CHECK(named(j["routes"], "rw_reset_route")["requests"] == 1);
  }
}
