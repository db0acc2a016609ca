// `sluice -t` only: backend host names that do not resolve right now (looked up in a child
// process). Not an error (the running proxy keeps resolving them, proxy/upstream's Resolver),
// but worth a warning. Never called at startup or on reload: it blocks (for at most one
// second).
#pragma once

#include "config/loader.h"

namespace sluice::config {

// Looks up every distinct backend host name of result.config in parallel (getaddrinfo_a) and
// adds a warning for each one that does not resolve, or does not answer within 1s, to
// result.warnings (kept sorted by position). Does nothing when result.config is unset.
void warnUnresolvedBackends(LoadResult& result);

}  // namespace sluice::config
