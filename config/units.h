// Parsers for the small value syntaxes of the config file: durations, sizes, ${ENV}
// interpolation, host:port, CIDRs, and the socket-address helpers built on them.
// Pure functions, no I/O besides reading the environment; safe to use from any thread.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/schema.h"

namespace sluice::config {

// "250ms", "2s", "5m", "1h", "0", "0s"; compound forms such as "1m30s" also work.
// Units are lower-case. Rejects signs, fractions, whitespace, unknown units and overflow.
std::optional<Duration> parseDuration(std::string_view text);

// "512" (bytes), "16k", "1m", "1g" (binary: k = 1024); the suffix is case-insensitive.
// Rejects signs, fractions, whitespace, unknown suffixes and overflow.
std::optional<uint64_t> parseSize(std::string_view text);

// Replaces ${NAME} and ${NAME:-default} (default used when NAME is unset or empty, as in
// sh) with values from the environment. A '$' not followed by '{' is kept as is. Fails,
// with a message in `err`, on an unset variable without default, an invalid name or a
// missing '}'. `out` is overwritten.
bool interpolateEnv(std::string_view in, std::string& out, std::string& err);

// True when `host` is an IPv4 or IPv6 literal (IPv6 without brackets).
bool isIpLiteral(std::string_view host);

// "1.2.3.4:80", "[::1]:8080", "name:8000". The host is stored without brackets. Ports are
// 1..65535; 0 is accepted only with allowPortZero (e.g. "pick any port" in tests).
bool parseHostPort(std::string_view text, HostPort& out, std::string& err,
                   bool allowPortZero = false);

// Formats a HostPort back to "host:port" / "[v6]:port".
std::string formatHostPort(const HostPort& hp);

// "10.0.0.0/8", "::1/128"; a bare address is a /32 or /128. Host bits are zeroed, so
// "10.1.2.3/8" is accepted as 10.0.0.0/8.
bool parseCidr(std::string_view text, Cidr& out);

// Fills a sockaddr_in/sockaddr_in6 for an IP-literal HostPort. False for host names
// (those need a resolver) and for malformed hosts.
bool toSockaddr(const HostPort& hp, sockaddr_storage& out, socklen_t& len);

// True when `addr` (AF_INET or AF_INET6) is inside `cidr`. An IPv4-mapped IPv6 address
// (::ffff:a.b.c.d, what a dual-stack socket reports for v4 clients) matches IPv4 CIDRs,
// and an IPv4 address matches IPv6 CIDRs covering its mapped form.
bool cidrContains(const Cidr& cidr, const sockaddr* addr);

}  // namespace sluice::config
