// The middleware seam: a FilterFactory per configured [middleware.NAME] (immutable, built and
// validated from config, shared by all workers through the snapshot) creates one Filter per
// request of a route that lists it, in the exchange's FilterArena (no heap allocation per
// request once the arena is warm). Filters run in the route's order:
//   onRequestHeaders   may edit the request head (ctx.request: set/add/remove headers; it is
//                      serialised upstream only after the whole chain ran); Continue, or Stop
//                      and later call callbacks.resume() or callbacks.sendLocalReply()
//                      (rate_limit waiting on Redis, CORS answering a preflight)
//   onResponseHeaders  sees and edits the response head: the upstream's (its own headers can
//                      be replaced, not duplicated) and every reply the proxy makes itself
//   onComplete         always called once the request is finished (access log, metrics)
//   onDestroy          cancel timers / in-flight calls; after it no callback may be used
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/http/local_reply.h"
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

// Request-scoped facts one filter publishes for later ones and for the access log, keyed by
// "namespace" + "name" (jwt publishes its verified claims under "jwt"; rate_limit its decision
// under "log"/"ratelimit"). Flat and reused: no allocation once the slots have grown.
class Attributes {
 public:
  void set(std::string_view ns, std::string_view name, std::string_view value);
  // nullptr when not set.
  const std::string* get(std::string_view ns, std::string_view name) const;
  bool has(std::string_view ns) const;
  void clear() { used_ = 0; }

 private:
  struct Slot {
    std::string key;  // ns + '\0' + name
    std::string value;
  };
  Slot* find(std::string_view ns, std::string_view name);
  std::vector<Slot> slots_;
  size_t used_ = 0;
};

// What filters see and share about the current request. Only what every filter may need:
// middleware-specific facts go through `attributes` or the filter's own state.
struct RequestContext {
  http::RequestHead* request = nullptr;  // mutable until the upstream request is serialised
  std::string_view clientIp;             // after trusted_proxies
  std::string_view routeName;
  std::string_view requestId;
  std::string_view host;      // normalised request host (lower case, no port)
  std::string_view poolName;  // set once the pool is chosen (after the request filters)
  bool tls = false;           // the client connection is TLS
  Attributes attributes;

  // Back to a fresh request, keeping capacity.
  void reset() {
    request = nullptr;
    clientIp = {};
    routeName = {};
    requestId = {};
    host = {};
    poolName = {};
    tls = false;
    attributes.clear();
  }
};

class FilterCallbacks {
 public:
  virtual ~FilterCallbacks() = default;
  // Continue the chain after a Stop.
  virtual void resume() = 0;
  // Answer the request now (any status, headers and body; a JSON error when `reply.code` is
  // set). The filter may be destroyed inside this call: touch nothing of it afterwards.
  virtual void sendLocalReply(const http::LocalReply& reply) = 0;
  virtual RequestContext& context() = 0;
  virtual WorkerServices& services() = 0;
};

class Filter {
 public:
  virtual ~Filter() = default;
  virtual Status onRequestHeaders(RequestContext&) { return Status::Continue; }
  virtual void onResponseHeaders(RequestContext&, http::ResponseHead&) {}
  virtual void onComplete(const RequestContext&) {}
  virtual void onDestroy() {}
};

// Per-exchange bump allocator for filter objects. Its memory is kept across the requests of
// the exchange (which is itself recycled per worker), so creating filters costs no heap
// allocation in steady state. Objects are destroyed by their owner (FilterChain) before
// reset().
class FilterArena {
 public:
  template <class T, class... Args>
  T* make(Args&&... args) {
    void* p = allocate(sizeof(T), alignof(T));
    return new (p) T(std::forward<Args>(args)...);
  }
  // Forget every object (their destructors already ran); coalesce the chunks into one.
  void reset();
  size_t capacity() const;

 private:
  void* allocate(size_t size, size_t align);
  struct Chunk {
    std::unique_ptr<std::byte[]> mem;
    size_t size = 0;
  };
  std::vector<Chunk> chunks_;
  size_t used_ = 0;   // in the last chunk
  size_t total_ = 0;  // bytes handed out since reset (sizes the coalesced chunk)
};

class FilterFactory {
 public:
  virtual ~FilterFactory() = default;
  // Builds the request's filter in `arena` (FilterArena::make).
  virtual Filter* create(FilterArena& arena, FilterCallbacks& callbacks) const = 0;
  virtual std::string_view name() const = 0;
};
using FilterFactoryPtr = std::shared_ptr<const FilterFactory>;

}  // namespace sluice::middleware
