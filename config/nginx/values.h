// nginx's small value syntaxes, read as nginx reads them, and their Sluice spelling: times
// ("1m30s", "60" = seconds), sizes ("10m"), variables in strings ("$host", "${host}"),
// `listen` addresses and parameters, `server_name` forms and PCRE patterns for RE2.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::config::nginx {

// nginx time: [digits unit]..., units ms s m h d w M y, a bare number = seconds.
std::optional<int64_t> parseTimeMs(std::string_view s);
// The shortest Sluice duration for `ms`: "90s", "5m", "250ms", "2h".
std::string formatDuration(int64_t ms);

// nginx size: digits with an optional k/K/m/M/g/G suffix.
std::optional<uint64_t> parseSize(std::string_view s);
// Sluice's size syntax: "10m", "512k", "1g" or plain bytes.
std::string formatSize(uint64_t bytes);

// A nginx variable reference in a string: "$name", "${name}" or a capture "$1".
struct VarRef {
  size_t pos = 0;
  size_t len = 0;    // of the whole reference, "$" included
  std::string name;  // "host", "1"
};
std::vector<VarRef> findVariables(std::string_view s);

// Replaces the variables of `s` by Sluice placeholders: `map` pairs a nginx variable name
// with its replacement ("host" -> "{host}"). Returns nullopt when `s` uses a variable that
// `map` does not have; `unknown` then names it ("$server_port").
struct VarMapping {
  std::string_view nginx;
  std::string_view sluice;
};
std::optional<std::string> translateVariables(std::string_view s,
                                              const std::vector<VarMapping>& map,
                                              std::string& unknown);

// One `listen` directive.
struct ListenSpec {
  std::string address;  // Sluice spelling: "0.0.0.0:80", "[::]:443", "127.0.0.1:8080"
  int port = 0;
  bool ipv6 = false;
  bool ssl = false;
  bool http2 = false;
  bool defaultServer = false;
  bool ipv6only = true;
  bool localhost = false;                // written as the name "localhost"
  std::vector<std::string> ignored;      // parameters without effect in Sluice (backlog=...)
  std::vector<std::string> unsupported;  // parameters Sluice cannot do (proxy_protocol, ...)
};
// False with `err` for what Sluice cannot listen on (unix sockets, host names).
bool parseListen(const std::vector<std::string>& args, ListenSpec& out, std::string& err);

// A backend address of `server` in an upstream, or the authority of `proxy_pass`: "host",
// "host:port", "[v6]:port"; `defaultPort` when there is none. Returns "host:port" in Sluice's
// spelling, or "" with `err`.
std::string parseAuthority(std::string_view s, int defaultPort, std::string& err);

// A PCRE pattern from a `location ~` or `rewrite` as an RE2 pattern: (?<name>...) becomes
// (?P<name>...). `caseless` adds (?i). Returns "" with RE2's message in `err` when RE2 cannot
// compile it (backreferences, lookaround, possessive quantifiers...).
std::string toRe2(std::string_view pcre, bool caseless, std::string& err);
// Number of capturing groups of an RE2 pattern (-1 when it does not compile).
int captureGroups(const std::string& re2);
// Does RE2 pattern `re` match somewhere in `text`?
bool regexMatches(const std::string& re, std::string_view text);
// `literal` as an RE2 pattern that matches exactly it.
std::string quoteRegex(std::string_view literal);

// Host names Sluice routes accept: letters, digits, '-', '_', '.', optionally "*." first.
bool isRouteHost(std::string_view host);

// `s` with A-Z turned into a-z (header and host names).
std::string asciiLower(std::string s);

}  // namespace sluice::config::nginx
