// HealthChecker: active HTTP health checks ([pool.X.health]) on the main thread's loop.
//
// One Probe per Backend of a pool with checks. Every `interval` (+-10% jitter) it connects
// (uv_tcp), sends `GET path HTTP/1.1` with the backend's host as Host and `Connection: close`,
// and parses the response head with Http1Parser. A status within expect_status within `timeout`
// is a success. `healthy_threshold` successes in a row mark the backend up,
// `unhealthy_threshold` failures mark it down; the first check of a new backend decides at once.
// The result is published to workers through Backend::healthy (an atomic: no lock on the hot
// path); the Server's state monitor logs and counts the transition.
//
// Pools with tls = true are checked over HTTPS with the pool's client TLS context (same
// verification and server name as requests).
#pragma once

#include <uv.h>

#include <map>
#include <memory>
#include <vector>

#include "proxy/upstream/pool.h"

namespace sluice::upstream {

class HealthChecker {
 public:
  explicit HealthChecker(uv_loop_t* loop);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Starts probes for backends new in `pools`, updates settings, stops removed ones. A backend
  // whose pool no longer has checks is marked healthy again.
  void sync(const std::vector<std::unique_ptr<Pool>>& pools);
  void close();

  struct Probe;
  struct Attempt;

 private:
  uv_loop_t* loop_;
  std::map<Backend*, Probe*> probes_;
  bool closed_ = false;
};

}  // namespace sluice::upstream
