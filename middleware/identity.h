// Key extraction for rate limits (and later sticky sessions): "ip", "header:NAME",
// "cookie:NAME", "jwt:CLAIM" (verified claims only). A request without the configured source
// falls back to the client IP (already resolved through trusted_proxies by the connection).
#pragma once

#include <string>
#include <string_view>

#include "middleware/filter.h"
#include "middleware/rate_limit_config.h"

namespace sluice::middleware {

// Appends "<source>:<value>" for the request to `out`: source is "header", "cookie" (the
// first pair of that name in any Cookie header, parsed by http/cookie.h) or "jwt" when that
// value is present and non-empty, else "ip" with ctx.clientIp. Values longer than 128 bytes
// are replaced by "sha256:<hex>" so keys stay small. Returns true when the configured source
// was used (false = fell back to the IP).
bool appendIdentityKey(RateLimitKeyKind kind, std::string_view name, const RequestContext& ctx,
                       std::string& out);

}  // namespace sluice::middleware
