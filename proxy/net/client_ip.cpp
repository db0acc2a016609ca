// Client address resolution through trusted proxies.
#include "proxy/net/client_ip.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "config/units.h"

namespace sluice::net {

static bool isTrusted(const sockaddr* a, const std::vector<config::Cidr>& trusted) {
  for (const auto& c : trusted)
    if (config::cidrContains(c, a)) return true;
  return false;
}

static bool parseIp(std::string_view text, sockaddr_storage& ss) {
  char buf[64];
  if (text.empty() || text.size() >= sizeof buf) return false;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = 0;
  std::memset(&ss, 0, sizeof ss);
  auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
  if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    return true;
  }
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    return true;
  }
  return false;
}

std::string_view realClientIp(std::string_view peerText, const http::HeaderMap& headers,
                              const std::vector<config::Cidr>& trusted, std::string& out) {
  if (trusted.empty()) return peerText;
  sockaddr_storage peer;
  if (!parseIp(peerText, peer) || !isTrusted(reinterpret_cast<sockaddr*>(&peer), trusted))
    return peerText;
  // Gather the X-Forwarded-For entries of every header line, in order.
  std::vector<std::string_view> hops;
  for (size_t i = 0; i < headers.size(); ++i) {
    if (headers.removedAt(i) || headers.idAt(i) != http::Hdr::XForwardedFor) continue;
    std::string_view v = headers.valueAt(i);
    while (!v.empty()) {
      size_t comma = v.find(',');
      std::string_view item = http::trimOws(v.substr(0, comma));
      if (!item.empty()) hops.push_back(item);
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  std::string_view result = peerText;
  for (size_t i = hops.size(); i-- > 0;) {
    sockaddr_storage ss;
    if (!parseIp(hops[i], ss)) break;  // garbage: believe nothing further left
    result = hops[i];
    if (!isTrusted(reinterpret_cast<sockaddr*>(&ss), trusted)) break;
  }
  if (result.data() == peerText.data()) return peerText;
  out.assign(result);
  return out;
}

}  // namespace sluice::net
