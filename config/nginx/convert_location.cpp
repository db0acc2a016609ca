// Locations -> routes: the match (nginx's =, ^~, ~, ~* and prefixes onto path_exact,
// prefix_priority, path_regex and path) and what answers (proxy_pass with nginx's URI
// replacement, return, static files). Rewrites are in convert_rewrite.cpp, the middleware
// (limit_req, the header directives) in convert_middleware.cpp.
#include <algorithm>

#include "config/nginx/converter.h"

namespace sluice::config::nginx {

namespace {

const std::vector<VarMapping> kRedirectVars = {
    {"scheme", "{scheme}"}, {"host", "{host}"}, {"request_uri", "{uri}"}};

std::string hintOf(const LocationMatch& m, size_t index) {
  switch (m.kind) {
    case LocationMatch::Kind::Regex:
      return "regex-" + std::to_string(index);
    case LocationMatch::Kind::Exact:
      return m.path == "/" ? "root-exact" : m.path;
    default:
      return m.path == "/" ? "root" : m.path;
  }
}

// The literal text a pattern anchored with ^ starts with ("^/api/v1/(.*)" -> "/api/v1/").
std::string literalPrefix(std::string_view re) {
  std::string out;
  if (!re.starts_with("^")) return out;
  for (size_t i = 1; i < re.size(); ++i) {
    const char c = re[i];
    if (c == '\\' && i + 1 < re.size() &&
        std::string_view("./-_~").find(re[i + 1]) != std::string_view::npos) {
      out.push_back(re[++i]);
      continue;
    }
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '-' || c == '_' ||
        c == '~' || c == '%') {
      out.push_back(c);
      continue;
    }
    if ((c == '?' || c == '*' || c == '{') && !out.empty()) out.pop_back();
    break;
  }
  return out;
}

}  // namespace

void Converter::locations(ServerInfo& s) {
  if (s.returnAll) {
    for (const Directive* loc : s.locations)
      tracker_.noEffect(*loc, "never reached: the return at " + display(s.returnAllAt->at) +
                                  " answers every request first");
    for (const Directive* loc : s.locations)
      for (const Directive& c : loc->children) tracker_.noEffect(c, "never reached");
    return;
  }
  for (const Directive* rw : s.rewrites) serverRewrite(s, *rw);
  for (const Directive* loc : s.locations) location(s, *loc, *s.scope);
}

void Converter::matchRoute(const LocationMatch& m, RouteOut& r) {
  switch (m.kind) {
    case LocationMatch::Kind::Exact:
      r.match = RouteOut::Match::Exact;
      r.path = m.path;
      break;
    case LocationMatch::Kind::Priority:
      r.match = RouteOut::Match::Path;
      r.path = m.path;
      r.prefixPriority = true;
      break;
    case LocationMatch::Kind::Regex: {
      r.match = RouteOut::Match::Regex;
      std::string err;
      r.path = toRe2(m.path, m.caseless, err);
      break;
    }
    default:
      r.match = RouteOut::Match::Path;
      r.path = m.path;
  }
}

const Directive* Converter::findLocation(const ServerInfo& s, std::string_view uri) const {
  // nginx: exact; else the longest prefix; ^~ stops there; else the first regex that
  // matches; else that prefix.
  const Directive* longest = nullptr;
  size_t longestLen = 0;
  bool priority = false;
  for (const Directive* loc : s.locations) {
    LocationMatch m = parseLocation(*loc);
    if (m.kind == LocationMatch::Kind::Exact && m.path == uri) return loc;
    if ((m.kind == LocationMatch::Kind::Prefix || m.kind == LocationMatch::Kind::Priority) &&
        uri.starts_with(m.path) && (longest == nullptr || m.path.size() > longestLen)) {
      longest = loc;
      longestLen = m.path.size();
      priority = m.kind == LocationMatch::Kind::Priority;
    }
  }
  if (priority) return longest;
  for (const Directive* loc : s.locations) {
    LocationMatch m = parseLocation(*loc);
    if (m.kind != LocationMatch::Kind::Regex) continue;
    std::string err;
    const std::string re = toRe2(m.path, m.caseless, err);
    if (!re.empty() && regexMatches(re, uri)) return loc;
  }
  return longest;
}

bool Converter::prefixAsRegexIsExact(const ServerInfo& s, const LocationMatch& m,
                                     std::string& why) {
  for (const Directive* loc : s.locations) {
    LocationMatch o = parseLocation(*loc);
    if (o.kind != LocationMatch::Kind::Prefix && o.kind != LocationMatch::Kind::Priority) continue;
    if (o.path == m.path) continue;
    if (m.kind != LocationMatch::Kind::Exact && o.path.starts_with(m.path)) {
      why = "the longer prefix location at " + display(loc->at) + " (" + o.path +
            ") now loses to this route's pattern for its paths";
      return false;
    }
    if (o.kind == LocationMatch::Kind::Priority && m.path.starts_with(o.path)) {
      why = "the ^~ location at " + display(loc->at) + " (" + o.path +
            ") is tried before patterns in Sluice and now takes this location's paths";
      return false;
    }
  }
  return true;
}

void Converter::location(ServerInfo& s, const Directive& loc, const Scope& parent) {
  const LocationMatch m = parseLocation(loc);
  if (m.kind == LocationMatch::Kind::Invalid) {
    tracker_.skipBlock(loc, "invalid location arguments");
    return;
  }
  if ((m.kind == LocationMatch::Kind::Prefix || m.kind == LocationMatch::Kind::Priority ||
       m.kind == LocationMatch::Kind::Exact) &&
      (!m.path.starts_with("/") || std::any_of(m.path.begin(), m.path.end(), [](unsigned char c) {
        return c <= 0x20 || c == 0x7f;
      }))) {
    tracker_.skipBlock(loc,
                       "a location path that does not start with '/' or has spaces never "
                       "matches a request path in Sluice");
    return;
  }
  if (m.kind == LocationMatch::Kind::Named) {
    tracker_.skipBlock(loc,
                       "named locations are only reached by internal redirects "
                       "(try_files, error_page), which Sluice does not have");
    return;
  }
  Scope sc(&parent);
  std::vector<const Directive*> phase;
  const Directive* proxyPass = nullptr;
  const Directive* internal = nullptr;
  std::vector<const Directive*> access;
  for (const Directive& c : loc.children) {
    const std::string& n = c.name;
    if (n == "location") {
      tracker_.skipBlock(c,
                         "nested locations are not converted: write them at the server level "
                         "(Sluice's routes are not nested)");
    } else if (n == "rewrite" || n == "return" || n == "if" || n == "set" || n == "break") {
      phase.push_back(&c);
    } else if (n == "proxy_pass") {
      proxyPass = &c;
    } else if (n == "internal") {
      internal = &c;
    } else if (n == "limit_except") {
      tracker_.skipBlock(c,
                         "method restrictions are not converted (a route's `methods` would "
                         "let other methods fall through to other routes instead of 403)");
    } else if (n == "allow" || n == "deny") {
      access.push_back(&c);
    } else if (n == "error_log") {
      errorLog(c, false);
    } else {
      sc.add(c);
    }
  }
  if (internal != nullptr) {
    tracker_.skipBlock(loc, "internal locations are only reached by internal redirects");
    return;
  }
  tracker_.converted(loc);
  RouteOut r;
  r.comments.push_back(from(loc));
  r.hint = hintOf(m, s.routes.size() + 1);
  matchRoute(m, r);
  if (m.kind == LocationMatch::Kind::Regex && r.path.empty()) {
    std::string err;
    toRe2(m.path, m.caseless, err);
    tracker_.skipBlock(loc, "RE2 cannot compile the pattern (" + err +
                                "): Sluice's patterns have no backreferences or lookaround");
    return;
  }
  std::vector<RouteOut> extra;
  bool ok = false;
  bool answered = false;
  // The rewrite phase runs first; a return in it answers before access rules and content.
  for (const Directive* c : phase) {
    if (answered) {
      tracker_.noEffect(*c, "never reached: the return before it answers first");
      continue;
    }
    if (c->name == "return") {
      ok = returnRoute(s, *c, sc, r);
      answered = true;
    } else if (c->name == "rewrite") {
      locationRewrite(s, loc, m, *c, sc, extra);
    } else if (c->name == "if") {
      tracker_.skipBlock(*c,
                         "if blocks are not converted (Sluice routes on host, path and "
                         "method only)");
    } else {
      tracker_.skip(*c, "variables and rewrite-phase control are not converted");
    }
  }
  if (answered) {
    for (const Directive* a : access) tracker_.noEffect(*a, "never reached: return answers first");
    if (proxyPass != nullptr) tracker_.noEffect(*proxyPass, "never reached: return answers first");
  } else if (access.size() == 1 && access[0]->name == "deny" && access[0]->args.size() == 1 &&
             access[0]->arg(0) == "all") {
    ReturnOut ret;
    ret.status = 403;
    r.ret = ret;
    tracker_.converted(*access[0]);
    if (proxyPass != nullptr) tracker_.noEffect(*proxyPass, "never reached: deny all answers 403");
    ok = true;
  } else {
    for (const Directive* a : access) sc.add(*a);  // left for the sweep: not converted
    if (proxyPass != nullptr)
      ok = proxyRoute(s, loc, m, sc, *proxyPass, r);
    else
      ok = staticRoute(&s, loc, m, sc, r);
  }
  if (!ok) {
    tracker_.skip(loc, "nothing in this location could be converted (see the warnings inside)");
    return;
  }
  middlewareOf(sc, r.ret.has_value(), proxyPass != nullptr && !r.ret, r);
  for (RouteOut& e : extra) {
    e.middleware = r.middleware;
    s.routes.push_back(std::move(e));
  }
  if ((m.kind == LocationMatch::Kind::Prefix || m.kind == LocationMatch::Kind::Priority) &&
      m.path == "/")
    s.hasRootLocation = true;
  s.routes.push_back(std::move(r));
}

bool Converter::proxyRoute(ServerInfo& s, const Directive& loc, const LocationMatch& m,
                           const Scope& sc, const Directive& pp, RouteOut& r) {
  std::string uri;
  bool hasUri = false;
  const std::string pool = poolFor(pp, sc, uri, hasUri);
  if (pool.empty()) return false;
  r.pool = pool;
  (void)loc;
  std::vector<std::string> diffs;
  bool hasHost = false;
  for (const Directive* h : sc.all("proxy_set_header"))
    if (!h->args.empty() && asciiLower(h->arg(0)) == "host") hasHost = true;
  if (!hasHost)
    diffs.push_back(
        "without proxy_set_header Host, nginx sends the upstream's name as Host; "
        "Sluice forwards the client's Host header (it cannot be set)");
  if (hasUri) {
    if (uri.find('?') != std::string::npos || uri.find('#') != std::string::npos ||
        uri.find(' ') != std::string::npos) {
      tracker_.skip(pp, "a query or fragment in the proxy_pass URI is not converted");
      return false;
    }
    switch (m.kind) {
      case LocationMatch::Kind::Regex:
        tracker_.skip(pp, "nginx refuses a URI part in proxy_pass in a regex location");
        return false;
      case LocationMatch::Kind::Prefix:
      case LocationMatch::Kind::Priority: {
        if (uri == "/" && m.path.ends_with("/")) {
          r.stripPrefix = true;  // "/api/x" -> "/x", exactly nginx's replacement
          break;
        }
        // The matched prefix is replaced by the URI: a pattern route with a rewrite.
        r.match = RouteOut::Match::Regex;
        r.path = "^" + quoteRegex(m.path) + "(.*)$";
        r.rewrite = uri + "$1";
        r.prefixPriority = false;
        r.order = m.kind == LocationMatch::Kind::Priority ? 0 : 2;
        r.comments.push_back("nginx replaces the prefix " + m.path + " by " + uri +
                             ": written as a pattern, tried " +
                             (r.order == 0 ? "before the other patterns (^~)"
                                           : "after the other patterns (a prefix loses to them)"));
        std::string why;
        if (!prefixAsRegexIsExact(s, m, why)) diffs.push_back(why);
        break;
      }
      case LocationMatch::Kind::Exact: {
        r.match = RouteOut::Match::Regex;
        r.path = "^" + quoteRegex(m.path) + "$";
        r.rewrite = uri;
        r.order = 0;
        r.comments.push_back("nginx replaces the exact path by " + uri +
                             ": written as a pattern, tried before the other patterns");
        std::string why;
        if (!prefixAsRegexIsExact(s, m, why)) diffs.push_back(why);
        break;
      }
      default:
        return false;
    }
  }
  tracker_.outcome(pp, diffs);
  return true;
}

std::optional<std::string> Converter::redirectTarget(const ServerInfo& s, const Directive& d,
                                                     std::string_view url) {
  std::vector<VarMapping> vars = kRedirectVars;
  std::string serverName;
  for (const auto& h : s.hosts)
    if (!h.starts_with("*")) {
      serverName = h;
      break;
    }
  if (!serverName.empty()) vars.push_back({"server_name", serverName});
  vars.push_back({"http_host", "{host}"});
  std::string unknown;
  auto t = translateVariables(url, vars, unknown);
  if (!t) {
    tracker_.skip(d, "the target uses " + unknown +
                         ", which Sluice's redirects do not have (only $scheme, $host, "
                         "$request_uri, $server_name)");
    return std::nullopt;
  }
  std::string check = *t;
  for (const char* p : {"{scheme}", "{host}", "{uri}"}) {
    for (size_t at = check.find(p); at != std::string::npos; at = check.find(p))
      check.erase(at, std::string_view(p).size());
  }
  if (check.find_first_of("{} \t\r\n") != std::string::npos || t->empty()) {
    tracker_.skip(d,
                  "the target has characters Sluice's redirect templates cannot carry "
                  "(braces, spaces)");
    return std::nullopt;
  }
  if (url.find("$http_host") != std::string_view::npos)
    tracker_.differs(d, "$http_host is written as {host}, which has no port");
  return t;
}

bool Converter::returnRoute(ServerInfo& s, const Directive& d, const Scope& sc, RouteOut& r) {
  if (d.args.empty() || d.args.size() > 2) {
    tracker_.skip(d, "invalid return");
    return false;
  }
  int code = 302;
  std::string text;
  bool hasText = false;
  const std::string& a0 = d.arg(0);
  if (d.args.size() == 1 &&
      (a0.starts_with("http://") || a0.starts_with("https://") || a0.starts_with("$scheme"))) {
    text = a0;
    hasText = true;
  } else {
    auto n = parseSize(a0);
    if (!n || a0.find_first_not_of("0123456789") != std::string::npos || *n > 999) {
      tracker_.skip(d, "invalid status '" + a0 + "'");
      return false;
    }
    code = int(*n);
    if (d.args.size() == 2) {
      text = d.arg(1);
      hasText = true;
    }
  }
  if (code == 444) {
    tracker_.skip(d, "444 closes the connection without an answer; Sluice always answers");
    return false;
  }
  if (code < 200 || code > 599) {
    tracker_.skip(d, "Sluice's return statuses are 200..599");
    return false;
  }
  ReturnOut ret;
  ret.status = code;
  const bool redirect = code == 301 || code == 302 || code == 303 || code == 307 || code == 308;
  if (redirect) {
    if (!hasText) {
      tracker_.skip(d, "a redirect without a target");
      return false;
    }
    auto target = redirectTarget(s, d, text);
    if (!target) return false;
    ret.location = *target;
  } else if (code >= 300 && code < 400) {
    tracker_.skip(d, "Sluice's 3xx returns are redirects with a location");
    return false;
  } else if (hasText && code != 204 && code != 304) {
    if (!findVariables(text).empty()) {
      tracker_.skip(d, "the body uses variables; Sluice's return bodies are fixed text");
      return false;
    }
    ret.body = text;
    ret.hasBody = true;
    std::string type = "text/plain";  // nginx's built-in default_type
    if (const Directive* dt = sc.last("default_type")) {
      if (dt->args.size() == 1) type = dt->arg(0);
      tracker_.converted(*dt);
    }
    if (type.find_first_of("\r\n") == std::string::npos && type != "text/plain")
      ret.contentType = type;
  }
  r.ret = ret;
  if (r.hint.empty()) r.hint = "return";
  if (tracker_.fate(d) == Fate::Unseen) tracker_.converted(d);
  return true;
}

// A rewrite in a location: `break` keeps the request in this location with the new URI;
// `last` (or no flag) looks for a location again; redirect/permanent answer with a redirect.
void Converter::locationRewrite(ServerInfo& s, const Directive& loc, const LocationMatch& m,
                                const Directive& rw, const Scope& sc,
                                std::vector<RouteOut>& extra) {
  if (rw.args.size() < 2 || rw.args.size() > 3) {
    tracker_.skip(rw, "invalid rewrite");
    return;
  }
  const std::string& pattern = rw.arg(0);
  const std::string flag = rw.args.size() == 3 ? rw.arg(2) : "";
  // The rewritten requests must be a subset of this location's: the pattern repeats the
  // location's own pattern, or starts with ^ and the location's prefix.
  const std::string lit = literalPrefix(pattern);
  const bool inside =
      (m.kind == LocationMatch::Kind::Regex && pattern == m.path && !m.caseless) ||
      ((m.kind == LocationMatch::Kind::Prefix || m.kind == LocationMatch::Kind::Priority) &&
       lit.starts_with(m.path));
  if (!inside) {
    tracker_.skip(rw,
                  "only rewrites whose pattern starts with ^ and this location's prefix (or "
                  "repeats its pattern) are converted");
    return;
  }
  RouteOut r;
  r.comments.push_back(from(rw));
  r.hint = hintOf(m, s.routes.size() + 1) + "-rewrite";
  r.match = RouteOut::Match::Regex;
  std::string err;
  r.path = toRe2(pattern, false, err);
  if (r.path.empty()) {
    tracker_.skip(rw, "RE2 cannot compile the pattern (" + err + ")");
    return;
  }
  r.order = m.kind == LocationMatch::Kind::Priority ? 0
            : m.kind == LocationMatch::Kind::Regex  ? 1
                                                    : 2;
  if (flag == "redirect" || flag == "permanent") {
    extra.push_back(r);
    if (!redirectRewrite(s, rw, extra.back())) extra.pop_back();
    return;
  }
  // break / last / no flag: the new URI goes to this location's backend (break) or to the
  // location it matches (last), which must proxy without a URI part of its own.
  const Directive* target = &loc;
  if (flag != "break") {
    const std::string replLit = rw.arg(1).substr(0, rw.arg(1).find('$'));
    target = findLocation(s, replLit);
    if (target == nullptr) {
      tracker_.skip(rw, "no location takes the rewritten URI");
      return;
    }
  }
  const Directive* pp = nullptr;
  for (const Directive& c : target->children)
    if (c.name == "proxy_pass") pp = &c;
  if (pp == nullptr || pp->args.size() != 1) {
    tracker_.skip(rw, "the rewritten request is not proxied by " +
                          std::string(target == &loc ? "this location"
                                                     : "the location it lands in (" +
                                                           display(target->at) + ")"));
    return;
  }
  std::string uri;
  bool hasUri = false;
  Scope targetScope(s.scope.get());  // the location the new URI lands in, for `last`
  if (target != &loc)
    for (const Directive& c : target->children) targetScope.add(c);
  const std::string pool = poolFor(*pp, target == &loc ? sc : targetScope, uri, hasUri);
  if (pool.empty()) return;
  const std::string& repl = rw.arg(1);
  if (!rewriteTarget(rw, r.path, repl)) return;
  r.rewrite = repl;
  r.pool = pool;
  if (target != &loc) r.comments.push_back("the rewritten URI lands in " + from(*target));
  std::vector<std::string> diffs;
  if (hasUri) diffs.push_back("the proxy_pass URI part is not applied after a rewrite (as nginx)");
  std::string why;
  if (m.kind != LocationMatch::Kind::Regex && !prefixAsRegexIsExact(s, m, why))
    diffs.push_back(why);
  if (diffs.empty())
    tracker_.converted(rw);
  else
    tracker_.differs(rw, diffs.front());
  extra.push_back(r);
}

// A rewrite's replacement as Sluice's `rewrite`: captures $0..$9 of `pattern` only, starting
// with '/', no spaces or '#'. False (with the reason on `rw`) otherwise.
bool Converter::rewriteTarget(const Directive& rw, const std::string& pattern,
                              const std::string& repl) {
  const int groups = captureGroups(pattern);
  for (const VarRef& v : findVariables(repl)) {
    if (v.name.size() != 1 || !std::isdigit(static_cast<unsigned char>(v.name[0])) ||
        v.name[0] - '0' > groups) {
      tracker_.skip(rw, "the replacement uses $" + v.name + "; Sluice's rewrite has $0..$9 only");
      return false;
    }
  }
  if (!repl.starts_with("/") || repl.find_first_of(" #") != std::string::npos) {
    tracker_.skip(rw, "Sluice's rewrite must start with '/' and have no spaces or '#'");
    return false;
  }
  return true;
}

// rewrite REGEX URL redirect|permanent: a fixed redirect, when the URL uses no capture (or
// only one capture of the whole path, which is Sluice's {uri} with the query nginx appends).
}  // namespace sluice::config::nginx
