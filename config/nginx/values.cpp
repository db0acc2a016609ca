#include "config/nginx/values.h"

#include <arpa/inet.h>
#include <re2/re2.h>

#include <charconv>

namespace sluice::config::nginx {

namespace {

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isVarChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || isDigit(c) || c == '_';
}

std::optional<uint64_t> number(std::string_view s) {
  if (s.empty() || s.size() > 15) return std::nullopt;
  uint64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<int> port(std::string_view s) {
  auto v = number(s);
  if (!v || *v < 1 || *v > 65535) return std::nullopt;
  return int(*v);
}

bool isIpv4(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

bool isIpv6(const std::string& s) {
  in6_addr a{};
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

}  // namespace

std::optional<int64_t> parseTimeMs(std::string_view s) {
  if (s.empty()) return std::nullopt;
  if (auto bare = number(s)) return int64_t(*bare) * 1000;
  int64_t total = 0;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == ' ') {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && isDigit(s[j])) ++j;
    auto n = number(s.substr(i, j - i));
    if (!n || j == s.size()) return std::nullopt;
    int64_t unit = 0;
    size_t ulen = 1;
    switch (s[j]) {
      case 'y':
        unit = 365LL * 86400000;
        break;
      case 'M':
        unit = 30LL * 86400000;
        break;
      case 'w':
        unit = 7LL * 86400000;
        break;
      case 'd':
        unit = 86400000;
        break;
      case 'h':
        unit = 3600000;
        break;
      case 'm':
        if (j + 1 < s.size() && s[j + 1] == 's') {
          unit = 1;
          ulen = 2;
        } else {
          unit = 60000;
        }
        break;
      case 's':
        unit = 1000;
        break;
      default:
        return std::nullopt;
    }
    total += int64_t(*n) * unit;
    if (total > int64_t(1) << 50) return std::nullopt;
    i = j + ulen;
  }
  return total;
}

std::string formatDuration(int64_t ms) {
  if (ms == 0) return "0";
  if (ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms % 60000 == 0 && ms >= 60000 * 2) return std::to_string(ms / 60000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::optional<uint64_t> parseSize(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t mult = 1;
  switch (s.back()) {
    case 'k':
    case 'K':
      mult = 1024;
      break;
    case 'm':
    case 'M':
      mult = 1024 * 1024;
      break;
    case 'g':
    case 'G':
      mult = 1024ULL * 1024 * 1024;
      break;
    default:
      break;
  }
  if (mult != 1) s.remove_suffix(1);
  auto n = number(s);
  if (!n) return std::nullopt;
  return *n * mult;
}

std::string formatSize(uint64_t bytes) {
  if (bytes != 0 && bytes % (1024ULL * 1024 * 1024) == 0)
    return std::to_string(bytes / (1024ULL * 1024 * 1024)) + "g";
  if (bytes != 0 && bytes % (1024 * 1024) == 0) return std::to_string(bytes / (1024 * 1024)) + "m";
  if (bytes != 0 && bytes % 1024 == 0) return std::to_string(bytes / 1024) + "k";
  return std::to_string(bytes);
}

std::vector<VarRef> findVariables(std::string_view s) {
  std::vector<VarRef> out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '$' || i + 1 == s.size()) continue;
    VarRef v;
    v.pos = i;
    if (s[i + 1] == '{') {
      const size_t close = s.find('}', i + 2);
      if (close == std::string_view::npos) continue;
      v.name.assign(s.substr(i + 2, close - i - 2));
      v.len = close + 1 - i;
    } else if (isDigit(s[i + 1])) {
      v.name.assign(1, s[i + 1]);
      v.len = 2;
    } else {
      size_t j = i + 1;
      while (j < s.size() && isVarChar(s[j])) ++j;
      if (j == i + 1) continue;
      v.name.assign(s.substr(i + 1, j - i - 1));
      v.len = j - i;
    }
    i += v.len - 1;
    out.push_back(std::move(v));
  }
  return out;
}

std::optional<std::string> translateVariables(std::string_view s,
                                              const std::vector<VarMapping>& map,
                                              std::string& unknown) {
  std::string out;
  size_t at = 0;
  for (const VarRef& v : findVariables(s)) {
    const VarMapping* found = nullptr;
    for (const auto& m : map)
      if (m.nginx == v.name) found = &m;
    if (found == nullptr) {
      unknown = "$" + v.name;
      return std::nullopt;
    }
    out.append(s.substr(at, v.pos - at));
    out.append(found->sluice);
    at = v.pos + v.len;
  }
  out.append(s.substr(at));
  return out;
}

std::string parseAuthority(std::string_view s, int defaultPort, std::string& err) {
  std::string host;
  std::string_view rest;
  if (s.starts_with("[")) {
    const size_t close = s.find(']');
    if (close == std::string_view::npos) {
      err = "unclosed '[' in '" + std::string(s) + "'";
      return "";
    }
    host.assign(s.substr(1, close - 1));
    rest = s.substr(close + 1);
    if (!isIpv6(host)) {
      err = "invalid IPv6 address '" + host + "'";
      return "";
    }
    host = "[" + host + "]";
  } else {
    const size_t colon = s.find(':');
    host.assign(s.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : s.substr(colon);
    if (host.empty() || host.find_first_of("/$ ") != std::string::npos) {
      err = "invalid address '" + std::string(s) + "'";
      return "";
    }
  }
  int p = defaultPort;
  if (!rest.empty()) {
    auto parsed = rest.starts_with(":") ? port(rest.substr(1)) : std::nullopt;
    if (!parsed) {
      err = "invalid port in '" + std::string(s) + "'";
      return "";
    }
    p = *parsed;
  }
  return host + ":" + std::to_string(p);
}

bool parseListen(const std::vector<std::string>& args, ListenSpec& out, std::string& err) {
  if (args.empty()) {
    err = "no address";
    return false;
  }
  const std::string& a = args[0];
  if (a.starts_with("unix:")) {
    err = "Sluice listens on TCP addresses only, not on unix sockets";
    return false;
  }
  if (auto bare = port(a)) {  // "80": every IPv4 address
    out.address = "0.0.0.0:" + std::to_string(*bare);
    out.port = *bare;
  } else {
    std::string host;
    int p = 80;
    if (a.starts_with("[")) {
      const size_t close = a.find(']');
      if (close == std::string::npos || !isIpv6(a.substr(1, close - 1))) {
        err = "invalid IPv6 address '" + a + "'";
        return false;
      }
      host = a.substr(0, close + 1);
      out.ipv6 = true;
      if (close + 1 < a.size()) {
        auto pp = a[close + 1] == ':' ? port(std::string_view(a).substr(close + 2)) : std::nullopt;
        if (!pp) {
          err = "invalid port in '" + a + "'";
          return false;
        }
        p = *pp;
      }
    } else {
      const size_t colon = a.rfind(':');
      host = a.substr(0, colon);
      if (colon != std::string::npos) {
        auto pp = port(std::string_view(a).substr(colon + 1));
        if (!pp) {
          err = "invalid port in '" + a + "'";
          return false;
        }
        p = *pp;
      }
      if (host == "*") host = "0.0.0.0";
      if (host == "localhost") {
        host = "127.0.0.1";
        out.localhost = true;
      } else if (!isIpv4(host)) {
        err = "'" + host + "' is a host name: Sluice listens on IP addresses (write the address)";
        return false;
      }
    }
    out.address = host + ":" + std::to_string(p);
    out.port = p;
  }
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& o = args[i];
    if (o == "ssl") {
      out.ssl = true;
    } else if (o == "http2") {
      out.http2 = true;
    } else if (o == "default_server" || o == "default") {
      out.defaultServer = true;
    } else if (o == "ipv6only=on") {
      out.ipv6only = true;
    } else if (o == "ipv6only=off") {
      out.ipv6only = false;
    } else if (o == "reuseport" || o == "deferred" || o == "bind" || o.starts_with("backlog=") ||
               o.starts_with("rcvbuf=") || o.starts_with("sndbuf=") ||
               o.starts_with("so_keepalive=") || o.starts_with("fastopen=") ||
               o.starts_with("accept_filter=") || o.starts_with("setfib=")) {
      out.ignored.push_back(o);
    } else {
      out.unsupported.push_back(o);  // proxy_protocol, quic, unknown ones
    }
  }
  return true;
}

std::string toRe2(std::string_view pcre, bool caseless, std::string& err) {
  std::string re;
  if (caseless) re = "(?i)";
  for (size_t i = 0; i < pcre.size(); ++i) {
    if (pcre[i] == '\\' && i + 1 < pcre.size()) {
      re.push_back(pcre[i]);
      re.push_back(pcre[++i]);
      continue;
    }
    if (pcre.substr(i).starts_with("(?<") && i + 3 < pcre.size() && pcre[i + 3] != '=' &&
        pcre[i + 3] != '!') {
      re += "(?P<";
      i += 2;
      continue;
    }
    re.push_back(pcre[i]);
  }
  if (re.find("${") != std::string::npos) {
    err = "'${' would be read as an environment variable by Sluice's loader";
    return "";
  }
  RE2::Options opt;
  opt.set_log_errors(false);
  RE2 compiled(re, opt);
  if (!compiled.ok()) {
    err = compiled.error();
    return "";
  }
  return re;
}

int captureGroups(const std::string& re2) {
  RE2::Options opt;
  opt.set_log_errors(false);
  RE2 compiled(re2, opt);
  return compiled.ok() ? compiled.NumberOfCapturingGroups() : -1;
}

bool regexMatches(const std::string& re, std::string_view text) {
  RE2::Options opt;
  opt.set_log_errors(false);
  RE2 compiled(re, opt);
  return compiled.ok() && RE2::PartialMatch(text, compiled);
}

std::string quoteRegex(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\.+*?()|[]{}^$").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

bool isRouteHost(std::string_view host) {
  if (host.starts_with("*.")) host.remove_prefix(2);
  if (host.empty() || host.front() == '.' || host.back() == '.' ||
      host.find("..") != std::string_view::npos)
    return false;
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || isDigit(c) || c == '-' ||
                    c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::string asciiLower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return s;
}

}  // namespace sluice::config::nginx
