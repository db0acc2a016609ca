// The middleware seam: a FilterFactory per configured [middleware.NAME] (immutable, built and
// validated from config, shared by all workers through the snapshot) creates one Filter per
// request of a route that lists it. Filters run in the route's order:
//   onRequestHeaders  Continue, or Stop and later call callbacks.resume() or
//                     callbacks.sendLocalReply() (e.g. rate_limit waiting on Redis)
//   onResponseHeaders add response headers (also for the proxy's own replies)
//   onComplete        always called once the request is finished (access log, metrics)
//   onDestroy         cancel timers / in-flight calls; after it no callback may be used
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/http/message.h"

namespace sluice::observe {
struct WorkerMetrics;
}

namespace sluice::middleware {

class RedisClient;
class LocalStore;

enum class Status { Continue, Stop };

// Per-worker services a filter may use (owned by the Worker, live as long as its loop).
struct WorkerServices {
  uv_loop_t* loop = nullptr;
  RedisClient* redis = nullptr;  // nullptr when no [redis] is configured
  observe::WorkerMetrics* metrics = nullptr;
};

// What filters see and share about the current request.
struct RequestContext {
  const http::RequestHead* request = nullptr;
  std::string_view clientIp;  // after trusted_proxies
  std::string_view routeName;
  std::string_view requestId;
  // Verified JWT claims (set by the jwt filter; read by rate_limit's "jwt:CLAIM" keys).
  std::map<std::string, std::string, std::less<>> claims;
  bool claimsVerified = false;
  // "allowed" | "limited" | "store_error" | "-" for the access log.
  std::string_view ratelimit = "-";
  // Header lines ("Name: value\r\n") added to whatever response goes to the client.
  std::string responseHeaders;

  // Back to a fresh request, keeping capacity. Extend it with every new field.
  void reset() {
    request = nullptr;
    clientIp = {};
    routeName = {};
    requestId = {};
    if (!claims.empty()) claims.clear();
    claimsVerified = false;
    ratelimit = "-";
    responseHeaders.clear();
  }
};

class FilterCallbacks {
 public:
  virtual ~FilterCallbacks() = default;
  // Continue the chain after a Stop.
  virtual void resume() = 0;
  // Answer the request now with the proxy's JSON error body; `extraHeaders` are header lines.
  virtual void sendLocalReply(int status, std::string_view code,
                              std::string_view extraHeaders = {}) = 0;
  virtual RequestContext& context() = 0;
  virtual WorkerServices& services() = 0;
};

class Filter {
 public:
  virtual ~Filter() = default;
  virtual Status onRequestHeaders(RequestContext&) { return Status::Continue; }
  virtual void onResponseHeaders(RequestContext&, int /*status*/) {}
  virtual void onComplete(const RequestContext&) {}
  virtual void onDestroy() {}
};

class FilterFactory {
 public:
  virtual ~FilterFactory() = default;
  virtual std::unique_ptr<Filter> create(FilterCallbacks& callbacks) const = 0;
  virtual std::string_view name() const = 0;
};
using FilterFactoryPtr = std::shared_ptr<const FilterFactory>;

}  // namespace sluice::middleware
