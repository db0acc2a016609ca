#include "config/redis_url.h"

#include <charconv>

namespace sluice::config {

namespace {

int hexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool percentDecode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = hexVal(in[i + 1]), lo = hexVal(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(char(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool parseDb(std::string_view s, int& db, std::string& err) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v < 0 || v > 1000000) {
    err = "invalid database number '" + std::string(s) + "'";
    return false;
  }
  db = v;
  return true;
}

constexpr std::string_view kExpect = " (expected redis://[:password@]host:port/db or unix:///path)";

// unix:///path[?db=N&password=P]
bool parseUnixUrl(std::string_view url, RedisSettings& out, std::string& err) {
  std::string_view rest = url.substr(7);
  std::string_view query;
  if (size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (rest.empty() || rest[0] != '/') {
    err = "unix socket url needs an absolute path" + std::string(kExpect);
    return false;
  }
  out.unixSocket = true;
  out.path = std::string(rest);
  out.host.clear();
  out.port = 0;
  out.password.clear();
  out.db = 0;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (kv.starts_with("db=")) {
      if (!parseDb(kv.substr(3), out.db, err)) return false;
    } else if (kv.starts_with("password=")) {
      if (!percentDecode(kv.substr(9), out.password)) {
        err = "invalid %-escape in password";
        return false;
      }
    } else {
      err = "unknown unix socket url parameter '" + std::string(kv) + "' (db=, password=)";
      return false;
    }
  }
  return true;
}

// "host", "host:port", "[v6]" or "[v6]:port" of a redis:// authority.
bool splitAuthority(std::string_view authority, std::string_view& host, std::string_view& port,
                    std::string& err) {
  host = authority;
  if (host.starts_with("[")) {
    size_t close = host.find(']');
    if (close == std::string_view::npos) {
      err = "missing ']' in IPv6 address" + std::string(kExpect);
      return false;
    }
    std::string_view after = host.substr(close + 1);
    host = host.substr(1, close - 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        err = "unexpected text after ']'" + std::string(kExpect);
        return false;
      }
      port = after.substr(1);
    }
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  if (host.empty()) {
    err = "missing host" + std::string(kExpect);
    return false;
  }
  return true;
}

// redis://[:password@]host[:port][/db]
bool parseTcpUrl(std::string_view url, RedisSettings& out, std::string& err) {
  std::string_view rest = url.substr(8);
  std::string_view authority = rest.substr(0, rest.find('/'));
  std::string_view pathPart =
      authority.size() < rest.size() ? rest.substr(authority.size() + 1) : std::string_view();
  out.unixSocket = false;
  out.path.clear();
  out.password.clear();
  out.db = 0;
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = userinfo.find(':');
    std::string_view pw = colon == std::string_view::npos ? userinfo : userinfo.substr(colon + 1);
    if (!percentDecode(pw, out.password)) {
      err = "invalid %-escape in password";
      return false;
    }
  }
  std::string_view host, port;
  if (!splitAuthority(authority, host, port, err)) return false;
  out.host = std::string(host);
  out.port = 6379;
  if (!port.empty() || authority.ends_with(":")) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (port.empty() || ec != std::errc() || p != port.data() + port.size() || v == 0 ||
        v > 65535) {
      err = "invalid port '" + std::string(port) + "'";
      return false;
    }
    out.port = uint16_t(v);
  }
  if (size_t q = pathPart.find('?'); q != std::string_view::npos) {
    err = "query parameters are not supported in redis:// urls";
    return false;
  }
  if (!pathPart.empty() && !parseDb(pathPart, out.db, err)) return false;
  return true;
}

}  // namespace

bool parseRedisUrl(std::string_view url, RedisSettings& out, std::string& err) {
  if (url.starts_with("unix://")) return parseUnixUrl(url, out, err);
  if (url.starts_with("redis://")) return parseTcpUrl(url, out, err);
  err = "unsupported url '" + std::string(url) + "'" + std::string(kExpect);
  return false;
}

}  // namespace sluice::config
