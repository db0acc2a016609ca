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
      running_ = true;
      resumedEarly_ = false;
      const middleware::Status st = filters_[next_++]->onRequestHeaders(ctx);
      running_ = false;
      if (!alive()) return Result::Answered;
      // A filter that called resume() before returning Stop has already finished waiting.
      if (st == middleware::Status::Stop && !resumedEarly_) {
        waiting_ = true;
        return Result::Waiting;
      }
    }
    return Result::Done;
  }
  // A filter asks to continue: true when the chain was waiting and should run on now (a
  // resume() from inside the filter's own onRequestHeaders is remembered instead).
  bool resume() {
    if (running_) {
      resumedEarly_ = true;
      return false;
    }
    return takeWaiting();
  }
  // Clears the waiting mark (an answer arrived); false when nothing was waiting.
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
  bool running_ = false;       // inside a filter's onRequestHeaders
  bool resumedEarly_ = false;  // ... which called resume()
  bool responded_ = false;
};

}  // namespace sluice
