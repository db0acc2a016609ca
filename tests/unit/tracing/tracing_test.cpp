// Unit tests for [tracing]: the sampler and span ids (proxy/observe/ids), the per-worker span
// ring, the OTLP JSON encoding (proxy/tracing), and the [tracing] config section.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "config/loader.h"
#include "proxy/observe/ids.h"
#include "proxy/observe/metrics.h"
#include "proxy/tracing/otlp_json.h"
#include "proxy/tracing/span_ring.h"
#include "tests/unit/config/load_helpers.h"

using namespace sluice;
using nlohmann::json;

namespace {

const std::string kTrace = "0af7651916cd43dd8448eb211c80319c";
const std::string kParent = "b7ad6b7169203331";

tracing::SpanRecord record(uint64_t n) {
  tracing::SpanRecord r;
  std::string hex;
  observe::appendHex64(hex, n);
  std::memcpy(r.traceId, (hex + hex).data(), 32);
  std::memcpy(r.spanId, hex.data(), 16);
  std::memcpy(r.clientSpanId, hex.data(), 16);
  r.startNs = n;
  return r;
}

config::LoadResult loadTracing(std::string_view table) {
  return config::testing::loadAfterBase(
      "[[route]]\nname = \"r\"\npath = \"/\"\npool = \"p\"\n" + std::string(table), {});
}

}  // namespace

TEST_SUITE("tracing") {
  TEST_CASE("sampleThreshold: ratio x 2^64, 0 never, 1 always") {
    CHECK(observe::sampleThreshold(0) == 0);
    CHECK(observe::sampleThreshold(1) == UINT64_MAX);
    CHECK(observe::sampleThreshold(0.5) == (uint64_t(1) << 63));
    CHECK(observe::sampleThreshold(0.25) == (uint64_t(1) << 62));
    CHECK_FALSE(observe::sampledByRatio(0, 0));
    CHECK(observe::sampledByRatio(UINT64_MAX, UINT64_MAX));
    const uint64_t half = observe::sampleThreshold(0.5);
    CHECK(observe::sampledByRatio(half - 1, half));
    CHECK_FALSE(observe::sampledByRatio(half, half));
  }

  TEST_CASE("startTrace without a parent: the ratio decides, the flags say it") {
    observe::IdGenerator gen;
    int sampled = 0;
    for (int i = 0; i < 2000; ++i) {
      std::string tp;
      observe::TraceStart ts;
      observe::startTrace("", gen, observe::sampleThreshold(0.5), tp, ts);
      REQUIRE(observe::isValidTraceparent(tp));
      CHECK_FALSE(ts.hasParent);
      // The decision is the lower 8 bytes of the trace id against the threshold.
      const uint64_t low = std::stoull(tp.substr(19, 16), nullptr, 16);
      CHECK(ts.sampled == observe::sampledByRatio(low, observe::sampleThreshold(0.5)));
      CHECK(tp.substr(53) == (ts.sampled ? "01" : "00"));
      sampled += ts.sampled;
    }
    CHECK(sampled > 800);
    CHECK(sampled < 1200);
    std::string tp;
    observe::TraceStart ts;
    observe::startTrace("", gen, observe::sampleThreshold(0), tp, ts);
    CHECK_FALSE(ts.sampled);
    CHECK(tp.substr(53) == "00");
    tp.clear();
    observe::startTrace("garbage", gen, observe::sampleThreshold(1), tp, ts);
    CHECK(ts.sampled);
    CHECK(tp.substr(53) == "01");
    CHECK(std::string(ts.spanId, 16) != tp.substr(36, 16));  // server and client span differ
  }

  TEST_CASE("startTrace with a parent: its sampled flag decides, whatever the ratio") {
    observe::IdGenerator gen;
    std::string tp;
    observe::TraceStart ts;
    observe::startTrace("00-" + kTrace + "-" + kParent + "-01", gen, 0, tp, ts);
    CHECK(ts.sampled);
    CHECK(ts.hasParent);
    CHECK(std::string(ts.parentId, 16) == kParent);
    CHECK(tp.substr(3, 32) == kTrace);
    CHECK(tp.substr(36, 16) != kParent);
    CHECK(tp.substr(53) == "01");
    tp.clear();
    observe::startTrace("00-" + kTrace + "-" + kParent + "-00", gen, UINT64_MAX, tp, ts);
    CHECK_FALSE(ts.sampled);
    CHECK(tp.substr(53) == "00");
    tp.clear();
    observe::startTrace("00-" + kTrace + "-" + kParent + "-03", gen, 0, tp, ts);
    CHECK(ts.sampled);  // other flag bits are kept and do not matter
    CHECK(tp.substr(53) == "03");
  }

  TEST_CASE("appendHex64 is big-endian hex") {
    std::string s;
    observe::appendHex64(s, 0x0123456789abcdefull);
    CHECK(s == "0123456789abcdef");
  }

  TEST_CASE("ring: FIFO, bounded, drops counted when full") {
    tracing::SpanRing ring(4);
    for (uint64_t i = 1; i <= 6; ++i) {
      tracing::SpanRecord* r = ring.claim();
      if (i <= 4) {
        REQUIRE(r != nullptr);
        *r = record(i);
        ring.commit();
      } else {
        CHECK(r == nullptr);
      }
    }
    CHECK(ring.dropped() == 2);
    std::vector<tracing::SpanRecord> out;
    CHECK(ring.drain(out, 3) == 3);
    CHECK(out[0].startNs == 1);
    CHECK(out[2].startNs == 3);
    // Room again: wraps around.
    for (uint64_t i = 7; i <= 9; ++i) {
      tracing::SpanRecord* r = ring.claim();
      REQUIRE(r != nullptr);
      *r = record(i);
      ring.commit();
    }
    out.clear();
    CHECK(ring.drain(out, 100) == 4);
    CHECK(out[0].startNs == 4);
    CHECK(out[3].startNs == 9);
    CHECK(ring.drain(out, 100) == 0);
  }

  TEST_CASE("ring: one producer and one consumer thread lose and reorder nothing") {
    tracing::SpanRing ring(64);
    constexpr uint64_t kN = 200000;
    std::thread producer([&] {
      for (uint64_t i = 1; i <= kN;) {
        if (tracing::SpanRecord* r = ring.claim()) {
          r->startNs = i++;
          ring.commit();
        }
      }
    });
    std::vector<tracing::SpanRecord> out;
    uint64_t expect = 1;
    bool ordered = true;
    while (expect <= kN) {
      out.clear();
      ring.drain(out, 32);
      for (const auto& r : out) ordered = ordered && r.startNs == expect++;
    }
    producer.join();
    CHECK(ordered);
  }

  TEST_CASE("OTLP JSON: resource, scope, server and client spans") {
    tracing::SpanRecord r;
    std::memcpy(r.traceId, kTrace.data(), 32);
    std::memcpy(r.spanId, "1111111111111111", 16);
    std::memcpy(r.clientSpanId, "2222222222222222", 16);
    std::memcpy(r.parentId, kParent.data(), 16);
    r.hasParent = true;
    r.split = true;
    r.status = 503;
    r.routeId = observe::internName("api-route");
    r.patternId = observe::internName("/api/");
    r.poolId = observe::internName("api-pool");
    r.startNs = 1000;
    r.endNs = 5000;
    r.upstreamStartNs = 2000;
    r.upstreamHeadNs = 4000;
    r.method.set("GET");
    r.clientIp.set("10.0.0.1");
    r.host.set("example.test");
    r.backend.set("[::1]:8080");
    r.ratelimit.set("allowed");
    r.path.set("/api/x\"y");
    r.userAgent.set(std::string(300, 'u'));  // cut to 128
    tracing::Resource res;
    res.serviceName = "edge";
    res.attributes = {{"deployment.environment", "test"}};
    tracing::NameCache names;
    std::string body;
    tracing::encodeOtlpJson(&r, 1, res, 1700000000000000000, names, body);
    const json j = json::parse(body);
    const json& rs = j["resourceSpans"][0];
    CHECK(rs["resource"]["attributes"][0] ==
          json::parse(R"({"key":"service.name","value":{"stringValue":"edge"}})"));
    CHECK(rs["resource"]["attributes"][1]["key"] == "deployment.environment");
    CHECK(rs["scopeSpans"][0]["scope"]["name"] == "sluice");
    const json& spans = rs["scopeSpans"][0]["spans"];
    REQUIRE(spans.size() == 2);
    auto attrs = [](const json& span) {
      std::map<std::string, json> m;
      for (const auto& a : span["attributes"]) m[a["key"]] = a["value"];
      return m;
    };
    const json& s = spans[0];
    CHECK(s["traceId"] == kTrace);
    CHECK(s["spanId"] == "1111111111111111");
    CHECK(s["parentSpanId"] == kParent);
    CHECK(s["name"] == "GET /api/");
    CHECK(s["kind"] == 2);
    CHECK(s["startTimeUnixNano"] == "1700000000000001000");
    CHECK(s["endTimeUnixNano"] == "1700000000000005000");
    CHECK(s["status"]["code"] == 2);
    auto a = attrs(s);
    CHECK(a["http.request.method"]["stringValue"] == "GET");
    CHECK(a["http.route"]["stringValue"] == "/api/");
    CHECK(a["http.response.status_code"]["intValue"] == "503");
    CHECK(a["client.address"]["stringValue"] == "10.0.0.1");
    CHECK(a["url.path"]["stringValue"] == "/api/x\"y");
    CHECK(a["url.scheme"]["stringValue"] == "http");
    CHECK(a["server.address"]["stringValue"] == "example.test");
    CHECK(a["user_agent.original"]["stringValue"] == std::string(128, 'u'));
    CHECK(a["sluice.route"]["stringValue"] == "api-route");
    CHECK(a["sluice.pool"]["stringValue"] == "api-pool");
    CHECK(a["sluice.backend"]["stringValue"] == "[::1]:8080");
    CHECK(a["sluice.split"]["stringValue"] == "api-route");
    CHECK(a["sluice.ratelimit"]["stringValue"] == "allowed");
    const json& c = spans[1];
    CHECK(c["spanId"] == "2222222222222222");
    CHECK(c["parentSpanId"] == "1111111111111111");
    CHECK(c["kind"] == 3);
    CHECK(c["startTimeUnixNano"] == "1700000000000002000");
    CHECK(c["endTimeUnixNano"] == "1700000000000004000");
    auto ca = attrs(c);
    CHECK(ca["server.address"]["stringValue"] == "::1");
    CHECK(ca["server.port"]["intValue"] == "8080");
    CHECK(ca["http.response.status_code"]["intValue"] == "503");
  }

  TEST_CASE("OTLP JSON: a local answer has no client span, no parent, status unset") {
    tracing::SpanRecord r = record(7);
    r.status = 200;
    r.method.set("POST");
    tracing::NameCache names;
    std::string body;
    tracing::encodeOtlpJson(&r, 1, {}, 0, names, body);
    const json j = json::parse(body);
    const json& spans = j["resourceSpans"][0]["scopeSpans"][0]["spans"];
    REQUIRE(spans.size() == 1);
    CHECK_FALSE(spans[0].contains("parentSpanId"));
    CHECK_FALSE(spans[0].contains("status"));  // UNSET
    CHECK(j["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"] == "sluice");
  }

  TEST_CASE("[tracing] config: defaults, values and positioned errors") {
    auto ok = loadTracing(
        "[tracing]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\n"
        "sample_ratio = 0.25\nservice_name = \"edge\"\n"
        "resource_attributes = { \"deployment.environment\" = \"prod\" }\n"
        "queue_size = 100\nbatch_size = 10\nexport_interval = \"200ms\"\n"
        "export_timeout = \"2s\"\n");
    INFO(config::testing::dump(ok.errors));
    REQUIRE(ok.config.has_value());
    const config::TracingSettings& t = ok.config->tracing;
    CHECK(t.enabled);
    CHECK(t.host == "127.0.0.1");
    CHECK(t.port == 4318);
    CHECK(t.path == "/v1/traces");
    CHECK(t.sampleRatio == 0.25);
    CHECK(t.serviceName == "edge");
    REQUIRE(t.resourceAttributes.size() == 1);
    CHECK(t.resourceAttributes[0].second == "prod");
    CHECK(t.queueSize == 100);
    CHECK(t.batchSize == 10);
    CHECK(t.exportInterval.count() == 200);
    CHECK(t.exportTimeout.count() == 2000);

    auto def = loadTracing("[tracing]\notlp_endpoint = \"http://collector\"\n");
    REQUIRE(def.config.has_value());
    CHECK(def.config->tracing.port == 80);
    CHECK(def.config->tracing.path == "/");
    CHECK(def.config->tracing.sampleRatio == 1.0);
    CHECK(def.config->tracing.serviceName == "sluice");
    CHECK(def.config->tracing.queueSize == 4096);
    auto v6 = loadTracing("[tracing]\notlp_endpoint = \"http://[::1]:4318/x\"\n");
    REQUIRE(v6.config.has_value());
    CHECK(v6.config->tracing.host == "::1");
    auto none = loadTracing("");
    REQUIRE(none.config.has_value());
    CHECK_FALSE(none.config->tracing.enabled);

    // Lines: 1-5 base, 6-9 route, 10 [tracing], 11 otlp_endpoint, 12 the next key.
    struct Bad {
      std::string table, needle;
      int line, col;
    };
    const std::string ep = "[tracing]\notlp_endpoint = \"http://c\"\n";
    const Bad cases[] = {
        {"[tracing]\nsample_ratio = 1\n", "missing required key 'otlp_endpoint'", 10, 1},
        {"[tracing]\notlp_endpoint = \"https://c:4318/v1/traces\"\n",
         "https endpoints are not supported", 11, 17},
        {"[tracing]\notlp_endpoint = \"grpc://c:4317\"\n", "expected an http:// URL", 11, 17},
        {"[tracing]\notlp_endpoint = \"${SLUICE_TEST_UNSET_TRACING_VAR}\"\n",
         "tracing.otlp_endpoint", 11, 17},
        {ep + "sample_ratio = 1.5\n", "tracing.sample_ratio: must be between 0 and 1", 12, 16},
        {ep + "queue_size = 0\n", "tracing.queue_size: must be between", 12, 14},
        {ep + "export_timeout = \"soon\"\n", "tracing.export_timeout", 12, 18},
        {ep + "endpoint = \"x\"\n", "unknown key 'endpoint'", 12, 1},
    };
    for (const Bad& b : cases)
      config::testing::expectError(loadTracing(b.table), b.needle, b.line, b.col);
  }
}
