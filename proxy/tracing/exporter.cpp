// Tracing exporter thread (see exporter.h).
#include "proxy/tracing/exporter.h"

#include <time.h>

#include <algorithm>
#include <chrono>

#include "proxy/observe/log.h"

namespace sluice::tracing {

namespace {

constexpr int64_t kPollMs = 10;         // how often the rings are looked at
constexpr int64_t kLogEveryMs = 10000;  // export failures are logged at most this often

int64_t steadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Unix time minus the monotonic clock the workers read (uv_hrtime: CLOCK_MONOTONIC).
int64_t monoToUnixNs() {
  timespec mono{}, real{};
  clock_gettime(CLOCK_MONOTONIC, &mono);
  clock_gettime(CLOCK_REALTIME, &real);
  return (int64_t(real.tv_sec) - int64_t(mono.tv_sec)) * 1000000000 +
         (int64_t(real.tv_nsec) - int64_t(mono.tv_nsec));
}

size_t spanCount(const std::vector<SpanRecord>& batch) {
  size_t n = batch.size();
  for (const auto& r : batch) n += r.upstreamStartNs != 0;
  return n;
}

}  // namespace

Exporter::Exporter(size_t workers, size_t queueSize) {
  for (size_t i = 0; i < workers; ++i) rings_.push_back(std::make_unique<SpanRing>(queueSize));
}

Exporter::~Exporter() {
  stop();
}

void Exporter::configure(const config::TracingSettings& s) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_ = s;
  changed_ = true;
  if (!thread_.joinable()) {  // not started yet: take it now
    settings_ = s;
    changed_ = false;
  }
}

void Exporter::start() {
  if (thread_.joinable()) return;
  client_.setEndpoint(settings_.host, settings_.port, settings_.path);
  thread_ = std::thread([this] { run(); });
}

void Exporter::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

ExportStats Exporter::stats() const {
  ExportStats s;
  s.exported = exported_.load(std::memory_order_relaxed);
  s.droppedExportFailed = droppedExport_.load(std::memory_order_relaxed);
  s.exportErrors = errors_.load(std::memory_order_relaxed);
  for (const auto& r : rings_) s.droppedQueueFull += r->dropped();
  return s;
}

bool Exporter::sleepFor(int64_t ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
  if (changed_) {
    settings_ = pending_;
    changed_ = false;
    client_.setEndpoint(settings_.host, settings_.port, settings_.path);
  }
  return !stopping_;
}

void Exporter::drain(size_t batchSize) {
  // Starting from a different ring each time: a busy worker does not starve the others.
  for (size_t i = 0; i < rings_.size() && batch_.size() < batchSize; ++i) {
    SpanRing& r = *rings_[(nextRing_ + i) % rings_.size()];
    r.drain(batch_, batchSize - batch_.size());
  }
  nextRing_ = rings_.empty() ? 0 : (nextRing_ + 1) % rings_.size();
}

void Exporter::run() {
  int64_t lastExport = steadyMs();
  for (;;) {
    const size_t batchSize = std::max<size_t>(1, settings_.batchSize);
    drain(batchSize);
    const int64_t now = steadyMs();
    const bool due = now - lastExport >= int64_t(settings_.exportInterval.count());
    if (batch_.size() >= batchSize || (due && !batch_.empty())) {
      exportBatch(false, 0);
      lastExport = steadyMs();
      continue;  // more may be waiting
    }
    if (batch_.empty() && due) lastExport = now;
    if (!sleepFor(kPollMs)) break;
  }
  // Final flush: everything the rings hold, within one export_timeout in all.
  const int64_t deadline = steadyMs() + int64_t(settings_.exportTimeout.count());
  for (;;) {
    drain(std::max<size_t>(1, settings_.batchSize));
    if (batch_.empty()) break;
    if (steadyMs() >= deadline) {
      droppedExport_.fetch_add(spanCount(batch_), std::memory_order_relaxed);
      batch_.clear();
      continue;
    }
    exportBatch(true, deadline);
  }
  client_.close();
}

void Exporter::exportBatch(bool lastFlush, int64_t deadlineMs) {
  body_.clear();
  Resource res;
  res.serviceName = settings_.serviceName;
  res.attributes = settings_.resourceAttributes;
  encodeOtlpJson(batch_.data(), batch_.size(), res, monoToUnixNs(), names_, body_);
  const size_t spans = spanCount(batch_);
  batch_.clear();
  int64_t backoff = kBackoffMs;
  for (int attempt = 0;; ++attempt) {
    int timeout = int(settings_.exportTimeout.count());
    if (lastFlush)
      timeout = int(std::max<int64_t>(1, std::min<int64_t>(timeout, deadlineMs - steadyMs())));
    std::string err;
    const int status = client_.post(body_, timeout, err);
    if (status >= 200 && status < 300) {
      exported_.fetch_add(spans, std::memory_order_relaxed);
      return;
    }
    errors_.fetch_add(1, std::memory_order_relaxed);
    const bool retryable = status < 0 || status == 429 || status >= 500;
    if (lastFlush || !retryable || attempt >= kRetries || !sleepFor(backoff)) {
      droppedExport_.fetch_add(spans, std::memory_order_relaxed);
      // At most one line per kLogEveryMs: a dead collector must not flood the event log.
      const int64_t now = steadyMs();
      if (lastLogMs_ != 0 && now - lastLogMs_ < kLogEveryMs) return;
      lastLogMs_ = now;
      observe::logEvent(config::LogLevel::Warn, "tracing export failed, spans dropped",
                        {{"endpoint", settings_.endpoint},
                         {"error", status < 0 ? err : "HTTP " + std::to_string(status)},
                         {"spans", std::to_string(spans)}});
      return;
    }
    backoff = std::min(backoff * 2, kMaxBackoffMs);
  }
}

}  // namespace sluice::tracing
