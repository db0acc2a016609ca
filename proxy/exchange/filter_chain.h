// FilterChain: the route's filters for one exchange (Envoy's filter manager, reduced to what
// Sluice needs). Filters are built in the chain's arena, run in order on the request head, may
// stop and resume, see every response head (upstream or local) once, and are destroyed before
// the exchange is reused.
#pragma once

#include <cstdint>
#include <vector>

#include "middleware/filter.h"

namespace sluice {

class FilterChain {
 public:
  enum class Result : uint8_t {
    Done,      // every filter continued: go on with the request
    Waiting,   // a filter stopped; it will resume() or answer
    Answered,  // a filter answered (or the exchange ended) while it ran: touch nothing
  };

  bool empty() const { return filters_.empty(); }
  bool waiting() const { return waiting_; }
  // Builds one filter per factory.
  void create(const std::vector<middleware::FilterFactoryPtr>& factories,
              middleware::FilterCallbacks& cb);
  // Runs onRequestHeaders from the next filter on. `alive` is checked after each filter: a
  // filter that answered may have ended the exchange (and destroyed this chain's filters).
  template <class Alive>
  Result runRequest(middleware::RequestContext& ctx, Alive alive) {
    waiting_ = false;
    while (next_ < filters_.size()) {
      const middleware::Status st = filters_[next_++]->onRequestHeaders(ctx);
      if (!alive()) return Result::Answered;
      if (st == middleware::Status::Stop) {
        waiting_ = true;
        return Result::Waiting;
      }
    }
    return Result::Done;
  }
  // Clears the waiting mark (resume or an answer arrived); false when nothing was waiting.
  bool takeWaiting() {
    const bool w = waiting_;
    waiting_ = false;
    return w;
  }
  // Every filter sees the response head once (later calls do nothing).
  void runResponse(middleware::RequestContext& ctx, http::ResponseHead& head);
  void complete(const middleware::RequestContext& ctx);
  // onDestroy + destructors; the arena keeps its memory for the next request.
  void destroy();

 private:
  std::vector<middleware::Filter*> filters_;  // in arena_
  middleware::FilterArena arena_;
  size_t next_ = 0;
  bool waiting_ = false;
  bool responded_ = false;
};

}  // namespace sluice
