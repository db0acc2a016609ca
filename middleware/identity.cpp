#include "middleware/identity.h"

#include <openssl/evp.h>

#include "proxy/http/message.h"

namespace sluice::middleware {

std::string_view cookieValue(std::string_view header, std::string_view name, bool& found) {
  found = false;
  while (!header.empty()) {
    size_t semi = header.find(';');
    std::string_view pair = http::trimOws(header.substr(0, semi));
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    if (http::trimOws(pair.substr(0, eq)) != name) continue;  // cookie names are case-sensitive
    std::string_view v = http::trimOws(pair.substr(eq + 1));
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    found = true;
    return v;
  }
  return {};
}

namespace {

void appendValue(std::string& out, std::string_view v) {
  if (v.size() <= 128) {
    out.append(v);
    return;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(v.data(), v.size(), md, &len, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  out.append("sha256:");
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
}

}  // namespace

bool appendIdentityKey(RateLimitKeyKind kind, std::string_view name, const RequestContext& ctx,
                       std::string& out) {
  std::string_view value;
  const char* source = nullptr;
  switch (kind) {
    case RateLimitKeyKind::Ip:
      break;
    case RateLimitKeyKind::Header:
      if (ctx.request != nullptr) {
        value = http::trimOws(ctx.request->headers.get(name));
        source = "header:";
      }
      break;
    case RateLimitKeyKind::Cookie:
      if (ctx.request != nullptr) {
        const http::HeaderMap& h = ctx.request->headers;
        for (size_t i = 0; i < h.size() && value.empty(); ++i) {
          if (h.removedAt(i) || !http::iequals(h.nameAt(i), "cookie")) continue;
          bool found = false;
          value = cookieValue(h.valueAt(i), name, found);
        }
        source = "cookie:";
      }
      break;
    case RateLimitKeyKind::JwtClaim:
      if (ctx.claimsVerified) {
        if (auto it = ctx.claims.find(name); it != ctx.claims.end()) value = it->second;
        source = "jwt:";
      }
      break;
  }
  if (source != nullptr && !value.empty()) {
    out.append(source);
    appendValue(out, value);
    return true;
  }
  out.append("ip:");
  out.append(ctx.clientIp);
  return false;
}

}  // namespace sluice::middleware
