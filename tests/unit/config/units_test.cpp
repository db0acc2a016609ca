// Unit tests for config/units: durations, sizes, ${ENV} interpolation, host:port, CIDRs.
#include "config/units.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>

using namespace sluice::config;
using namespace std::chrono_literals;

namespace {

sockaddr_storage v4(const char* ip) {
  sockaddr_storage ss{};
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  sin->sin_family = AF_INET;
  REQUIRE(inet_pton(AF_INET, ip, &sin->sin_addr) == 1);
  return ss;
}

sockaddr_storage v6(const char* ip) {
  sockaddr_storage ss{};
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  REQUIRE(inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1);
  return ss;
}

bool contains(const char* cidr, const sockaddr_storage& addr) {
  Cidr c;
  REQUIRE(parseCidr(cidr, c));
  return cidrContains(c, reinterpret_cast<const sockaddr*>(&addr));
}

std::string cidrAddress(const Cidr& c) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (c.network.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&c.network)->sin_addr, buf,
              sizeof(buf));
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&c.network)->sin6_addr, buf,
              sizeof(buf));
  }
  return buf;
}

}  // namespace

TEST_CASE("parseDuration accepts every documented form") {
  CHECK(parseDuration("250ms") == Duration{250});
  CHECK(parseDuration("2s") == Duration{2000});
  CHECK(parseDuration("5m") == Duration{5 * 60 * 1000});
  CHECK(parseDuration("1h") == Duration{3600 * 1000});
  CHECK(parseDuration("0") == Duration{0});
  CHECK(parseDuration("0s") == Duration{0});
  CHECK(parseDuration("0ms") == Duration{0});
  CHECK(parseDuration("1m30s") == Duration{90 * 1000});
  CHECK(parseDuration("1h2m3s4ms") == Duration{3723004});
  CHECK(parseDuration("007s") == Duration{7000});
}

TEST_CASE("parseDuration rejects bad forms") {
  for (const char* bad : {"", "-1s", "+1s", "1", "30", "1.5s", "s", "ms", "1 s", " 1s", "1s ", "1S",
                          "1d", "1x", "1sms", "abc", "1s-", "0x10s"}) {
    CAPTURE(bad);
    CHECK_FALSE(parseDuration(bad).has_value());
  }
}

TEST_CASE("parseDuration rejects overflow") {
  CHECK_FALSE(parseDuration("99999999999999999999ms").has_value());      // > uint64
  CHECK_FALSE(parseDuration("9223372036854775807h").has_value());        // * factor overflows
  CHECK_FALSE(parseDuration("9223372036854775807ms1ms").has_value());    // sum overflows
  CHECK(parseDuration("9223372036854775807ms") == Duration{INT64_MAX});  // exactly the max
}

TEST_CASE("parseSize accepts bytes and binary suffixes in any case") {
  CHECK(parseSize("0") == 0u);
  CHECK(parseSize("512") == 512u);
  CHECK(parseSize("16k") == 16u * 1024);
  CHECK(parseSize("16K") == 16u * 1024);
  CHECK(parseSize("1m") == 1024u * 1024);
  CHECK(parseSize("100M") == 100ull * 1024 * 1024);
  CHECK(parseSize("1g") == 1024ull * 1024 * 1024);
  CHECK(parseSize("2G") == 2ull * 1024 * 1024 * 1024);
}

TEST_CASE("parseSize rejects bad forms and overflow") {
  for (const char* bad : {"", "-1", "+1", "1.5k", "k", "16kb", "16 k", " 16k", "16t", "1kk", "abc",
                          "18446744073709551616", "18014398509481984k", "17179869184g"}) {
    CAPTURE(bad);
    CHECK_FALSE(parseSize(bad).has_value());
  }
  CHECK(parseSize("18446744073709551615") == UINT64_MAX);
}

TEST_CASE("interpolateEnv replaces set variables and defaults") {
  ::setenv("SLUICE_UT_SET", "secret", 1);
  ::setenv("SLUICE_UT_EMPTY", "", 1);
  ::unsetenv("SLUICE_UT_UNSET");
  std::string out, err;

  REQUIRE(interpolateEnv("a ${SLUICE_UT_SET} b", out, err));
  CHECK(out == "a secret b");
  REQUIRE(interpolateEnv("${SLUICE_UT_SET}${SLUICE_UT_SET}", out, err));
  CHECK(out == "secretsecret");
  REQUIRE(interpolateEnv("${SLUICE_UT_SET:-fallback}", out, err));
  CHECK(out == "secret");
  REQUIRE(interpolateEnv("${SLUICE_UT_UNSET:-fallback}", out, err));
  CHECK(out == "fallback");
  REQUIRE(interpolateEnv("x${SLUICE_UT_UNSET:-}y", out, err));
  CHECK(out == "xy");
  // As in sh, ":-" also applies when the variable is set but empty...
  REQUIRE(interpolateEnv("${SLUICE_UT_EMPTY:-d}", out, err));
  CHECK(out == "d");
  // ...and a set-but-empty variable without default is simply empty.
  REQUIRE(interpolateEnv("[${SLUICE_UT_EMPTY}]", out, err));
  CHECK(out == "[]");
  // A default may contain ':' and '-' (e.g. a URL).
  REQUIRE(interpolateEnv("${SLUICE_UT_UNSET:-redis://h:1/0}", out, err));
  CHECK(out == "redis://h:1/0");
}

TEST_CASE("interpolateEnv keeps lone dollars and text without references") {
  std::string out, err;
  REQUIRE(interpolateEnv("plain", out, err));
  CHECK(out == "plain");
  REQUIRE(interpolateEnv("", out, err));
  CHECK(out.empty());
  REQUIRE(interpolateEnv("cost $5 and $HOME and $", out, err));
  CHECK(out == "cost $5 and $HOME and $");
}

TEST_CASE("interpolateEnv errors") {
  ::unsetenv("SLUICE_UT_UNSET");
  std::string out, err;
  CHECK_FALSE(interpolateEnv("x ${SLUICE_UT_UNSET} y", out, err));
  CHECK(err.find("'SLUICE_UT_UNSET'") != std::string::npos);
  CHECK(err.find("not set") != std::string::npos);

  err.clear();
  CHECK_FALSE(interpolateEnv("${SLUICE_UT_SET", out, err));
  CHECK(err.find("unterminated") != std::string::npos);

  for (const char* bad : {"${}", "${1ABC}", "${A-B}", "${ A}", "${:-x}"}) {
    CAPTURE(bad);
    err.clear();
    CHECK_FALSE(interpolateEnv(bad, out, err));
    CHECK(err.find("invalid environment variable reference") != std::string::npos);
  }
}

TEST_CASE("parseHostPort accepts IPv4, bracketed IPv6 and names") {
  HostPort hp;
  std::string err;
  REQUIRE(parseHostPort("1.2.3.4:80", hp, err));
  CHECK(hp.host == "1.2.3.4");
  CHECK(hp.port == 80);
  REQUIRE(parseHostPort("[::1]:8080", hp, err));
  CHECK(hp.host == "::1");
  CHECK(hp.port == 8080);
  REQUIRE(parseHostPort("[::]:65535", hp, err));
  CHECK(hp.host == "::");
  CHECK(hp.port == 65535);
  REQUIRE(parseHostPort("api-blue:8000", hp, err));
  CHECK(hp.host == "api-blue");
  CHECK(hp.port == 8000);
  REQUIRE(parseHostPort("db_1.svc.cluster.local:1", hp, err));
  CHECK(hp.host == "db_1.svc.cluster.local");
  CHECK(hp.port == 1);
  CHECK(formatHostPort({"::1", 80}) == "[::1]:80");
  CHECK(formatHostPort({"10.0.0.1", 443}) == "10.0.0.1:443");
}

TEST_CASE("parseHostPort port range and the port-zero flag") {
  HostPort hp;
  std::string err;
  CHECK_FALSE(parseHostPort("1.2.3.4:0", hp, err));
  CHECK(err.find("invalid port") != std::string::npos);
  REQUIRE(parseHostPort("1.2.3.4:0", hp, err, /*allowPortZero=*/true));
  CHECK(hp.port == 0);
  CHECK_FALSE(parseHostPort("1.2.3.4:65536", hp, err));
  CHECK_FALSE(parseHostPort("1.2.3.4:099999", hp, err));
  CHECK_FALSE(parseHostPort("1.2.3.4:-1", hp, err));
  CHECK_FALSE(parseHostPort("1.2.3.4:+80", hp, err));
  CHECK_FALSE(parseHostPort("1.2.3.4:8o", hp, err));
}

TEST_CASE("parseHostPort rejects malformed addresses with a reason") {
  HostPort hp;
  struct Case {
    const char* text;
    const char* reason;
  };
  for (auto c : {Case{"1.2.3.4", "missing port"}, Case{"1.2.3.4:", "invalid port"},
                 Case{":8080", "missing host"}, Case{"::1:8080", "need brackets"},
                 Case{"[::1]", "missing port"}, Case{"[::1]8080", "missing port"},
                 Case{"[::1:80", "missing ']'"}, Case{"[1.2.3.4]:80", "invalid IPv6"},
                 Case{"1.2.3.256:80", "invalid IPv4"}, Case{"bad host:80", "invalid host name"},
                 Case{"a..b:80", "invalid host name"}, Case{"", "missing port"}}) {
    CAPTURE(c.text);
    std::string err;
    CHECK_FALSE(parseHostPort(c.text, hp, err));
    CHECK(err.find(c.reason) != std::string::npos);
  }
}

TEST_CASE("isIpLiteral and toSockaddr") {
  CHECK(isIpLiteral("127.0.0.1"));
  CHECK(isIpLiteral("::"));
  CHECK_FALSE(isIpLiteral("localhost"));
  CHECK_FALSE(isIpLiteral("[::1]"));

  sockaddr_storage ss;
  socklen_t len = 0;
  REQUIRE(toSockaddr({"10.1.2.3", 8080}, ss, len));
  CHECK(len == sizeof(sockaddr_in));
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  CHECK(sin->sin_family == AF_INET);
  CHECK(ntohs(sin->sin_port) == 8080);
  CHECK(ntohl(sin->sin_addr.s_addr) == 0x0a010203u);

  REQUIRE(toSockaddr({"::1", 443}, ss, len));
  CHECK(len == sizeof(sockaddr_in6));
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  CHECK(sin6->sin6_family == AF_INET6);
  CHECK(ntohs(sin6->sin6_port) == 443);
  CHECK(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));

  CHECK_FALSE(toSockaddr({"localhost", 80}, ss, len));
  CHECK_FALSE(toSockaddr({"", 80}, ss, len));
}

TEST_CASE("parseCidr forms") {
  Cidr c;
  REQUIRE(parseCidr("10.0.0.0/8", c));
  CHECK(c.network.ss_family == AF_INET);
  CHECK(c.prefixLen == 8);
  CHECK(cidrAddress(c) == "10.0.0.0");

  REQUIRE(parseCidr("::1/128", c));
  CHECK(c.network.ss_family == AF_INET6);
  CHECK(c.prefixLen == 128);

  REQUIRE(parseCidr("192.168.1.7", c));
  CHECK(c.prefixLen == 32);
  CHECK(cidrAddress(c) == "192.168.1.7");

  REQUIRE(parseCidr("fd00::5", c));
  CHECK(c.prefixLen == 128);

  // Host bits are zeroed.
  REQUIRE(parseCidr("10.1.2.3/8", c));
  CHECK(cidrAddress(c) == "10.0.0.0");
  REQUIRE(parseCidr("172.16.255.1/12", c));
  CHECK(cidrAddress(c) == "172.16.0.0");
  REQUIRE(parseCidr("2001:db8:ffff::1/33", c));
  CHECK(cidrAddress(c) == "2001:db8:8000::");

  REQUIRE(parseCidr("0.0.0.0/0", c));
  CHECK(c.prefixLen == 0);

  for (const char* bad : {"", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0/8",
                          "host/8", "10.0.0.0/8/8", "10.0.0.0/08x", "[::1]/128", " 10.0.0.0/8"}) {
    CAPTURE(bad);
    CHECK_FALSE(parseCidr(bad, c));
  }
}

TEST_CASE("cidrContains for IPv4, IPv6 and v4-mapped addresses") {
  CHECK(contains("10.0.0.0/8", v4("10.255.1.2")));
  CHECK_FALSE(contains("10.0.0.0/8", v4("11.0.0.1")));
  CHECK(contains("172.16.0.0/12", v4("172.31.255.255")));
  CHECK_FALSE(contains("172.16.0.0/12", v4("172.32.0.0")));
  CHECK(contains("192.168.1.7", v4("192.168.1.7")));
  CHECK_FALSE(contains("192.168.1.7", v4("192.168.1.8")));
  CHECK(contains("0.0.0.0/0", v4("8.8.8.8")));

  CHECK(contains("::1/128", v6("::1")));
  CHECK_FALSE(contains("::1/128", v6("::2")));
  CHECK(contains("fd00::/8", v6("fd12:3456::1")));
  CHECK_FALSE(contains("fd00::/8", v6("fe80::1")));
  CHECK(contains("2001:db8::/33", v6("2001:db8:7fff::1")));
  CHECK_FALSE(contains("2001:db8::/33", v6("2001:db8:8000::1")));

  // A dual-stack socket reports v4 clients as ::ffff:a.b.c.d.
  CHECK(contains("10.0.0.0/8", v6("::ffff:10.1.2.3")));
  CHECK_FALSE(contains("10.0.0.0/8", v6("::ffff:11.1.2.3")));
  CHECK(contains("::ffff:10.0.0.0/104", v4("10.9.9.9")));
  // Plain v6 never matches a v4 CIDR, and v4 never matches an unrelated v6 CIDR.
  CHECK_FALSE(contains("0.0.0.0/0", v6("::1")));
  CHECK_FALSE(contains("fd00::/8", v4("10.0.0.1")));

  Cidr c;
  REQUIRE(parseCidr("10.0.0.0/8", c));
  CHECK_FALSE(cidrContains(c, nullptr));
  sockaddr_storage unix{};
  unix.ss_family = AF_UNIX;
  CHECK_FALSE(cidrContains(c, reinterpret_cast<const sockaddr*>(&unix)));
}
