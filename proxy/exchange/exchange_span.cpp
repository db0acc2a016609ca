// Exchange: a sampled request's span record for [tracing], written into the worker's ring at
// the end of the exchange.
#include <cstring>

#include "proxy/exchange/exchange.h"
#include "proxy/tracing/span_ring.h"
#include "proxy/worker.h"

namespace sluice {

void Exchange::recordSpan(uint64_t endNs) {
  tracing::SpanRing& ring = *w_.spanRing();
  tracing::SpanRecord* r = ring.claim();
  if (r == nullptr) return;              // full: dropped and counted by the ring
  const char* tp = traceparent_.data();  // "00-" trace "-" client span "-" flags
  std::memcpy(r->traceId, tp + 3, 32);
  std::memcpy(r->clientSpanId, tp + 36, 16);
  std::memcpy(r->spanId, trace_.spanId, 16);
  r->hasParent = trace_.hasParent;
  if (trace_.hasParent) std::memcpy(r->parentId, trace_.parentId, 16);
  r->tls = down_->tls != nullptr;
  r->split = s_.route->split != nullptr;
  r->status = uint16_t(s_.status);
  r->routeId = s_.route->nameId;
  r->patternId = s_.route->patternId;
  r->poolId = s_.pool ? s_.pool->nameId : 0;
  r->startNs = s_.startNs;
  r->endNs = endNs;
  r->upstreamStartNs = upstream_->startNs();
  r->upstreamHeadNs = upstream_->headNs();
  const upstream::Backend* b = upstream_->backend();
  r->backend.set(b ? std::string_view(b->address) : std::string_view());
  const std::string* rl = ctx_.attributes.get("log", "ratelimit");
  r->ratelimit.set(rl ? std::string_view(*rl) : std::string_view());
  r->clientIp.set(s_.clientIp.empty() ? std::string_view(down_->peerIp) : s_.clientIp);
  r->host.set(host_);
  r->method.set(req_->method);
  std::string_view path = req_->target, hostFromTarget, query;
  if (path.empty() || path[0] != '/')
    router::splitTarget(req_->target, hostFromTarget, path, query);
  r->path.set(path.substr(0, path.find('?')));
  r->userAgent.set(req_->headers.get(http::Hdr::UserAgent));
  ring.commit();
}

}  // namespace sluice
