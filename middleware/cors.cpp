#include "middleware/cors.h"

#include <algorithm>

namespace sluice::middleware {

namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? char(c + 32) : c;
}

std::string lowered(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

bool schemeChar(char c, bool first) {
  const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  if (first) return alpha;
  return alpha || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

bool hostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

// A registered name or IPv4: labels of host characters, none empty.
bool validHost(std::string_view h) {
  if (h.empty() || h.front() == '.' || h.back() == '.') return false;
  for (size_t i = 0; i < h.size(); ++i) {
    if (!hostChar(h[i])) return false;
    if (h[i] == '.' && h[i + 1] == '.') return false;
  }
  return true;
}

uint16_t defaultPort(std::string_view scheme) {
  if (scheme == "http" || scheme == "ws") return 80;
  if (scheme == "https" || scheme == "wss") return 443;
  return 0;
}

constexpr std::string_view kAccessControl = "access-control-";

}  // namespace

std::string Origin::str() const {
  if (opaque) return "null";
  std::string out = scheme + "://" + host;
  if (port != 0) out += ":" + std::to_string(port);
  return out;
}

std::optional<Origin> parseOrigin(std::string_view s, bool allowWildcard) {
  Origin o;
  if (s == "null") {
    o.opaque = true;
    return o;
  }
  const size_t sep = s.find("://");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  for (size_t i = 0; i < sep; ++i)
    if (!schemeChar(s[i], i == 0)) return std::nullopt;
  o.scheme = lowered(s.substr(0, sep));
  std::string_view rest = s.substr(sep + 3);
  if (rest.empty() || rest.find_first_of("/?#@\\ ") != std::string_view::npos) return std::nullopt;
  std::string_view host = rest, port;
  if (rest.front() == '[') {  // IPv6 literal
    const size_t close = rest.find(']');
    if (close == std::string_view::npos || close < 3) return std::nullopt;
    host = rest.substr(0, close + 1);
    for (char c : host.substr(1, host.size() - 2))
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
            c == ':' || c == '.'))
        return std::nullopt;
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port = after.substr(1);
      if (port.empty()) return std::nullopt;
    }
  } else {
    const size_t colon = rest.rfind(':');
    if (colon != std::string_view::npos) {
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
      if (port.empty()) return std::nullopt;
    }
    std::string_view name = host;
    if (allowWildcard && name.size() > 2 && name.substr(0, 2) == "*.") name.remove_prefix(2);
    if (!validHost(name)) return std::nullopt;
  }
  o.host = lowered(host);
  if (!port.empty()) {
    if (port.size() > 5) return std::nullopt;
    uint32_t v = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + uint32_t(c - '0');
    }
    if (v == 0 || v > 65535) return std::nullopt;
    o.port = uint16_t(v);
  }
  if (o.port == defaultPort(o.scheme)) o.port = 0;
  return o;
}

std::optional<OriginPattern> parseOriginPattern(std::string_view s) {
  auto o = parseOrigin(s, true);
  if (!o) return std::nullopt;
  OriginPattern p;
  p.origin = std::move(*o);
  if (p.origin.host.rfind("*.", 0) == 0) {
    p.wildcard = true;
    p.origin.host.erase(0, 2);
  }
  return p;
}

bool OriginPattern::matches(const Origin& o) const {
  if (o.opaque || origin.opaque) return o.opaque && origin.opaque && !wildcard;
  if (o.scheme != origin.scheme || o.port != origin.port) return false;
  if (!wildcard) return o.host == origin.host;
  // *.domain: at least one whole label in front of ".domain".
  const std::string& d = origin.host;
  return o.host.size() > d.size() + 1 &&
         o.host.compare(o.host.size() - d.size(), d.size(), d) == 0 &&
         o.host[o.host.size() - d.size() - 1] == '.' && o.host.front() != '.';
}

void CorsPolicy::finish() {
  exactOrigins.clear();
  for (const auto& p : origins)
    if (!p.wildcard) exactOrigins.push_back(p.origin.str());
  methodsValue.clear();
  for (const auto& m : methods) {
    if (!methodsValue.empty()) methodsValue += ", ";
    methodsValue += m;
  }
  maxAgeValue = maxAgeSeconds >= 0 ? std::to_string(maxAgeSeconds) : "";
}

bool CorsPolicy::originAllowed(std::string_view origin) const {
  if (origin.empty()) return false;
  for (const auto& e : exactOrigins)
    if (e == origin) return true;
  auto o = parseOrigin(origin);
  if (!o) return false;
  if (anyOrigin && !o->opaque) return true;
  for (const auto& p : origins)
    if (p.matches(*o)) return true;
  return false;
}

bool CorsPolicy::methodAllowed(std::string_view method) const {
  if (method.empty()) return false;
  if (anyMethod || method == "GET" || method == "HEAD" || method == "POST") return true;
  return std::find(methods.begin(), methods.end(), method) != methods.end();
}

bool CorsPolicy::headersAllowed(std::string_view requested) const {
  while (!requested.empty()) {
    const size_t comma = requested.find(',');
    std::string_view h = http::trimOws(requested.substr(0, comma));
    if (!h.empty() && !anyHeader) {
      bool found = false;
      for (const auto& a : headers)
        if (http::iequals(a, h)) {
          found = true;
          break;
        }
      if (!found) return false;
    }
    if (comma == std::string_view::npos) break;
    requested.remove_prefix(comma + 1);
  }
  return true;
}

PreflightVerdict judgePreflight(const CorsPolicy& p, std::string_view origin,
                                std::string_view method, std::string_view requestHeaders,
                                bool privateNetworkRequested) {
  if (!p.originAllowed(origin) || !p.methodAllowed(method) || !p.headersAllowed(requestHeaders) ||
      (privateNetworkRequested && !p.privateNetwork))
    return PreflightVerdict::Forbidden;
  return PreflightVerdict::Allowed;
}

void mergeVary(http::HeaderMap& headers, std::string_view token) {
  size_t only = SIZE_MAX;
  size_t count = 0;
  for (size_t i = 0; i < headers.size(); ++i) {
    if (headers.removedAt(i) || headers.idAt(i) != http::Hdr::Vary) continue;
    const std::string_view v = headers.valueAt(i);
    if (http::trimOws(v) == "*" || http::listContainsToken(v, token)) return;
    only = i;
    ++count;
  }
  if (count != 1) {
    headers.add("Vary", token);
    return;
  }
  std::string merged(http::trimOws(headers.valueAt(only)));
  if (!merged.empty()) merged += ", ";
  merged += token;
  headers.removeAt(only);
  headers.add("Vary", merged);
}

void removeAccessControl(http::HeaderMap& headers) {
  for (size_t i = 0; i < headers.size(); ++i) {
    if (headers.removedAt(i) || headers.idAt(i) != http::Hdr::Other) continue;
    const std::string_view n = headers.nameAt(i);
    if (n.size() > kAccessControl.size() &&
        http::iequals(n.substr(0, kAccessControl.size()), kAccessControl))
      headers.removeAt(i);
  }
}

namespace {

class CorsFilter final : public Filter {
 public:
  CorsFilter(const CorsPolicy& p, FilterCallbacks& cb) : p_(p), cb_(cb) {}

  Status onRequestHeaders(RequestContext& ctx) override {
    const http::RequestHead& req = *ctx.request;
    classify(req);
    if (state_ == State::NoOrigin) return Status::Continue;
    const std::string_view acrm = req.headers.get("Access-Control-Request-Method");
    if (req.method == "OPTIONS" && !acrm.empty()) return preflight(req, acrm);
    if (state_ == State::Disallowed && p_.rejectDisallowed && !sameOrigin(ctx)) {
      state_ = State::Refused;
      cb_.sendLocalReply(http::LocalReply(403, "cors_forbidden"));  // may destroy this filter
      return Status::Stop;
    }
    return Status::Continue;
  }

  void onResponseHeaders(RequestContext& ctx, http::ResponseHead& head) override {
    if (state_ == State::Preflight) return;  // the reply carries the policy's headers already
    if (state_ == State::Unknown) classify(*ctx.request);  // an earlier filter answered
    removeAccessControl(head.headers);  // the backend's own CORS headers never pass
    mergeVary(head.headers, "Origin");
    if (state_ != State::Allowed) return;
    head.headers.add("Access-Control-Allow-Origin", p_.anyOrigin ? "*" : origin_);
    if (p_.credentials) head.headers.add("Access-Control-Allow-Credentials", "true");
    if (!p_.exposeHeaders.empty())
      head.headers.add("Access-Control-Expose-Headers", p_.exposeHeaders);
  }

 private:
  enum class State : uint8_t { Unknown, NoOrigin, Allowed, Disallowed, Preflight, Refused };

  void classify(const http::RequestHead& req) {
    bool found = false;
    origin_ = req.headers.get(http::Hdr::Origin, &found);
    if (!found) {
      state_ = State::NoOrigin;
      return;
    }
    state_ = p_.originAllowed(origin_) ? State::Allowed : State::Disallowed;
  }

  // A request to itself (a browser sends Origin on same-origin POSTs too) is never refused.
  bool sameOrigin(const RequestContext& ctx) const {
    const std::string_view host = ctx.request->headers.get(http::Hdr::Host);
    if (host.empty()) return false;
    auto self = parseOrigin(std::string(ctx.tls ? "https://" : "http://") + std::string(host));
    auto o = parseOrigin(origin_);
    return self && o && *self == *o;
  }

  Status preflight(const http::RequestHead& req, std::string_view method) {
    const std::string_view acrh = req.headers.get("Access-Control-Request-Headers");
    const bool pna = http::iequals(
        http::trimOws(req.headers.get("Access-Control-Request-Private-Network")), "true");
    if (judgePreflight(p_, origin_, method, acrh, pna) == PreflightVerdict::Forbidden) {
      state_ = State::Refused;
      cb_.sendLocalReply(http::LocalReply(403, "cors_forbidden"));  // may destroy this filter
      return Status::Stop;
    }
    state_ = State::Preflight;
    http::LocalReply r;
    r.status = 204;
    r.header("Access-Control-Allow-Origin", p_.anyOrigin && !p_.credentials ? "*" : origin_);
    r.header("Access-Control-Allow-Methods", p_.anyMethod ? method : p_.methodsValue);
    if (!http::trimOws(acrh).empty())
      r.header("Access-Control-Allow-Headers", http::trimOws(acrh));  // all of them allowed
    if (p_.credentials) r.header("Access-Control-Allow-Credentials", "true");
    if (!p_.maxAgeValue.empty()) r.header("Access-Control-Max-Age", p_.maxAgeValue);
    if (pna) r.header("Access-Control-Allow-Private-Network", "true");
    r.header("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
    cb_.sendLocalReply(r);  // may destroy this filter
    return Status::Stop;
  }

  const CorsPolicy& p_;
  FilterCallbacks& cb_;
  std::string_view origin_;  // the request's Origin (the request head outlives the filter)
  State state_ = State::Unknown;
};

}  // namespace

Filter* CorsFactory::create(FilterArena& arena, FilterCallbacks& callbacks) const {
  return arena.make<CorsFilter>(policy_, callbacks);
}

}  // namespace sluice::middleware
