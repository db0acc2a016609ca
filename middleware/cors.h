// type = "cors": the Fetch standard's CORS protocol at the edge.
//  - Preflights (OPTIONS + Origin + Access-Control-Request-Method) are answered here and never
//    reach the backend: 204 with the policy's Access-Control-* headers, or 403 cors_forbidden
//    (no Access-Control-* header) when the origin, the method, a requested header or a
//    Private Network Access request is not allowed.
//  - Other requests go on; their responses (the backend's and the proxy's own) lose whatever
//    Access-Control-* headers the backend sent and get the policy's when the origin is allowed,
//    plus `Vary: Origin` merged into the response's Vary. `reject_disallowed` answers requests
//    from other origins 403 instead (same-origin requests always pass).
// Origins are compared as scheme://host[:port], lower-cased, default ports dropped; patterns are
// exact origins, `scheme://*.domain[:port]` (one or more labels in front of the domain, never
// the domain itself) or "*". The origin "null" only matches a literal "null".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "middleware/filter.h"

namespace sluice::middleware {

// A parsed origin: scheme and host lower-cased, port 0 when it is the scheme's default.
struct Origin {
  std::string scheme;
  std::string host;
  uint16_t port = 0;
  bool opaque = false;  // the literal "null"

  bool operator==(const Origin&) const = default;
  std::string str() const;  // serialised again (normalised)
};

// Parses an Origin header value or an allow_origins entry; nullopt when it is not
// scheme://host[:port] (no path, no user info, no trailing slash) or "null". `allowWildcard`
// accepts a leading "*." in the host (patterns only).
std::optional<Origin> parseOrigin(std::string_view s, bool allowWildcard = false);

struct OriginPattern {
  Origin origin;          // for a wildcard, host is the domain after "*."
  bool wildcard = false;  // *.domain
  bool matches(const Origin& o) const;
};

// An allow_origins entry (not "*"): an exact origin, "null", or scheme://*.domain[:port].
std::optional<OriginPattern> parseOriginPattern(std::string_view s);

struct CorsPolicy {
  bool anyOrigin = false;  // "*"
  std::vector<OriginPattern> origins;
  std::vector<std::string> methods;  // exact (methods are case-sensitive)
  bool anyMethod = false;
  std::vector<std::string> headers;  // lower-case
  bool anyHeader = false;
  std::string exposeHeaders;  // joined with ", "
  bool credentials = false;
  int64_t maxAgeSeconds = -1;  // < 0: no Access-Control-Max-Age
  bool privateNetwork = false;
  bool rejectDisallowed = false;

  // Precomputed: the exact origins as a browser serialises them (a byte compare finds the
  // usual case without parsing), and answer parts.
  std::vector<std::string> exactOrigins;
  std::string methodsValue;  // Access-Control-Allow-Methods
  std::string maxAgeValue;
  void finish();

  bool originAllowed(std::string_view origin) const;
  bool methodAllowed(std::string_view method) const;
  // Every header of a comma-separated Access-Control-Request-Headers value is allowed.
  bool headersAllowed(std::string_view requested) const;
};

enum class PreflightVerdict { Allowed, Forbidden };

// The decision for a preflight (pure: the tests drive it directly).
PreflightVerdict judgePreflight(const CorsPolicy& p, std::string_view origin,
                                std::string_view method, std::string_view requestHeaders,
                                bool privateNetworkRequested);

// Adds `token` to the response's Vary unless it is already there (or Vary is "*"): merged into
// a single existing Vary field, or a new one.
void mergeVary(http::HeaderMap& headers, std::string_view token);

// Removes every Access-Control-* header.
void removeAccessControl(http::HeaderMap& headers);

class CorsFactory final : public FilterFactory {
 public:
  CorsFactory(std::string name, CorsPolicy policy)
      : name_(std::move(name)), policy_(std::move(policy)) {}
  Filter* create(FilterArena& arena, FilterCallbacks& callbacks) const override;
  std::string_view name() const override { return name_; }
  const CorsPolicy& policy() const { return policy_; }

 private:
  std::string name_;
  CorsPolicy policy_;
};

}  // namespace sluice::middleware
