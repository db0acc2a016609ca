// What a worker hands the tracing exporter: one fixed-size SpanRecord per sampled request,
// through the worker's own single-producer single-consumer ring. The worker (producer) never
// locks, allocates or waits: when the ring is full the span is dropped and counted. The
// exporter thread (consumer) copies records out in batches.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace sluice::tracing {

// A bounded copy of a string: longer values are cut.
template <size_t N>
struct BoundedText {
  uint16_t len = 0;
  char data[N];
  void set(std::string_view s) {
    len = uint16_t(s.size() < N ? s.size() : N);
    std::memcpy(data, s.data(), len);
  }
  std::string_view view() const { return {data, len}; }
};

// One request's server span and, when it went upstream, its client span. Times are the
// worker's monotonic clock (nanoseconds); the exporter turns them into Unix time.
struct SpanRecord {
  char traceId[32];       // hex
  char spanId[16];        // the server span
  char parentId[16];      // the incoming traceparent's parent-id, when hasParent
  char clientSpanId[16];  // the parent-id sent upstream in traceparent
  bool hasParent = false;
  bool tls = false;
  bool split = false;      // the route splits traffic
  uint16_t status = 0;     // sent to the client
  uint32_t routeId = 0;    // interned route name
  uint32_t patternId = 0;  // interned route path pattern
  uint32_t poolId = 0;     // interned pool name (0: none)
  uint64_t startNs = 0, endNs = 0;
  uint64_t upstreamStartNs = 0;  // first upstream attempt (0: none)
  uint64_t upstreamHeadNs = 0;   // response head from the backend (0: none)
  BoundedText<16> method;
  BoundedText<46> clientIp;
  BoundedText<64> host;
  BoundedText<64> backend;  // address as configured
  BoundedText<32> ratelimit;
  BoundedText<128> path;  // without the query
  BoundedText<128> userAgent;
};

class SpanRing {
 public:
  explicit SpanRing(size_t capacity)
      : cap_(capacity ? capacity : 1), slots_(new SpanRecord[cap_]) {}
  SpanRing(const SpanRing&) = delete;
  SpanRing& operator=(const SpanRing&) = delete;

  // Producer: the slot to fill, or nullptr (counted as dropped) when the ring is full. A
  // claimed slot is published by commit().
  SpanRecord* claim() {
    if (head_ - cachedTail_ >= cap_) {
      cachedTail_ = tail_.load(std::memory_order_acquire);
      if (head_ - cachedTail_ >= cap_) {
        dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return nullptr;
      }
    }
    return &slots_[head_ % cap_];
  }
  void commit() { published_.store(++head_, std::memory_order_release); }

  // Consumer: appends up to `max` records to `out`; returns how many.
  size_t drain(std::vector<SpanRecord>& out, size_t max) {
    const uint64_t head = published_.load(std::memory_order_acquire);
    uint64_t tail = tail_.load(std::memory_order_relaxed);
    size_t n = 0;
    for (; tail != head && n < max; ++tail, ++n) out.push_back(slots_[tail % cap_]);
    tail_.store(tail, std::memory_order_release);
    return n;
  }

  size_t capacity() const { return cap_; }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  const size_t cap_;
  std::unique_ptr<SpanRecord[]> slots_;
  // Producer side (one cache line): its own head and the last tail it saw.
  alignas(64) std::atomic<uint64_t> published_{0};
  uint64_t head_ = 0;
  uint64_t cachedTail_ = 0;
  std::atomic<uint64_t> dropped_{0};           // written by the producer only
  alignas(64) std::atomic<uint64_t> tail_{0};  // consumer side
};

}  // namespace sluice::tracing
