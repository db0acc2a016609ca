#include "proxy/exchange/filter_chain.h"

namespace sluice {

void FilterChain::create(const std::vector<middleware::FilterFactoryPtr>& factories,
                         middleware::FilterCallbacks& cb) {
  for (const auto& f : factories) filters_.push_back(f->create(arena_, cb));
}

void FilterChain::runResponse(middleware::RequestContext& ctx, http::ResponseHead& head) {
  if (responded_) return;
  responded_ = true;
  for (middleware::Filter* f : filters_) f->onResponseHeaders(ctx, head);
}

void FilterChain::complete(const middleware::RequestContext& ctx) {
  for (middleware::Filter* f : filters_) f->onComplete(ctx);
}

void FilterChain::destroy() {
  if (!filters_.empty()) {
    for (middleware::Filter* f : filters_) f->onDestroy();
    for (middleware::Filter* f : filters_) f->~Filter();
    filters_.clear();
    arena_.reset();
  }
  next_ = 0;
  waiting_ = running_ = resumedEarly_ = responded_ = false;
}

}  // namespace sluice
