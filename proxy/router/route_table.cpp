// Route matching.
#include "proxy/router/route_table.h"

#include <re2/re2.h>

#include <algorithm>

#include "proxy/http/message.h"

namespace sluice::router {

bool Route::allowsMethod(std::string_view m) const {
  if (methods.empty()) return true;
  for (const auto& x : methods)
    if (x == m) return true;
  return false;
}

static bool matchRegex(const Route& r, std::string_view path, Captures* caps) {
  // Groups are only extracted when a rewrite needs them: a plain search runs on RE2's DFA.
  const int n =
      caps != nullptr && !r.rewrite.empty() ? std::min(r.regexGroups + 1, Captures::kMax) : 0;
  re2::StringPiece groups[Captures::kMax];
  if (!r.regex->Match(re2::StringPiece(path.data(), path.size()), 0, path.size(), RE2::UNANCHORED,
                      groups, n))
    return false;
  if (n > 0) {
    caps->count = n;
    for (int i = 0; i < n; ++i)
      caps->group[i] = groups[i].data() == nullptr
                           ? std::string_view()
                           : std::string_view(groups[i].data(), groups[i].size());
  }
  return true;
}

const Route* RouteTable::PathSet::find(std::string_view path, std::string_view method,
                                       Captures* caps) const {
  for (const Route* r : exact)
    if (r->path == path && r->allowsMethod(method)) return r;
  const Route* prefix = nullptr;
  for (const Route* r : prefixes) {
    if (path.substr(0, r->path.size()) == r->path && r->allowsMethod(method)) {
      prefix = r;
      break;
    }
  }
  if (prefix != nullptr && prefix->prefixPriority) return prefix;
  for (const Route* r : regexes)
    if (r->allowsMethod(method) && matchRegex(*r, path, caps)) return r;
  return prefix;
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
    (r.regex ? set->regexes : r.exact ? set->exact : set->prefixes).push_back(&r);
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
                               std::string_view method, Captures* caps) const {
  if (!exactHosts_.empty()) {
    // Host is already normalized by the caller (lower case, no port).
    auto it = exactHosts_.find(host);
    if (it != exactHosts_.end())
      if (const Route* r = it->second.find(path, method, caps)) return r;
  }
  for (const auto& [suffix, set] : wildcards_) {
    if (host.size() > suffix.size() && host.substr(host.size() - suffix.size()) == suffix)
      if (const Route* r = set.find(path, method, caps)) return r;
  }
  return anyHost_.find(path, method, caps);
}

std::shared_ptr<const re2::RE2> compilePathRegex(const std::string& pattern, std::string& error) {
  RE2::Options opt;
  opt.set_log_errors(false);
  auto re = std::make_shared<const RE2>(pattern, opt);
  if (!re->ok()) {
    error = re->error();
    return nullptr;
  }
  return re;
}

void expandRewrite(std::string_view tpl, const Captures& caps, std::string_view query,
                   std::string& out) {
  out.clear();
  const size_t q = tpl.find('?');
  const bool dropQuery = q != std::string_view::npos && q + 1 == tpl.size();
  if (dropQuery) tpl.remove_suffix(1);
  for (size_t i = 0; i < tpl.size(); ++i) {
    const char c = tpl[i];
    if (c == '$' && i + 1 < tpl.size() && tpl[i + 1] >= '0' && tpl[i + 1] <= '9') {
      const int g = tpl[++i] - '0';
      if (g < caps.count) out.append(caps.group[g]);
    } else {
      out.push_back(c);
    }
  }
  if (dropQuery || query.size() <= 1) return;  // none, or a bare '?'
  if (q == std::string_view::npos) {
    out.append(query);
  } else {
    out.push_back('&');
    out.append(query.substr(1));
  }
}

void expandLocation(std::string_view tpl, std::string_view host, std::string_view uri,
                    std::string_view scheme, std::string& out) {
  out.clear();
  for (size_t i = 0; i < tpl.size();) {
    if (tpl.compare(i, 6, "{host}") == 0) {
      out.append(host);
      i += 6;
    } else if (tpl.compare(i, 5, "{uri}") == 0) {
      out.append(uri);
      i += 5;
    } else if (tpl.compare(i, 8, "{scheme}") == 0) {
      out.append(scheme);
      i += 8;
    } else {
      out.push_back(tpl[i++]);
    }
  }
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
