// [[route]]: match (host, path, path_exact or path_regex, methods), the pool it proxies to (or
// its fixed `return` answer) and the middleware it applies, in order. Runs after [pool.*] and
// [middleware.*], whose names it checks.
#include <algorithm>
#include <initializer_list>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <re2/re2.h>

#include "config/sections.h"

namespace sluice::config {

namespace {

// An HTTP method token (RFC 9110 tchar) with no lower-case letters: methods are
// case-sensitive and every standard one is upper-case, so "get" is almost surely a typo.
bool isUpperToken(std::string_view m) {
  if (!isHttpToken(m)) return false;
  for (char c : m)
    if (c >= 'a' && c <= 'z') return false;
  return true;
}

// Route hosts: "api.example.com" or "*.example.com", no port. Lower-cased in place because
// Host matching is case-insensitive.
bool normalizeRouteHost(std::string& host) {
  for (char& c : host) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  std::string_view rest = host;
  if (rest.starts_with("*.")) rest.remove_prefix(2);
  if (rest.empty() || rest.front() == '.' || rest.find("..") != std::string_view::npos) {
    return false;
  }
  for (char c : rest) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

void loadHost(LoadContext& ctx, const toml::node& v, const std::string& what, RouteConfig& rc) {
  auto s = ctx.getString(v, what + ".host");
  if (!s) return;
  std::string host = *s;
  if (!normalizeRouteHost(host)) {
    ctx.error(posOf(v), what + ".host: invalid host '" + *s +
                            "' (expected e.g. \"api.example.com\" or \"*.example.com\", "
                            "without port)");
  } else {
    rc.host = host;
  }
}

void loadPath(LoadContext& ctx, const toml::node* v, const std::string& w, std::string& dst) {
  if (v == nullptr) return;
  if (auto s = ctx.getString(*v, w)) {
    if (!s->starts_with("/")) {
      ctx.error(posOf(*v), w + ": must start with '/', got '" + *s + "'");
    } else if (hasSpaceOrControl(*s)) {
      ctx.error(posOf(*v), w + ": must not contain spaces or control characters");
    } else {
      dst = *s;
    }
  }
}

void loadMethods(LoadContext& ctx, const toml::node& n, const std::string& what, RouteConfig& rc) {
  const auto* arr = n.as_array();
  if (arr == nullptr) {
    ctx.error(posOf(n),
              what + ": expected an array of strings like [\"GET\", \"POST\"], got " + typeName(n));
    return;
  }
  if (arr->empty()) {
    ctx.error(posOf(n), what + ": must not be empty (leave 'methods' out to allow any method)");
    return;
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    std::string w = what + "[" + std::to_string(i) + "]";
    auto s = ctx.getString((*arr)[i], w);
    if (!s) continue;
    if (!isUpperToken(*s)) {
      ctx.error(posOf((*arr)[i]),
                w + ": invalid method '" + *s + "' (expected an upper-case token such as \"GET\")");
      continue;
    }
    if (std::find(rc.methods.begin(), rc.methods.end(), *s) != rc.methods.end()) {
      ctx.warn(posOf((*arr)[i]), w + ": method '" + *s + "' is listed twice");
      continue;
    }
    rc.methods.push_back(*s);
  }
}

void loadRoutePool(LoadContext& ctx, const toml::node& v, const std::string& what,
                   RouteConfig& rc) {
  auto s = ctx.getString(v, what + ".pool");
  if (!s) return;
  rc.pool = *s;
  if (ctx.poolNames.count(*s) == 0) {
    ctx.error(posOf(v),
              what + ".pool: no pool named '" + *s + "' (define it with [pool." + *s + "])");
  } else {
    ctx.usedPools.insert(*s);
  }
}

void loadRouteMiddleware(LoadContext& ctx, const toml::node& n, const std::string& routeWhat,
                         RouteConfig& rc) {
  std::string what = routeWhat + ".middleware";
  const auto* arr = n.as_array();
  if (arr == nullptr) {
    ctx.error(posOf(n),
              what + ": expected an array of middleware names like [\"auth\"], got " + typeName(n));
    return;
  }
  bool claimsBefore = false;
  std::string refuserBefore;  // a middleware that may refuse a request, listed earlier
  for (size_t i = 0; i < arr->size(); ++i) {
    std::string w = what + "[" + std::to_string(i) + "]";
    auto s = ctx.getString((*arr)[i], w);
    if (!s) continue;
    auto it = ctx.middlewareNames.find(*s);
    if (it == ctx.middlewareNames.end()) {
      ctx.error(posOf((*arr)[i]),
                w + ": no middleware named '" + *s + "' (define it with [middleware." + *s + "])");
      continue;
    }
    if (std::find(rc.middleware.begin(), rc.middleware.end(), *s) != rc.middleware.end()) {
      ctx.error(posOf((*arr)[i]), w + ": middleware '" + *s + "' is listed twice");
      continue;
    }
    ctx.usedMiddleware.insert(*s);
    rc.middleware.push_back(*s);
    const MiddlewareSettings* settings = it->second.get();  // nullptr when invalid
    if (settings == nullptr) continue;
    if (settings->providesClaims()) claimsBefore = true;
    if (settings->answersPreflights() && !refuserBefore.empty()) {
      ctx.warn(posOf((*arr)[i]), w + ": '" + *s + "' comes after '" + refuserBefore +
                                     "': CORS preflights carry no credentials, so '" +
                                     refuserBefore + "' refuses them before '" + *s +
                                     "' can answer; list '" + *s + "' first");
    }
    if (settings->refusesRequests() && refuserBefore.empty()) refuserBefore = *s;
    std::string claimsKey = settings->claimsKey();
    if (!claimsKey.empty() && !claimsBefore) {
      ctx.warn(posOf((*arr)[i]), w + ": '" + *s + "' keys on '" + claimsKey +
                                     "' but no jwt middleware comes before it in this route; "
                                     "every request falls back to the client IP");
    }
  }
}

// split = [{ pool = "blue", weight = 90 }, { pool = "green", weight = 10 }]
void loadSplit(LoadContext& ctx, const toml::node& n, const std::string& routeWhat,
               RouteConfig& rc) {
  const std::string what = routeWhat + ".split";
  const auto* arr = n.as_array();
  if (arr == nullptr || arr->empty()) {
    ctx.error(posOf(n), what +
                            ": expected an array like [{ pool = \"blue\", weight = 90 }, "
                            "{ pool = \"green\", weight = 10 }]");
    return;
  }
  uint64_t total = 0;
  for (size_t i = 0; i < arr->size(); ++i) {
    const std::string w = what + "[" + std::to_string(i) + "]";
    const auto* t = ctx.tableOf((*arr)[i], w);
    if (t == nullptr) continue;
    ctx.checkKeys(*t, {"pool", "weight"}, {}, "in " + w);
    SplitArm arm;
    arm.pos = posOf((*arr)[i]);
    if (const auto* v = ctx.required(*t, "pool", arm.pos, w)) {
      if (auto s = ctx.getString(*v, w + ".pool")) {
        if (ctx.poolNames.count(*s) == 0) {
          ctx.error(posOf(*v),
                    w + ".pool: no pool named '" + *s + "' (define it with [pool." + *s + "])");
          continue;
        }
        for (const SplitArm& a : rc.split)
          if (a.pool == *s) ctx.error(posOf(*v), w + ".pool: '" + *s + "' is listed twice");
        ctx.usedPools.insert(*s);
        arm.pool = *s;
      }
    }
    if (const auto* v = ctx.required(*t, "weight", arm.pos, w)) {
      if (auto x = ctx.getInt(*v, w + ".weight", 0, 1000000)) arm.weight = uint32_t(*x);
    }
    total += arm.weight;
    if (!arm.pool.empty()) rc.split.push_back(std::move(arm));
  }
  if (total == 0 && !rc.split.empty())
    ctx.error(posOf(n), what + ": every weight is 0; at least one pool must take traffic");
}

// sticky = "ip" | "header:NAME" | "cookie:NAME" | "jwt:CLAIM" | "auto"
void loadSticky(LoadContext& ctx, const toml::node& v, const std::string& what, RouteConfig& rc) {
  auto s = ctx.getString(v, what + ".sticky");
  if (!s) return;
  const auto colon = s->find(':');
  const std::string kind = s->substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : s->substr(colon + 1);
  if (*s == "ip") {
    rc.sticky = StickyKind::Ip;
  } else if (*s == "auto") {
    rc.sticky = StickyKind::Auto;
  } else if ((kind == "header" || kind == "cookie" || kind == "jwt") && !arg.empty() &&
             !hasSpaceOrControl(arg) && arg.find(':') == std::string::npos) {
    rc.sticky = kind == "header"   ? StickyKind::Header
                : kind == "cookie" ? StickyKind::Cookie
                                   : StickyKind::JwtClaim;
    rc.stickyName = arg;
  } else {
    ctx.error(posOf(v), what +
                            ".sticky: expected \"ip\", \"header:NAME\", \"cookie:NAME\", "
                            "\"jwt:CLAIM\" or \"auto\", got '" +
                            *s + "'");
  }
}

// [route.rollback]: max_error_rate, max_p99_ratio, min_requests, window.
void loadRollback(LoadContext& ctx, const toml::node& n, const std::string& routeWhat,
                  RouteConfig& rc) {
  const std::string what = routeWhat + ".rollback";
  const auto* t = ctx.tableOf(n, what);
  if (t == nullptr) return;
  ctx.checkKeys(*t, {"max_error_rate", "max_p99_ratio", "min_requests", "window"}, {},
                "in [route.rollback]");
  RollbackRules& r = rc.rollback;
  r.enabled = true;
  r.pos = posOf(n);
  if (const auto* v = t->get("max_error_rate")) {
    if (auto x = ctx.getNumber(*v, what + ".max_error_rate", 0.0, 1.0)) r.maxErrorRate = *x;
  }
  if (const auto* v = t->get("max_p99_ratio")) {
    if (auto x = ctx.getNumber(*v, what + ".max_p99_ratio", 1.0, 1000.0)) r.maxP99Ratio = *x;
  }
  if (const auto* v = t->get("min_requests")) {
    if (auto x = ctx.getInt(*v, what + ".min_requests", 1, 1000000)) r.minRequests = uint32_t(*x);
  }
  if (const auto* v = t->get("window")) {
    if (auto d = ctx.getDuration(*v, what + ".window", false)) {
      if (d->count() < 100 || d->count() > 3600 * 1000) {
        ctx.error(posOf(*v), what + ".window: must be between 100ms and 1h");
      } else {
        r.window = *d;
      }
    }
  }
  if (t->get("max_error_rate") == nullptr && t->get("max_p99_ratio") == nullptr)
    ctx.error(r.pos, what + ": set max_error_rate, max_p99_ratio or both (nothing to judge)");
}

// [route.promote]: steps = [5, 25, 50, 100], interval = "2m".
void loadPromote(LoadContext& ctx, const toml::node& n, const std::string& routeWhat,
                 RouteConfig& rc) {
  const std::string what = routeWhat + ".promote";
  const auto* t = ctx.tableOf(n, what);
  if (t == nullptr) return;
  ctx.checkKeys(*t, {"steps", "interval"}, {}, "in [route.promote]");
  PromoteRules& p = rc.promote;
  p.enabled = true;
  p.pos = posOf(n);
  if (rc.split.size() != 2)
    ctx.error(p.pos, what +
                         ": needs a split of exactly two pools (the baseline, then the "
                         "canary that is promoted)");
  if (const auto* v = ctx.required(*t, "steps", p.pos, what, "e.g. steps = [5, 25, 50, 100]")) {
    const auto* arr = v->as_array();
    if (arr == nullptr || arr->empty()) {
      ctx.error(posOf(*v), what +
                               ".steps: expected an array of canary percentages like "
                               "[5, 25, 50, 100]");
    } else {
      for (size_t i = 0; i < arr->size(); ++i) {
        auto x = ctx.getInt((*arr)[i], what + ".steps[" + std::to_string(i) + "]", 1, 100);
        if (!x) continue;
        if (!p.steps.empty() && uint32_t(*x) <= p.steps.back()) {
          ctx.error(posOf((*arr)[i]), what + ".steps: must be strictly increasing");
          continue;
        }
        p.steps.push_back(uint32_t(*x));
      }
    }
  }
  if (const auto* v = t->get("interval")) {
    if (auto d = ctx.getDuration(*v, what + ".interval", false)) {
      if (d->count() < 100) {
        ctx.error(posOf(*v), what + ".interval: must be at least 100ms");
      } else {
        p.interval = *d;
      }
    }
  }
}

// The keys that only mean something on a split route.
void loadSplitOptions(LoadContext& ctx, const toml::table& t, const std::string& what,
                      RouteConfig& rc) {
  for (const char* key : {"sticky", "cohort", "override_header", "override_cookie", "drain_timeout",
                          "rollback", "promote"}) {
    const auto* v = t.get(key);
    if (v == nullptr) continue;
    if (rc.split.empty()) {
      ctx.error(posOf(*v), what + "." + key + ": only allowed on a route with 'split'");
      continue;
    }
    const std::string k = key;
    if (k == "sticky") {
      loadSticky(ctx, *v, what, rc);
      continue;
    }
    if (k == "rollback" || k == "promote") {
      (k == "rollback" ? loadRollback : loadPromote)(ctx, *v, what, rc);
      continue;
    }
    if (k == "drain_timeout") {  // "0s" = off, like leaving it out
      if (auto d = ctx.getDuration(*v, what + ".drain_timeout", true)) rc.drainTimeout = *d;
      continue;
    }
    auto s = ctx.getString(*v, what + "." + k);
    if (!s) continue;
    if (s->empty() || hasSpaceOrControl(*s)) {
      ctx.error(posOf(*v), what + "." + k + ": expected a non-empty name without spaces");
      continue;
    }
    (k == "cohort"            ? rc.cohort
     : k == "override_header" ? rc.overrideHeader
                              : rc.overrideCookie) = *s;
  }
}

// path_regex: compiled here once to report a bad pattern with its position (the router
// compiles it again for the snapshot). Returns the number of capturing groups, or -1.
int loadRegex(LoadContext& ctx, const toml::node& v, const std::string& what, RouteConfig& rc) {
  auto s = ctx.getString(v, what + ".path_regex");
  if (!s) return -1;
  if (s->empty()) {
    ctx.error(posOf(v), what + ".path_regex: must not be empty");
    return -1;
  }
  RE2::Options opt;
  opt.set_log_errors(false);
  RE2 re(*s, opt);
  if (!re.ok()) {
    ctx.error(posOf(v), what + ".path_regex: invalid regular expression '" + *s +
                            "': " + re.error() + " (RE2 syntax)");
    return -1;
  }
  rc.pathRegex = *s;
  return re.NumberOfCapturingGroups();
}

// rewrite = "/v2/$1": '$' + digit is a capture (at most `groups`), anything else is literal.
void loadRewrite(LoadContext& ctx, const toml::node& v, const std::string& what, int groups,
                 RouteConfig& rc) {
  auto s = ctx.getString(v, what + ".rewrite");
  if (!s) return;
  if (!s->starts_with("/")) {
    ctx.error(posOf(v), what + ".rewrite: must start with '/', got '" + *s + "'");
    return;
  }
  if (hasSpaceOrControl(*s) || s->find('#') != std::string::npos) {
    ctx.error(posOf(v), what + ".rewrite: must not contain spaces, control characters or '#'");
    return;
  }
  for (size_t i = 0; i + 1 < s->size(); ++i) {
    const char d = (*s)[i + 1];
    if ((*s)[i] != '$' || d < '0' || d > '9') continue;
    if (groups >= 0 && d - '0' > groups) {
      ctx.error(posOf(v), what + ".rewrite: '$" + std::string(1, d) + "' but path_regex has " +
                              std::to_string(groups) + " capturing group" +
                              (groups == 1 ? "" : "s"));
      return;
    }
    ++i;
  }
  rc.rewrite = *s;
}

// Two routes that match exactly the same requests: only one can ever be chosen.
using MatchKeys = FirstSeen<std::pair<std::string, SourcePos>>;  // match -> route label, pos

void warnSameMatch(LoadContext& ctx, MatchKeys& matches, const RouteConfig& rc,
                   const std::string& what) {
  std::vector<std::string> methods = rc.methods;
  std::sort(methods.begin(), methods.end());
  const std::string match = !rc.pathExact.empty()   ? "=" + rc.pathExact
                            : !rc.pathRegex.empty() ? "~" + rc.pathRegex
                                                    : rc.path;
  std::string key = rc.host + '\n' + match + '\n';
  for (const auto& m : methods) key += m + ",";
  std::string label = rc.name.empty() ? what : "route '" + rc.name + "'";
  if (const auto* first = matches.claim(key, {label, rc.pos})) {
    ctx.warn(rc.pos, label + " matches the same host, path and methods as " + first->first + " (" +
                         lineRef(first->second) + "); only one of them can be used");
  }
}

// The position of the last of these keys in the file (the one that conflicts with an earlier).
SourcePos lastPos(std::initializer_list<const toml::node*> nodes) {
  SourcePos at{};
  for (const auto* n : nodes) {
    if (n == nullptr) continue;
    const SourcePos p = posOf(*n);
    if (p.line > at.line || (p.line == at.line && p.col > at.col)) at = p;
  }
  return at;
}

void loadRoute(LoadContext& ctx, NameRules& names, MatchKeys& matches, const toml::table& t,
               const std::string& what, SourcePos pos) {
  ctx.checkKeys(t,
                {"name",
                 "host",
                 "path",
                 "path_exact",
                 "path_regex",
                 "prefix_priority",
                 "rewrite",
                 "methods",
                 "strip_prefix",
                 "pool",
                 "split",
                 "return",
                 "sticky",
                 "cohort",
                 "override_header",
                 "override_cookie",
                 "drain_timeout",
                 "middleware",
                 "rollback",
                 "promote",
                 "static"},
                {}, "in [[route]]");
  RouteConfig rc;
  rc.pos = pos;
  rc.name = names.nameKey(t, rc.pos, what);
  if (const auto* v = t.get("host")) loadHost(ctx, *v, what, rc);
  const auto* pathNode = t.get("path");
  const auto* exactNode = t.get("path_exact");
  const auto* regexNode = t.get("path_regex");
  const int matchKeys =
      int(pathNode != nullptr) + int(exactNode != nullptr) + int(regexNode != nullptr);
  if (matchKeys > 1) {
    ctx.error(lastPos({pathNode, exactNode, regexNode}),
              what + ": use exactly one of 'path', 'path_exact' and 'path_regex'");
  } else if (matchKeys == 0) {
    ctx.error(rc.pos, what + ": missing required key 'path' (or 'path_exact', 'path_regex')");
  }
  loadPath(ctx, pathNode, what + ".path", rc.path);
  loadPath(ctx, exactNode, what + ".path_exact", rc.pathExact);
  int groups = -1;
  if (regexNode != nullptr) groups = loadRegex(ctx, *regexNode, what, rc);
  if (const auto* v = t.get("prefix_priority")) {
    if (auto b = ctx.getBool(*v, what + ".prefix_priority")) {
      if (*b && pathNode == nullptr) {
        ctx.error(posOf(*v), what + ".prefix_priority: only allowed with 'path'");
      } else {
        rc.prefixPriority = *b;
      }
    }
  }
  if (const auto* v = t.get("methods")) loadMethods(ctx, *v, what + ".methods", rc);
  if (const auto* v = t.get("strip_prefix")) {
    if (auto b = ctx.getBool(*v, what + ".strip_prefix")) {
      if (*b && pathNode == nullptr) {
        ctx.error(posOf(*v), what +
                                 ".strip_prefix: only allowed with 'path' (use 'rewrite' with "
                                 "'path_regex')");
      } else {
        rc.stripPrefix = *b;
      }
    }
  }
  const auto* splitNode = t.get("split");
  const auto* returnNode = t.get("return");
  const auto* staticNode = t.get("static");
  const int targets = int(t.get("pool") != nullptr) + int(splitNode != nullptr) +
                      int(returnNode != nullptr) + int(staticNode != nullptr);
  if (targets > 1) {
    ctx.error(lastPos({t.get("pool"), splitNode, returnNode, staticNode}),
              what + ": use exactly one of 'pool', 'split', 'return' and 'static'");
  } else if (splitNode != nullptr) {
    loadSplit(ctx, *splitNode, what, rc);
  } else if (returnNode != nullptr) {
    loadReturn(ctx, *returnNode, what, rc);
  } else if (staticNode != nullptr) {
    loadStatic(ctx, *staticNode, what, regexNode != nullptr, rc);
  } else if (const auto* v =
                 ctx.required(t, "pool", rc.pos, what,
                              "(or 'split', 'return' for a fixed answer, 'static' for files)")) {
    loadRoutePool(ctx, *v, what, rc);
  }
  if (staticNode != nullptr && rc.stripPrefix) {
    ctx.error(posOf(*t.get("strip_prefix")),
              what + ".strip_prefix: not allowed with 'static' (use static.alias)");
  }
  if (const auto* v = t.get("rewrite")) {
    if (regexNode == nullptr) {
      ctx.error(posOf(*v), what + ".rewrite: only allowed with 'path_regex'");
    } else if (returnNode != nullptr || staticNode != nullptr) {
      ctx.error(posOf(*v), what +
                               ".rewrite: not allowed with 'return' or 'static' (nothing goes "
                               "upstream)");
    } else {
      loadRewrite(ctx, *v, what, groups, rc);
    }
  }
  loadSplitOptions(ctx, t, what, rc);
  if (const auto* v = t.get("middleware")) loadRouteMiddleware(ctx, *v, what, rc);
  warnSameMatch(ctx, matches, rc, what);
  ctx.config().routes.push_back(std::move(rc));
}

}  // namespace

void loadRoutes(LoadContext& ctx, const toml::node& n) {
  NameRules names(ctx, "route");
  MatchKeys matches;
  forEachArrayTable(ctx, n, "route",
                    [&](const toml::table& t, const std::string& what, SourcePos pos) {
                      loadRoute(ctx, names, matches, t, what, pos);
                    });
}

}  // namespace sluice::config
