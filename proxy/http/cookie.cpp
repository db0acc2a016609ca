// Request Cookie header parsing (see cookie.h).
#include "proxy/http/cookie.h"

namespace sluice::http {

bool nextCookie(std::string_view& rest, CookiePair& out) {
  while (!rest.empty()) {
    size_t semi = rest.find(';');
    std::string_view pair = rest.substr(0, semi);
    rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view name = trimOws(pair.substr(0, eq));
    if (name.empty()) continue;
    std::string_view value = trimOws(pair.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    out = {name, value};
    return true;
  }
  return false;
}

std::optional<std::string_view> findCookie(std::string_view headerValue, std::string_view name) {
  for (const CookiePair& c : CookieRange(headerValue))
    if (c.name == name) return c.value;
  return std::nullopt;
}

std::optional<std::string_view> findCookie(const HeaderMap& headers, std::string_view name) {
  std::optional<std::string_view> found;
  forEachCookie(headers, [&](const CookiePair& c) {
    if (c.name != name) return true;
    found = c.value;
    return false;
  });
  return found;
}

}  // namespace sluice::http
