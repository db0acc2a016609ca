// The tracing exporter: one thread, started with the server when [tracing] is configured (or
// first configured by a reload), stopped after the workers on shutdown. It owns one SpanRing
// per worker, drains them every few milliseconds into batches (batch_size spans, or whatever
// is there every export_interval), encodes OTLP JSON and POSTs it with OtlpClient. Failed
// POSTs (no answer, 429, 5xx) are retried with exponential backoff, then the batch is dropped
// and counted; while it waits, the rings fill and further spans are dropped (queue_full). A
// worker never waits for it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "config/schema.h"
#include "proxy/tracing/otlp_client.h"
#include "proxy/tracing/otlp_json.h"
#include "proxy/tracing/span_ring.h"

namespace sluice::tracing {

struct ExportStats {
  uint64_t exported = 0;             // spans accepted by the collector (server + client spans)
  uint64_t droppedQueueFull = 0;     // spans a worker found no room for
  uint64_t droppedExportFailed = 0;  // spans of batches given up after the retries
  uint64_t exportErrors = 0;         // failed POST attempts
};

class Exporter {
 public:
  // Retry schedule of a failed POST: kRetries more attempts, waiting kBackoffMs, then twice
  // as long each time (at most kMaxBackoffMs).
  static constexpr int kRetries = 3;
  static constexpr int64_t kBackoffMs = 100;
  static constexpr int64_t kMaxBackoffMs = 2000;

  Exporter(size_t workers, size_t queueSize);
  ~Exporter();
  Exporter(const Exporter&) = delete;
  Exporter& operator=(const Exporter&) = delete;

  SpanRing* ring(size_t worker) { return rings_[worker].get(); }
  size_t queueSize() const { return rings_.empty() ? 0 : rings_[0]->capacity(); }
  // Endpoint, resource, batch size, interval and timeout (main thread; taken at the next wake).
  void configure(const config::TracingSettings& s);
  void start();
  // Sends what the rings hold (one attempt per batch, all within export_timeout), then ends
  // the thread.
  void stop();
  ExportStats stats() const;

 private:
  void run();
  // Moves records from the rings into batch_ (up to batchSize in all).
  void drain(size_t batchSize);
  // Encodes and POSTs batch_ (then empty). Retried with backoff unless `lastFlush` (the
  // shutdown's: one attempt, bounded by `deadlineMs`).
  void exportBatch(bool lastFlush, int64_t deadlineMs);
  bool sleepFor(int64_t ms);  // false when stop() was called meanwhile

  std::vector<std::unique_ptr<SpanRing>> rings_;
  size_t nextRing_ = 0;
  std::vector<SpanRecord> batch_;
  std::string body_;
  NameCache names_;
  OtlpClient client_;
  config::TracingSettings settings_;  // the exporter thread's copy
  int64_t lastLogMs_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  config::TracingSettings pending_;  // guarded by mu_
  bool changed_ = false;             // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  std::thread thread_;

  std::atomic<uint64_t> exported_{0}, droppedExport_{0}, errors_{0};
};

}  // namespace sluice::tracing
