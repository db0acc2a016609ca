// RouteTable: host (exact, then "*.suffix" wildcards longest first, then any host) -> path
// (exact, then longest prefix) -> methods. Compiled once per config snapshot; match() does no
// allocation.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "middleware/filter.h"
#include "proxy/router/split.h"

namespace sluice::upstream {
struct Pool;
}

namespace sluice::router {

struct Route {
  std::string name;
  uint32_t nameId = 0;  // interned, for metrics
  std::string host;     // lower-case; "" = any
  std::string path;     // prefix or exact path
  bool exact = false;
  std::vector<std::string> methods;  // empty = any
  bool stripPrefix = false;
  const upstream::Pool* pool = nullptr;  // owned by the snapshot; a split's baseline
  std::shared_ptr<const Split> split;    // null unless the route splits traffic
  std::vector<middleware::FilterFactoryPtr> filters;  // the route's middleware, in order

  bool allowsMethod(std::string_view m) const;
};

class RouteTable {
 public:
  // Routes keep their file order for tie-breaking (first wins among equal matches).
  void build(std::vector<Route> routes);
  // `host` may carry a port and any case; `path` is the path part of the target.
  const Route* match(std::string_view host, std::string_view path, std::string_view method) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  struct PathSet {
    std::vector<const Route*> exact;     // few per host; scanned
    std::vector<const Route*> prefixes;  // longest first
    const Route* find(std::string_view path, std::string_view method) const;
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
