// Route matching.
#include "proxy/router/route_table.h"

#include <algorithm>

#include "proxy/http/message.h"

namespace sluice::router {

bool Route::allowsMethod(std::string_view m) const {
  if (methods.empty()) return true;
  for (const auto& x : methods)
    if (x == m) return true;
  return false;
}

const Route* RouteTable::PathSet::find(std::string_view path, std::string_view method) const {
  for (const Route* r : exact)
    if (r->path == path && r->allowsMethod(method)) return r;
  for (const Route* r : prefixes)
    if (path.substr(0, r->path.size()) == r->path && r->allowsMethod(method)) return r;
  return nullptr;
}

void RouteTable::build(std::vector<Route> routes) {
  routes_ = std::move(routes);
  exactHosts_.clear();
  wildcards_.clear();
  anyHost_ = {};
  for (const Route& r : routes_) {
    PathSet* set;
    if (r.host.empty()) {
      set = &anyHost_;
    } else if (r.host.size() > 2 && r.host[0] == '*' && r.host[1] == '.') {
      std::string suffix = r.host.substr(1);
      auto it = std::find_if(wildcards_.begin(), wildcards_.end(),
                             [&](auto& w) { return w.first == suffix; });
      if (it == wildcards_.end()) {
        wildcards_.push_back({suffix, {}});
        set = &wildcards_.back().second;
      } else {
        set = &it->second;
      }
    } else {
      set = &exactHosts_[r.host];
    }
    (r.exact ? set->exact : set->prefixes).push_back(&r);
  }
  auto byLength = [](const Route* a, const Route* b) { return a->path.size() > b->path.size(); };
  auto sortSet = [&](PathSet& s) {
    std::stable_sort(s.prefixes.begin(), s.prefixes.end(), byLength);
  };
  for (auto& [_, s] : exactHosts_) sortSet(s);
  for (auto& [_, s] : wildcards_) sortSet(s);
  sortSet(anyHost_);
  std::stable_sort(wildcards_.begin(), wildcards_.end(),
                   [](auto& a, auto& b) { return a.first.size() > b.first.size(); });
}

const Route* RouteTable::match(std::string_view host, std::string_view path,
                               std::string_view method) const {
  if (!exactHosts_.empty()) {
    // Host is already normalized by the caller (lower case, no port).
    auto it = exactHosts_.find(host);
    if (it != exactHosts_.end())
      if (const Route* r = it->second.find(path, method)) return r;
  }
  for (const auto& [suffix, set] : wildcards_) {
    if (host.size() > suffix.size() && host.substr(host.size() - suffix.size()) == suffix)
      if (const Route* r = set.find(path, method)) return r;
  }
  return anyHost_.find(path, method);
}

static bool hasDotSegment(std::string_view path) {
  // "/./", "/../", trailing "/." or "/..", with '.' possibly percent-encoded.
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] != '/') {
      ++i;
      continue;
    }
    size_t j = i + 1;
    int dots = 0;
    while (j < path.size()) {
      if (path[j] == '.') {
        ++dots;
        ++j;
      } else if (path[j] == '%' && j + 2 < path.size() + 0 && path[j + 1] == '2' &&
                 (path[j + 2] == 'e' || path[j + 2] == 'E')) {
        ++dots;
        j += 3;
      } else {
        break;
      }
    }
    if ((dots == 1 || dots == 2) && (j == path.size() || path[j] == '/')) return true;
    i = j;
  }
  return false;
}

bool splitTarget(std::string_view target, std::string_view& hostFromTarget, std::string_view& path,
                 std::string_view& query) {
  hostFromTarget = {};
  if (target.empty()) return false;
  if (target[0] != '/') {
    // absolute-form: scheme://authority/path
    size_t scheme = target.find("://");
    if (scheme == std::string_view::npos) return false;
    std::string_view s = target.substr(0, scheme);
    if (!http::iequals(s, "http") && !http::iequals(s, "https")) return false;
    std::string_view rest = target.substr(scheme + 3);
    size_t slash = rest.find_first_of("/?");
    hostFromTarget = rest.substr(0, slash);
    if (hostFromTarget.empty() || hostFromTarget.find('@') != std::string_view::npos) return false;
    target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    if (target[0] == '?') return false;
  }
  size_t q = target.find('?');
  path = target.substr(0, q);
  query = q == std::string_view::npos ? std::string_view() : target.substr(q);
  if (path.find('#') != std::string_view::npos) return false;
  return !hasDotSegment(path);
}

void normalizeHost(std::string_view host, std::string& out) {
  out.clear();
  if (!host.empty() && host[0] == '[') {
    size_t close = host.find(']');
    host = host.substr(0, close == std::string_view::npos ? host.size() : close + 1);
  } else {
    size_t colon = host.rfind(':');
    if (colon != std::string_view::npos) host = host.substr(0, colon);
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  for (char c : host) out.push_back((c >= 'A' && c <= 'Z') ? char(c + 32) : c);
}

}  // namespace sluice::router
