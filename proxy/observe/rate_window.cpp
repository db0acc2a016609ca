// The status page's last minute, from samples of the cumulative metrics.
#include "proxy/observe/rate_window.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "proxy/observe/log.h"

namespace sluice::observe {

namespace {

// A counter's growth; a counter that went backwards started again (taken whole).
uint64_t grew(uint64_t before, uint64_t after) {
  return after >= before ? after - before : after;
}

Histogram difference(const Histogram& before, const Histogram& after) {
  Histogram d;
  if (after.count < before.count) return after;  // started again
  for (size_t i = 0; i < d.buckets.size(); ++i)
    d.buckets[i] = grew(before.buckets[i], after.buckets[i]);
  d.count = after.count - before.count;
  d.sum = after.sum - before.sum;
  return d;
}

// A JSON number with up to `digits` significant digits, or null when not finite.
void appendNumber(std::string& out, double v, int digits = 6) {
  if (!std::isfinite(v)) {
    out.append("null");
    return;
  }
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%.*g", digits, v);
  out.append(buf, size_t(n));
}

void appendName(std::string& out, uint32_t id) {
  out.push_back('"');
  appendJsonEscaped(out, nameOf(id));
  out.push_back('"');
}

}  // namespace

double histogramQuantile(const Histogram& h, double q) {
  if (h.count == 0) return std::numeric_limits<double>::quiet_NaN();
  const double rank = q * double(h.count);
  uint64_t below = 0;
  for (size_t i = 0; i < kDurationBuckets.size(); ++i) {
    const uint64_t in = h.buckets[i];
    if (in > 0 && double(below + in) >= rank) {
      const double lower = i == 0 ? 0.0 : kDurationBuckets[i - 1];
      const double upper = kDurationBuckets[i];
      return lower + (upper - lower) * std::max(0.0, rank - double(below)) / double(in);
    }
    below += in;
  }
  return kDurationBuckets.back();  // the rank is in +Inf: the highest bound we know
}

RateWindow::RateWindow(uint64_t intervalMs, uint64_t spanMs)
    : intervalMs_(intervalMs), spanMs_(spanMs), capacity_(size_t(spanMs / intervalMs) + 1) {}

void RateWindow::add(uint64_t nowMs, const WorkerMetrics& m) {
  Sample s;
  s.atMs = nowMs;
  // key: route(20) | pool(20) | status(16), as WorkerMetrics::request
  auto count = [](std::vector<Series>& v, uint32_t id, uint64_t n, bool error) {
    auto it = std::lower_bound(v.begin(), v.end(), id,
                               [](const Series& x, uint32_t k) { return x.id < k; });
    if (it == v.end() || it->id != id) {
      it = v.insert(it, Series{});
      it->id = id;
    }
    it->requests += n;
    if (error) it->errors += n;
  };
  for (const auto& [key, n] : m.requests) {
    const uint32_t route = uint32_t(key >> 36);
    const uint32_t pool = uint32_t((key >> 16) & 0xfffff);
    const bool error = (key & 0xffff) >= 500;
    count(s.routes, route, n, error);
    if (pool != 0) count(s.pools, pool, n, error);
  }
  for (auto& r : s.routes)
    if (auto it = m.durations.find(r.id); it != m.durations.end()) r.latency = it->second;
  for (auto& p : s.pools)
    if (auto it = m.upstreamDurations.find(p.id); it != m.upstreamDurations.end())
      p.latency = it->second;
  s.active.assign(m.connectionsActive.begin(), m.connectionsActive.end());
  s.accepted.assign(m.connectionsTotal.begin(), m.connectionsTotal.end());
  std::sort(s.active.begin(), s.active.end());
  std::sort(s.accepted.begin(), s.accepted.end());
  s.ratelimit.assign(m.ratelimit.begin(), m.ratelimit.end());
  std::sort(s.ratelimit.begin(), s.ratelimit.end());
  for (const auto& [_, n] : m.tlsHandshakes) s.tlsHandshakes += n;
  for (const auto& [_, n] : m.tlsErrors) s.tlsErrors += n;
  ring_.push_back(std::move(s));
  while (ring_.size() > capacity_) ring_.pop_front();
}

const RateWindow::Series* RateWindow::find(const std::vector<Series>& v, uint32_t id) {
  auto it = std::lower_bound(v.begin(), v.end(), id,
                             [](const Series& x, uint32_t k) { return x.id < k; });
  return it != v.end() && it->id == id ? &*it : nullptr;
}

void RateWindow::appendSeries(std::string& out, const char* key,
                              std::vector<Series> Sample::*which) const {
  static const Series kNone;
  const Sample& last = ring_.back();
  const Sample& first = ring_.front();
  const double seconds = double(last.atMs - first.atMs) / 1000.0;
  const size_t points = capacity_ - 1;
  out.push_back('"');
  out.append(key);
  out.append("\":[");
  bool firstOut = true;
  for (const Series& now : last.*which) {
    const Series* then = find(first.*which, now.id);
    if (then == nullptr) then = &kNone;
    const uint64_t requests = grew(then->requests, now.requests);
    const uint64_t errors = grew(then->errors, now.errors);
    const Histogram lat = difference(then->latency, now.latency);
    if (!firstOut) out.push_back(',');
    firstOut = false;
    out.append("{\"name\":");
    appendName(out, now.id);
    out.append(",\"requests\":");
    out.append(std::to_string(requests));
    out.append(",\"errors\":");
    out.append(std::to_string(errors));
    out.append(",\"rps\":");
    appendNumber(out, seconds > 0 ? double(requests) / seconds : std::nan(""));
    out.append(",\"error_ratio\":");
    appendNumber(out, requests > 0 ? double(errors) / double(requests) : std::nan(""), 4);
    for (auto [name, q] : {std::pair{"p50_ms", 0.5}, {"p95_ms", 0.95}, {"p99_ms", 0.99}}) {
      out.append(",\"");
      out.append(name);
      out.append("\":");
      appendNumber(out, histogramQuantile(lat, q) * 1000.0, 4);
    }
    // One point per sampling interval, oldest first; null where there is no history yet (rate)
    // or no request ended in that interval (p95).
    std::string rps = "[", p95 = "[";
    for (size_t i = 0; i + ring_.size() < points + 1; ++i) {
      rps.append(i ? ",null" : "null");
      p95.append(i ? ",null" : "null");
    }
    for (size_t i = 1; i < ring_.size(); ++i) {
      const Series* a = find(ring_[i - 1].*which, now.id);
      const Series* b = find(ring_[i].*which, now.id);
      if (a == nullptr) a = &kNone;
      if (b == nullptr) b = &kNone;
      const double dt = double(ring_[i].atMs - ring_[i - 1].atMs) / 1000.0;
      if (rps.size() > 1) rps.push_back(',');
      if (p95.size() > 1) p95.push_back(',');
      appendNumber(rps, dt > 0 ? double(grew(a->requests, b->requests)) / dt : std::nan(""), 4);
      appendNumber(p95, histogramQuantile(difference(a->latency, b->latency), 0.95) * 1000.0, 4);
    }
    out.append(",\"rps_series\":");
    out.append(rps);
    out.append("],\"p95_series\":");
    out.append(p95);
    out.append("]}");
  }
  out.push_back(']');
}

void RateWindow::appendJson(std::string& out) const {
  out.append("{\"interval_ms\":");
  out.append(std::to_string(intervalMs_));
  out.append(",\"span_ms\":");
  out.append(ring_.empty() ? "0" : std::to_string(ring_.back().atMs - ring_.front().atMs));
  if (ring_.empty()) {
    out.append(
        ",\"routes\":[],\"pools\":[],\"listeners\":[],\"ratelimit\":[],"
        "\"tls\":{\"handshakes\":0,\"errors\":0}}");
    return;
  }
  out.push_back(',');
  appendSeries(out, "routes", &Sample::routes);
  out.push_back(',');
  appendSeries(out, "pools", &Sample::pools);

  const Sample& last = ring_.back();
  const Sample& first = ring_.front();
  const double seconds = double(last.atMs - first.atMs) / 1000.0;
  out.append(",\"listeners\":[");
  for (size_t i = 0; i < last.accepted.size(); ++i) {
    const auto& [id, total] = last.accepted[i];
    uint64_t before = 0;
    auto it = std::lower_bound(first.accepted.begin(), first.accepted.end(),
                               std::pair<uint32_t, uint64_t>{id, 0});
    if (it != first.accepted.end() && it->first == id) before = it->second;
    int64_t active = 0;
    auto at = std::lower_bound(last.active.begin(), last.active.end(),
                               std::pair<uint32_t, int64_t>{id, INT64_MIN});
    if (at != last.active.end() && at->first == id) active = at->second;
    if (i) out.push_back(',');
    out.append("{\"name\":");
    appendName(out, id);
    out.append(",\"active\":");
    out.append(std::to_string(std::max<int64_t>(active, 0)));
    out.append(",\"accepted\":");
    out.append(std::to_string(grew(before, total)));
    out.append(",\"cps\":");
    appendNumber(out, seconds > 0 ? double(grew(before, total)) / seconds : std::nan(""), 4);
    out.push_back('}');
  }
  // Rate-limit decisions in the window, per middleware: {allowed, limited, store_error}.
  out.append("],\"ratelimit\":[");
  bool firstMw = true;
  for (size_t i = 0; i < last.ratelimit.size();) {
    const uint32_t mw = uint32_t(last.ratelimit[i].first >> 8);
    uint64_t counts[3] = {0, 0, 0};
    for (; i < last.ratelimit.size() && uint32_t(last.ratelimit[i].first >> 8) == mw; ++i) {
      const auto& [key, total] = last.ratelimit[i];
      uint64_t before = 0;
      auto it = std::lower_bound(first.ratelimit.begin(), first.ratelimit.end(),
                                 std::pair<uint64_t, uint64_t>{key, 0});
      if (it != first.ratelimit.end() && it->first == key) before = it->second;
      const size_t result = size_t(key & 0xff);
      if (result < 3) counts[result] += grew(before, total);
    }
    if (!firstMw) out.push_back(',');
    firstMw = false;
    out.append("{\"middleware\":");
    appendName(out, mw);
    for (size_t r = 0; r < 3; ++r) {
      out.append(",\"");
      out.append(rateLimitResultName(RateLimitResult(r)));
      out.append("\":");
      out.append(std::to_string(counts[r]));
    }
    out.push_back('}');
  }
  out.append("],\"tls\":{\"handshakes\":");
  out.append(std::to_string(grew(first.tlsHandshakes, last.tlsHandshakes)));
  out.append(",\"errors\":");
  out.append(std::to_string(grew(first.tlsErrors, last.tlsErrors)));
  out.append("}}");
}

}  // namespace sluice::observe
