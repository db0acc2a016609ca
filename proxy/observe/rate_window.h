// RateWindow: the last minute of traffic for the status page (GET /admin/rates). The admin side
// samples the workers' cumulative metrics (a merge, like a scrape) every few seconds and keeps
// the samples in a ring; request rates, error ratios and quantiles come from the differences
// between samples. Nothing is added to the request path: workers only keep the counters and
// histograms they keep for /metrics anyway.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "proxy/observe/metrics.h"

namespace sluice::observe {

// Quantile `q` (0..1) of a (non-cumulative, kDurationBuckets) histogram, in seconds, estimated
// like Prometheus' histogram_quantile(): linear inside the bucket that holds the rank, the
// highest finite bound when the rank falls in +Inf. NaN when the histogram is empty.
double histogramQuantile(const Histogram& h, double q);

class RateWindow {
 public:
  // `intervalMs`: the sampling period (for the sparklines' points); `spanMs`: how far back the
  // window reaches.
  explicit RateWindow(uint64_t intervalMs = 2000, uint64_t spanMs = 60000);

  // Cumulative totals at monotonic time `nowMs` (the merge of every worker's metrics).
  void add(uint64_t nowMs, const WorkerMetrics& m);
  // {"interval_ms","span_ms","routes":[…],"pools":[…],"listeners":[…],"ratelimit":[…],"tls":{…}}
  // (docs/operations.md, /admin/rates).
  void appendJson(std::string& out) const;
  uint64_t intervalMs() const { return intervalMs_; }
  size_t samples() const { return ring_.size(); }

 private:
  // One route's or pool's cumulative counts.
  struct Series {
    uint32_t id = 0;
    uint64_t requests = 0;
    uint64_t errors = 0;  // 5xx answers
    Histogram latency;    // request duration (routes) or upstream duration (pools)
  };
  struct Sample {
    uint64_t atMs = 0;
    std::vector<Series> routes, pools;                     // sorted by id
    std::vector<std::pair<uint32_t, int64_t>> active;      // listener -> open connections
    std::vector<std::pair<uint32_t, uint64_t>> accepted;   // listener -> accepted so far
    std::vector<std::pair<uint64_t, uint64_t>> ratelimit;  // middleware(32)|result(8)
    uint64_t tlsHandshakes = 0, tlsErrors = 0;
  };
  static const Series* find(const std::vector<Series>& v, uint32_t id);
  void appendSeries(std::string& out, const char* key, std::vector<Series> Sample::*which) const;

  uint64_t intervalMs_;
  uint64_t spanMs_;
  size_t capacity_;
  std::deque<Sample> ring_;  // oldest first
};

}  // namespace sluice::observe
