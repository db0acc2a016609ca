// Unit tests for config/nginx/values: nginx times and sizes, variables, listen, addresses and
// PCRE -> RE2 patterns.
#include "config/nginx/values.h"

#include <doctest/doctest.h>

using namespace sluice::config::nginx;

TEST_CASE("nginx times become Sluice durations") {
  CHECK(parseTimeMs("60") == 60000);
  CHECK(parseTimeMs("1m30s") == 90000);
  CHECK(parseTimeMs("500ms") == 500);
  CHECK(parseTimeMs("2h") == 7200000);
  CHECK(parseTimeMs("1d") == 86400000);
  CHECK(parseTimeMs("1w") == 7 * 86400000LL);
  CHECK(parseTimeMs("1M") == 30 * 86400000LL);
  CHECK(parseTimeMs("1y") == 365 * 86400000LL);
  CHECK(parseTimeMs("1m 30s") == 90000);
  CHECK_FALSE(parseTimeMs(""));
  CHECK_FALSE(parseTimeMs("10x"));
  CHECK_FALSE(parseTimeMs("s"));
  CHECK_FALSE(parseTimeMs("-5s"));
  CHECK_FALSE(parseTimeMs("99999999999999999999s"));
  CHECK(formatDuration(90000) == "90s");
  CHECK(formatDuration(120000) == "2m");
  CHECK(formatDuration(60000) == "60s");
  CHECK(formatDuration(3600000) == "1h");
  CHECK(formatDuration(250) == "250ms");
}

TEST_CASE("nginx sizes become Sluice sizes") {
  CHECK(parseSize("10m") == 10u << 20);
  CHECK(parseSize("10M") == 10u << 20);
  CHECK(parseSize("512k") == 512u << 10);
  CHECK(parseSize("1g") == 1ull << 30);
  CHECK(parseSize("100") == 100u);
  CHECK(parseSize("0") == 0u);
  CHECK_FALSE(parseSize("1.5m"));
  CHECK_FALSE(parseSize("m"));
  CHECK_FALSE(parseSize("-1"));
  CHECK(formatSize(4096) == "4k");
  CHECK(formatSize(1 << 20) == "1m");
  CHECK(formatSize(1000) == "1000");
  CHECK(formatSize(0) == "0");
}

TEST_CASE("variables: $name, ${name}, captures, and what Sluice's templates can say") {
  auto v = findVariables("a$host${request_uri}b$1$");
  REQUIRE(v.size() == 3);
  CHECK(v[0].name == "host");
  CHECK(v[1].name == "request_uri");
  CHECK(v[1].len == 14);
  CHECK(v[2].name == "1");
  const std::vector<VarMapping> map = {{"host", "{host}"}, {"request_uri", "{uri}"}};
  std::string unknown;
  CHECK(translateVariables("https://$host${request_uri}", map, unknown) == "https://{host}{uri}");
  CHECK_FALSE(translateVariables("$host:$server_port", map, unknown));
  CHECK(unknown == "$server_port");
  CHECK(translateVariables("plain", map, unknown) == "plain");
}

TEST_CASE("listen: ports, addresses, IPv6 and parameters") {
  ListenSpec l;
  std::string err;
  REQUIRE(parseListen({"80"}, l, err));
  CHECK(l.address == "0.0.0.0:80");
  l = {};
  REQUIRE(parseListen({"*:8080", "default_server"}, l, err));
  CHECK(l.address == "0.0.0.0:8080");
  CHECK(l.defaultServer);
  l = {};
  REQUIRE(parseListen({"[::]:443", "ssl", "http2", "reuseport", "proxy_protocol"}, l, err));
  CHECK(l.address == "[::]:443");
  CHECK(l.ipv6);
  CHECK(l.ssl);
  CHECK(l.http2);
  CHECK(l.ignored == std::vector<std::string>{"reuseport"});
  CHECK(l.unsupported == std::vector<std::string>{"proxy_protocol"});
  l = {};
  REQUIRE(parseListen({"127.0.0.1"}, l, err));
  CHECK(l.address == "127.0.0.1:80");
  l = {};
  REQUIRE(parseListen({"localhost:8000"}, l, err));
  CHECK(l.address == "127.0.0.1:8000");
  CHECK(l.localhost);
  l = {};
  CHECK_FALSE(parseListen({"unix:/run/x.sock"}, l, err));
  CHECK_FALSE(parseListen({"example.com:80"}, l, err));
  CHECK_FALSE(parseListen({"1.2.3.4:99999"}, l, err));
  CHECK_FALSE(parseListen({"[::1"}, l, err));
  CHECK_FALSE(parseListen({}, l, err));
}

TEST_CASE("backend addresses") {
  std::string err;
  CHECK(parseAuthority("10.0.0.1", 80, err) == "10.0.0.1:80");
  CHECK(parseAuthority("api.internal:8080", 80, err) == "api.internal:8080");
  CHECK(parseAuthority("[::1]:9000", 80, err) == "[::1]:9000");
  CHECK(parseAuthority("secure", 443, err) == "secure:443");
  CHECK(parseAuthority("a:b", 80, err).empty());
  CHECK(parseAuthority("[zz]:1", 80, err).empty());
  CHECK(parseAuthority("", 80, err).empty());
}

TEST_CASE("PCRE patterns as RE2") {
  std::string err;
  CHECK(toRe2("\\.(png|jpe?g)$", true, err) == "(?i)\\.(png|jpe?g)$");
  CHECK(toRe2("^/u/(?<id>\\d+)$", false, err) == "^/u/(?P<id>\\d+)$");
  CHECK(toRe2("^/a(?=b)", false, err).empty());  // lookahead: RE2 has none
  CHECK_FALSE(err.empty());
  CHECK(toRe2("(a)\\1", false, err).empty());   // backreference
  CHECK(toRe2("^/x${y}", false, err).empty());  // Sluice's loader reads ${...} as environment
  CHECK(captureGroups("^/(a)/(b)") == 2);
  CHECK(regexMatches("^/docs/", "/docs/x"));
  CHECK_FALSE(regexMatches("^/docs/", "/x/docs/"));
  CHECK(quoteRegex("/a.b+c") == "/a\\.b\\+c");
  CHECK(regexMatches("^" + quoteRegex("/v1.0/") + "(.*)$", "/v1.0/x"));
  CHECK_FALSE(regexMatches("^" + quoteRegex("/v1.0/") + "(.*)$", "/v1x0/x"));
}

TEST_CASE("route host names") {
  CHECK(isRouteHost("example.com"));
  CHECK(isRouteHost("*.example.com"));
  CHECK(isRouteHost("under_score.test"));
  CHECK_FALSE(isRouteHost("*"));
  CHECK_FALSE(isRouteHost("a..b"));
  CHECK_FALSE(isRouteHost("a.example.*"));
  CHECK_FALSE(isRouteHost("host:80"));
  CHECK_FALSE(isRouteHost(""));
}
