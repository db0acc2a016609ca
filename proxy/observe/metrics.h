// Metrics. Each worker owns a WorkerMetrics and is its only writer (no atomics, no locks on
// the hot path). A scrape asks every worker, through its post() queue, for a copy, merges the
// copies and renders Prometheus text. Label values are interned names (ids) so the hot path
// hashes integers, not strings.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sluice::observe {

// Process-wide name interning (config build and scrape only, never per request).
uint32_t internName(std::string_view name);
std::string nameOf(uint32_t id);

enum class UpstreamErrorKind : uint8_t {
  ConnectFailed,
  ConnectTimeout,
  Reset,
  Timeout,
  BadResponse,
  TlsHandshake,  // TCP connected, TLS failed (e.g. certificate not trusted)
};
const char* upstreamErrorKindName(UpstreamErrorKind k);

enum class RateLimitResult : uint8_t { Allowed, Limited, StoreError };
const char* rateLimitResultName(RateLimitResult r);
enum class RedisErrorKind : uint8_t {
  Connect,         // connect, AUTH/SELECT or handshake failed / timed out
  ConnectionLost,  // an established connection broke
  Timeout,         // a command got no answer within [redis] timeout
  Reply,           // Redis answered a command with an error
};
const char* redisErrorKindName(RedisErrorKind k);
// Why a client connection was not taken (sluice_connections_refused_total{reason}).
enum class ConnRefusal : uint8_t {
  MaxConnections,  // the worker's share of server.max_connections is in use: closed at once
  PerIp,           // the listener's max_connections_per_ip for that address: closed at once
  FdLimit,         // accept(2) failed for lack of descriptors: the listener pauses
};
const char* connRefusalName(ConnRefusal r);

// The bucket bounds (seconds) of both histograms, request and upstream (docs/operations.md).
// They start below a millisecond, like Envoy's: a proxy hop and a LAN backend usually answer
// within a few ms, which Prometheus' default first bound (5 ms) would lump into one bucket.
constexpr std::array<double, 14> kDurationBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct Histogram {
  std::array<uint64_t, kDurationBuckets.size()> buckets{};  // non-cumulative
  uint64_t count = 0;
  double sum = 0;
  void observe(double seconds);
  void merge(const Histogram& o);
};

struct WorkerMetrics {
  // key: route(20 bits) | pool(20 bits) | status(16 bits)
  std::unordered_map<uint64_t, uint64_t> requests;
  std::unordered_map<uint32_t, Histogram> durations;  // by route
  // Backend time to the response head of the attempt that answered, by pool.
  std::unordered_map<uint32_t, Histogram> upstreamDurations;
  // key: pool(24) | backend(24) | kind(8)
  std::unordered_map<uint64_t, uint64_t> upstreamErrors;
  std::unordered_map<uint32_t, int64_t> connectionsActive;  // by listener name
  std::unordered_map<uint32_t, uint64_t> connectionsTotal;  // by listener name
  // key: listener(32) | ConnRefusal(8)
  std::unordered_map<uint64_t, uint64_t> connectionsRefused;

  // TLS: key listener(32) | version index(8) | resumed(1); errors: listener(32) | reason id.
  std::unordered_map<uint64_t, uint64_t> tlsHandshakes;
  std::unordered_map<uint64_t, uint64_t> tlsErrors;

  // Traffic splits: key route(32) | pool(32): requests each pool of a split got.
  std::unordered_map<uint64_t, uint64_t> splitRequests;
  // Rate limiting: key middleware(32) | result(8); Redis client health of this worker.
  std::unordered_map<uint64_t, uint64_t> ratelimit;
  uint32_t redisClients = 0;              // 1 when this worker has a configured Redis client
  uint32_t redisConnected = 0;            // 1 when it is connected and ready
  std::array<uint64_t, 4> redisErrors{};  // by RedisErrorKind

  void request(uint32_t route, uint32_t pool, int status, double seconds);
  void upstreamResponse(uint32_t pool, double seconds) { upstreamDurations[pool].observe(seconds); }
  void ratelimitDecision(uint32_t middleware, RateLimitResult result) {
    ++ratelimit[(uint64_t(middleware) << 8) | uint64_t(result)];
  }
  void redisError(RedisErrorKind kind) { ++redisErrors[size_t(kind)]; }
  void connectionRefused(uint32_t listener, ConnRefusal r) {
    ++connectionsRefused[(uint64_t(listener) << 8) | uint64_t(r)];
  }
  void splitRequest(uint32_t route, uint32_t pool) {
    ++splitRequests[(uint64_t(route) << 32) | pool];
  }
  void tlsHandshake(uint32_t listener, const char* version, bool resumed);
  void tlsHandshakeError(uint32_t listener, const std::string& reason);
  void upstreamError(uint32_t pool, uint32_t backend, UpstreamErrorKind kind);
  void merge(const WorkerMetrics& o);
};

// Process-level values owned by the main thread.
struct ProcessMetrics {
  uint64_t generation = 0;
  uint64_t reloadsOk = 0;
  uint64_t reloadsError = 0;
  bool lastReloadOk = true;  // the last reload (or the startup) succeeded
  struct BackendState {
    std::string pool, backend;
    bool up;
    bool draining = false;  // drained through the admin API (then not up either)
    uint64_t stateChanges = 0;  // up, down, ejected, draining, since the backend exists
  };
  std::vector<BackendState> backends;
  struct SplitWeight {
    std::string route, pool;
    uint32_t weight;
    uint64_t rollbacks;  // of this pool on this route, since start
  };
  std::vector<SplitWeight> splitWeights;  // live weights of split routes
  struct ReleaseStep {
    std::string route;
    uint32_t step;  // promotion steps reached (0 = none)
  };
  std::vector<ReleaseStep> releaseSteps;  // split routes with [route.promote]
  struct Tracing {
    bool enabled = false;  // [tracing] configured since start: the series below are shown
    uint64_t exported = 0, droppedQueueFull = 0, droppedExportFailed = 0, exportErrors = 0;
  } tracing;
};

void renderPrometheus(const WorkerMetrics& m, const ProcessMetrics& p, std::string& out);

}  // namespace sluice::observe
