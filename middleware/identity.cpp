#include "middleware/identity.h"

#include <openssl/evp.h>

#include "proxy/http/cookie.h"
#include "proxy/http/message.h"

namespace sluice::middleware {

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
        value = http::findCookie(ctx.request->headers, name).value_or(std::string_view());
        source = "cookie:";
      }
      break;
    case RateLimitKeyKind::JwtClaim:
      if (ctx.attributes.has("jwt")) {  // claims of a verified token only
        if (const std::string* v = ctx.attributes.get("jwt", name)) value = *v;
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
