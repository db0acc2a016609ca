// RouteTable: host (exact, then "*.suffix" wildcards longest first, then any host) -> path
// -> methods. Within a host group the path is matched like nginx's locations: exact paths; then
// the longest prefix, which wins at once when it has prefix_priority (nginx's ^~); otherwise the
// regex routes in file order (first match wins); otherwise that longest prefix. Compiled once
// per config snapshot (the RE2 objects are immutable and shared by the workers: RE2 matching is
// thread-safe); match() does no allocation.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "middleware/filter.h"
#include "proxy/router/split.h"

namespace re2 {
class RE2;
}

namespace sluice::upstream {
struct Pool;
}
namespace sluice::files {
struct Site;
}

namespace sluice::router {

// A route's fixed answer (`return = {...}`): sent by the exchange after the route's middleware.
struct FixedAnswer {
  int status = 0;
  std::string location;  // template: {host}, {uri}, {scheme} (checked by the loader)
  std::string body;
  std::string contentType;
};

struct Route {
  std::string name;
  uint32_t nameId = 0;     // interned, for metrics
  uint32_t patternId = 0;  // `path` interned, for trace spans (http.route)
  std::string host;        // lower-case; "" = any
  std::string path;        // prefix or exact path; the pattern of a regex route
  bool exact = false;
  bool prefixPriority = false;            // a prefix that, as the longest, skips the regexes
  std::shared_ptr<const re2::RE2> regex;  // set for path_regex routes
  int regexGroups = 0;                    // its capturing groups
  std::string rewrite;                    // regex routes: upstream target template ($0..$9)
  std::vector<std::string> methods;       // empty = any
  bool stripPrefix = false;
  const upstream::Pool* pool = nullptr;       // owned by the snapshot; a split's baseline; null
                                              // for a fixed answer or files
  std::shared_ptr<const Split> split;         // null unless the route splits traffic
  std::shared_ptr<const FixedAnswer> answer;  // null unless `return`
  std::shared_ptr<const files::Site> files;   // null unless `static`
  std::vector<middleware::FilterFactoryPtr> filters;  // the route's middleware, in order

  bool allowsMethod(std::string_view m) const;
};

// The groups a regex route captured ($0 = the whole match), pointing into the matched path.
struct Captures {
  static constexpr int kMax = 10;  // $0..$9
  std::string_view group[kMax];
  int count = 0;
};

// Compiles a path_regex pattern the way the loader validated it (RE2 defaults, no logging).
// Returns null (and RE2's message in `error`) for an invalid pattern.
std::shared_ptr<const re2::RE2> compilePathRegex(const std::string& pattern, std::string& error);

// The upstream target of a rewrite: `tpl` with $0..$9 replaced by the captures (an unset
// group is empty; '$' not before a digit is literal), then the request's query (`query`
// includes its '?'): appended when `tpl` has no '?'; after '&' when it has one; dropped when
// `tpl` ends with '?' (which is removed), as nginx's rewrite does.
void expandRewrite(std::string_view tpl, const Captures& caps, std::string_view query,
                   std::string& out);

// A fixed answer's Location: {host}, {uri}, {scheme} replaced, the rest copied.
void expandLocation(std::string_view tpl, std::string_view host, std::string_view uri,
                    std::string_view scheme, std::string& out);

class RouteTable {
 public:
  // Routes keep their file order for tie-breaking (first wins among equal matches).
  void build(std::vector<Route> routes);
  // `host` is normalized (normalizeHost); `path` is the path part of the target. When the
  // chosen route is a regex route with a rewrite and `caps` is given, its groups are filled.
  const Route* match(std::string_view host, std::string_view path, std::string_view method,
                     Captures* caps = nullptr) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  struct PathSet {
    std::vector<const Route*> exact;     // few per host; scanned
    std::vector<const Route*> prefixes;  // longest first
    std::vector<const Route*> regexes;   // file order
    const Route* find(std::string_view path, std::string_view method, Captures* caps) const;
  };
  std::vector<Route> routes_;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, PathSet, StringHash, std::equal_to<>> exactHosts_;
  std::vector<std::pair<std::string, PathSet>> wildcards_;  // suffix incl. dot, longest first
  PathSet anyHost_;
};

// Splits a request-target into path and query, accepting origin-form and absolute-form.
// Returns false for a target we refuse (empty, not starting with '/', dot-segments).
bool splitTarget(std::string_view target, std::string_view& hostFromTarget, std::string_view& path,
                 std::string_view& query);

// Lower-cases a Host header value and removes the port into `out` (no allocation past SSO).
void normalizeHost(std::string_view host, std::string& out);

}  // namespace sluice::router
