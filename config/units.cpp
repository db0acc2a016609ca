// Parsers for durations, sizes, ${ENV} interpolation, host:port and CIDRs (see units.h).
#include "config/units.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdlib>
#include <cstring>
#include <limits>

namespace sluice::config {

namespace {

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Parses a run of decimal digits at text[i...], advancing i. Fails on no digits or overflow.
bool parseDigits(std::string_view text, size_t& i, uint64_t& value) {
  size_t start = i;
  value = 0;
  while (i < text.size() && isDigit(text[i])) {
    uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    value = value * 10 + d;
    ++i;
  }
  return i > start;
}

bool mulOverflows(uint64_t a, uint64_t b, uint64_t limit) {
  return b != 0 && a > limit / b;
}

// inet_pton needs a NUL-terminated string; string_view may not be.
bool ptonV4(std::string_view s, in_addr& out) {
  if (s.empty() || s.size() > INET_ADDRSTRLEN) return false;
  std::string tmp(s);
  return inet_pton(AF_INET, tmp.c_str(), &out) == 1;
}

bool ptonV6(std::string_view s, in6_addr& out) {
  if (s.empty() || s.size() > INET6_ADDRSTRLEN) return false;
  std::string tmp(s);
  return inet_pton(AF_INET6, tmp.c_str(), &out) == 1;
}

// Host names as Docker/K8s/DNS use them: letters, digits, '-', '_' and dots between labels.
bool isValidHostName(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i < host.size(); ++i) {
    char c = host[i];
    if (c == '.') {
      if (label == 0) return false;  // empty label: "a..b" or ".a"
      label = 0;
      continue;
    }
    if (!isAlpha(c) && !isDigit(c) && c != '-' && c != '_') return false;
    if (++label > 63) return false;
  }
  return true;  // a trailing dot (FQDN) is fine
}

bool looksLikeIpv4(std::string_view host) {
  for (char c : host) {
    if (!isDigit(c) && c != '.') return false;
  }
  return !host.empty();
}

}  // namespace

std::optional<Duration> parseDuration(std::string_view text) {
  if (text == "0") return Duration{0};
  if (text.empty()) return std::nullopt;
  const uint64_t maxMs = static_cast<uint64_t>(std::numeric_limits<Duration::rep>::max());
  uint64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    uint64_t value = 0;
    if (!parseDigits(text, i, value)) return std::nullopt;
    uint64_t factor = 0;
    if (text.substr(i, 2) == "ms") {
      factor = 1;
      i += 2;
    } else if (i < text.size() && text[i] == 's') {
      factor = 1000;
      ++i;
    } else if (i < text.size() && text[i] == 'm') {
      factor = 60 * 1000;
      ++i;
    } else if (i < text.size() && text[i] == 'h') {
      factor = 60 * 60 * 1000;
      ++i;
    } else {
      return std::nullopt;  // missing or unknown unit: a bare "30" is ambiguous
    }
    if (mulOverflows(value, factor, maxMs)) return std::nullopt;
    uint64_t part = value * factor;
    if (part > maxMs - total) return std::nullopt;
    total += part;
  }
  return Duration{static_cast<Duration::rep>(total)};
}

std::optional<uint64_t> parseSize(std::string_view text) {
  size_t i = 0;
  uint64_t value = 0;
  if (!parseDigits(text, i, value)) return std::nullopt;
  if (i == text.size()) return value;
  if (i + 1 != text.size()) return std::nullopt;
  uint64_t factor = 0;
  switch (text[i]) {
    case 'k':
    case 'K':
      factor = 1024ull;
      break;
    case 'm':
    case 'M':
      factor = 1024ull * 1024;
      break;
    case 'g':
    case 'G':
      factor = 1024ull * 1024 * 1024;
      break;
    default:
      return std::nullopt;
  }
  if (mulOverflows(value, factor, std::numeric_limits<uint64_t>::max())) return std::nullopt;
  return value * factor;
}

bool interpolateEnv(std::string_view in, std::string& out, std::string& err) {
  out.clear();
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    if (in[i] != '$' || i + 1 >= in.size() || in[i + 1] != '{') {
      out.push_back(in[i++]);
      continue;
    }
    size_t close = in.find('}', i + 2);
    if (close == std::string_view::npos) {
      err = "unterminated '${' (missing '}')";
      return false;
    }
    std::string_view body = in.substr(i + 2, close - i - 2);
    std::string_view name = body;
    std::optional<std::string_view> fallback;
    if (size_t sep = body.find(":-"); sep != std::string_view::npos) {
      name = body.substr(0, sep);
      fallback = body.substr(sep + 2);
    }
    bool validName = !name.empty() && !isDigit(name[0]);
    for (char c : name) validName = validName && (isAlpha(c) || isDigit(c) || c == '_');
    if (!validName) {
      err = "invalid environment variable reference '${" + std::string(body) +
            "}' (expected ${NAME} or ${NAME:-default})";
      return false;
    }
    const char* value = std::getenv(std::string(name).c_str());
    if (value != nullptr && (*value != '\0' || !fallback)) {
      out += value;
    } else if (fallback) {
      out += *fallback;
    } else {
      err = "environment variable '" + std::string(name) + "' is not set (use ${" +
            std::string(name) + ":-default} to give a default)";
      return false;
    }
    i = close + 1;
  }
  return true;
}

bool isIpLiteral(std::string_view host) {
  in_addr a4;
  in6_addr a6;
  return ptonV4(host, a4) || ptonV6(host, a6);
}

bool parseHostPort(std::string_view text, HostPort& out, std::string& err, bool allowPortZero) {
  std::string_view host;
  std::string_view portText;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      err = "missing ']' in '" + std::string(text) + "'";
      return false;
    }
    host = text.substr(1, close - 1);
    in6_addr a6;
    if (!ptonV6(host, a6)) {
      err = "invalid IPv6 address '" + std::string(host) + "'";
      return false;
    }
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      err = "expected host:port (missing port) in '" + std::string(text) + "'";
      return false;
    }
    portText = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      err = "expected host:port (missing port) in '" + std::string(text) + "'";
      return false;
    }
    host = text.substr(0, colon);
    portText = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      err = "IPv6 addresses need brackets, e.g. '[::1]:8080', got '" + std::string(text) + "'";
      return false;
    }
    if (host.empty()) {
      err = "missing host in '" + std::string(text) + "' (use 0.0.0.0 or [::] for all)";
      return false;
    }
    in_addr a4;
    if (looksLikeIpv4(host) && !ptonV4(host, a4)) {
      err = "invalid IPv4 address '" + std::string(host) + "'";
      return false;
    }
    if (!isValidHostName(host)) {
      err = "invalid host name '" + std::string(host) + "'";
      return false;
    }
  }
  size_t i = 0;
  uint64_t port = 0;
  if (portText.size() > 5 || !parseDigits(portText, i, port) || i != portText.size() ||
      port > 65535 || (port == 0 && !allowPortZero)) {
    err = "invalid port '" + std::string(portText) + "' (expected 1-65535)";
    return false;
  }
  out.host = std::string(host);
  out.port = static_cast<uint16_t>(port);
  return true;
}

std::string formatHostPort(const HostPort& hp) {
  if (hp.host.find(':') != std::string::npos) {
    return "[" + hp.host + "]:" + std::to_string(hp.port);
  }
  return hp.host + ":" + std::to_string(hp.port);
}

bool parseCidr(std::string_view text, Cidr& out) {
  std::string_view addr = text;
  std::optional<uint64_t> prefix;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    std::string_view p = text.substr(slash + 1);
    size_t i = 0;
    uint64_t v = 0;
    if (p.size() > 3 || !parseDigits(p, i, v) || i != p.size()) return false;
    prefix = v;
  }
  Cidr result;
  in_addr a4;
  in6_addr a6;
  uint8_t* bytes = nullptr;
  int bits = 0;
  if (ptonV4(addr, a4)) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&result.network);
    sin->sin_family = AF_INET;
    sin->sin_addr = a4;
    bytes = reinterpret_cast<uint8_t*>(&sin->sin_addr);
    bits = 32;
  } else if (ptonV6(addr, a6)) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&result.network);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = a6;
    bytes = reinterpret_cast<uint8_t*>(&sin6->sin6_addr);
    bits = 128;
  } else {
    return false;
  }
  if (prefix && *prefix > static_cast<uint64_t>(bits)) return false;
  result.prefixLen = prefix ? static_cast<int>(*prefix) : bits;
  // Zero the host bits so comparisons only need the prefix.
  for (int b = result.prefixLen; b < bits; ++b) {
    bytes[b / 8] &= static_cast<uint8_t>(~(0x80u >> (b % 8)));
  }
  out = result;
  return true;
}

bool toSockaddr(const HostPort& hp, sockaddr_storage& out, socklen_t& len) {
  in_addr a4;
  in6_addr a6;
  std::memset(&out, 0, sizeof(out));
  if (ptonV4(hp.host, a4)) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(hp.port);
    sin->sin_addr = a4;
    len = sizeof(sockaddr_in);
    return true;
  }
  if (ptonV6(hp.host, a6)) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(hp.port);
    sin6->sin6_addr = a6;
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

bool cidrContains(const Cidr& cidr, const sockaddr* addr) {
  if (addr == nullptr) return false;
  // Bring both sides to the same family: v4 CIDR vs v4-mapped v6 address compares the
  // embedded v4 address; v6 CIDR vs v4 address compares the mapped form.
  uint8_t buf[16];
  const uint8_t* addrBytes = nullptr;
  int family = cidr.network.ss_family;
  if (addr->sa_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(addr);
    if (family == AF_INET) {
      addrBytes = reinterpret_cast<const uint8_t*>(&sin->sin_addr);
    } else {
      std::memset(buf, 0, 10);
      buf[10] = buf[11] = 0xff;
      std::memcpy(buf + 12, &sin->sin_addr, 4);
      addrBytes = buf;
    }
  } else if (addr->sa_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(addr);
    const auto* b = reinterpret_cast<const uint8_t*>(&sin6->sin6_addr);
    if (family == AF_INET6) {
      addrBytes = b;
    } else if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
      addrBytes = b + 12;
    } else {
      return false;
    }
  } else {
    return false;
  }
  const uint8_t* net = nullptr;
  if (family == AF_INET) {
    net = reinterpret_cast<const uint8_t*>(
        &reinterpret_cast<const sockaddr_in*>(&cidr.network)->sin_addr);
  } else if (family == AF_INET6) {
    net = reinterpret_cast<const uint8_t*>(
        &reinterpret_cast<const sockaddr_in6*>(&cidr.network)->sin6_addr);
  } else {
    return false;
  }
  int full = cidr.prefixLen / 8;
  if (std::memcmp(net, addrBytes, static_cast<size_t>(full)) != 0) return false;
  int rest = cidr.prefixLen % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xffu << (8 - rest));
  return (net[full] & mask) == (addrBytes[full] & mask);
}

}  // namespace sluice::config
