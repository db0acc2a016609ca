// Locations -> routes: the match (nginx's =, ^~, ~, ~* and prefixes onto path_exact,
// prefix_priority, path_regex and path), what answers (proxy_pass with nginx's URI
// replacement, return, rewrite, static files) and the middleware (limit_req, the header
// directives).
#include <algorithm>

#include "config/nginx/converter.h"

namespace sluice::config::nginx {

namespace {

const std::vector<VarMapping> kRedirectVars = {
    {"scheme", "{scheme}"}, {"host", "{host}"}, {"request_uri", "{uri}"}};

const std::vector<VarMapping> kHeaderVars = {{"remote_addr", "{client_ip}"},
                                             {"binary_remote_addr", "{client_ip}"},
                                             {"host", "{host}"},
                                             {"scheme", "{scheme}"},
                                             {"request_id", "{request_id}"}};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Headers the proxy owns: Sluice refuses to set or remove them in a headers middleware.
bool proxyOwned(const std::string& lname) {
  return lname == "content-length" || lname == "transfer-encoding" || lname == "connection" ||
         lname == "keep-alive" || lname == "proxy-connection" || lname == "te" ||
         lname == "trailer" || lname == "upgrade" || lname == "expect" || lname == "host";
}

bool isToken(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

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
      (!m.path.starts_with("/") ||
       std::any_of(m.path.begin(), m.path.end(),
                   [](unsigned char c) { return c <= 0x20 || c == 0x7f; }))) {
    tracker_.skipBlock(loc, "a location path that does not start with '/' or has spaces never "
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
    if (!h->args.empty() && lower(h->arg(0)) == "host") hasHost = true;
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
bool Converter::redirectRewrite(ServerInfo& s, const Directive& rw, RouteOut& r) {
  const std::string& pattern = rw.arg(0);
  std::string repl = rw.arg(1);
  const bool permanent = rw.arg(2) == "permanent";
  const bool keepQuery = !repl.ends_with("?");
  if (!keepQuery) repl.pop_back();
  const bool wholePath = pattern == "^(.*)$" || pattern == "^(.*)" || pattern == "(.*)";
  std::string target = repl;
  for (const VarRef& v : findVariables(repl)) {
    if (v.name == "1" && wholePath && keepQuery && v.pos + v.len == repl.size()) {
      target = repl.substr(0, v.pos) + "$request_uri";
      continue;
    }
    if (v.name.size() == 1 && std::isdigit(static_cast<unsigned char>(v.name[0]))) {
      tracker_.skip(rw, "a redirect built from captures ($" + v.name +
                            ") is not converted: Sluice's return targets have {scheme}, {host} "
                            "and {uri} only");
      return false;
    }
  }
  if (keepQuery && target.find("$request_uri") == std::string::npos &&
      target.find('?') == std::string::npos)
    r.comments.push_back("nginx appends the request's query to this target; Sluice does not");
  auto t = redirectTarget(s, rw, target);
  if (!t) return false;
  ReturnOut ret;
  ret.status = permanent ? 301 : 302;
  ret.location = *t;
  r.ret = ret;
  r.pool.clear();
  if (tracker_.fate(rw) == Fate::Unseen) {
    if (keepQuery && target.find("$request_uri") == std::string::npos)
      tracker_.differs(rw,
                       "nginx appends the request's query to the target; Sluice's "
                       "redirect does not");
    else
      tracker_.converted(rw);
  }
  return true;
}

// A server-level rewrite runs before any location: a pattern route ahead of the others.
void Converter::serverRewrite(ServerInfo& s, const Directive& rw) {
  if (rw.args.size() < 2 || rw.args.size() > 3) {
    tracker_.skip(rw, "invalid rewrite");
    return;
  }
  const std::string flag = rw.args.size() == 3 ? rw.arg(2) : "";
  RouteOut r;
  r.comments.push_back(from(rw));
  r.hint = "rewrite-" + std::to_string(rw.at.line);
  r.match = RouteOut::Match::Regex;
  r.order = 0;
  std::string err;
  r.path = toRe2(rw.arg(0), false, err);
  if (r.path.empty()) {
    tracker_.skip(rw, "RE2 cannot compile the pattern (" + err + ")");
    return;
  }
  if (flag == "redirect" || flag == "permanent") {
    if (redirectRewrite(s, rw, r)) {
      for (const Directive* loc : s.locations) {
        const LocationMatch lm = parseLocation(*loc);
        if (lm.kind == LocationMatch::Kind::Exact || lm.kind == LocationMatch::Kind::Priority) {
          if (tracker_.fate(rw) != Fate::Differs)
            tracker_.differs(rw, "Sluice tries exact and ^~ routes (such as " + display(loc->at) +
                                     ") before this pattern; nginx runs server rewrites first");
          break;
        }
      }
      s.routes.push_back(r);
    }
    return;
  }
  const std::string& repl = rw.arg(1);
  const Directive* target = findLocation(s, repl.substr(0, repl.find('$')));
  const Directive* pp = nullptr;
  if (target != nullptr)
    for (const Directive& c : target->children)
      if (c.name == "proxy_pass") pp = &c;
  if (pp == nullptr) {
    tracker_.skip(rw, "only rewrites whose new URI lands in a proxied location are converted");
    return;
  }
  if (!rewriteTarget(rw, r.path, repl)) return;
  std::string uri;
  bool hasUri = false;
  Scope targetScope(s.scope.get());
  for (const Directive& c : target->children) targetScope.add(c);
  const std::string pool = poolFor(*pp, targetScope, uri, hasUri);
  if (pool.empty()) {
    tracker_.skip(rw, "the location it lands in could not be converted");
    return;
  }
  r.pool = pool;
  r.rewrite = repl;
  r.comments.push_back("the rewritten URI lands in " + from(*target));
  tracker_.differs(rw,
                   "Sluice tries exact and ^~ routes before this pattern (nginx runs server "
                   "rewrites before choosing a location), and the target location's "
                   "middleware is not applied");
  s.routes.push_back(r);
}

bool Converter::staticRoute(const ServerInfo* s, const Directive& loc, const LocationMatch& m,
                            const Scope& sc, RouteOut& r) {
  StaticOut st;
  const bool isLocation = loc.name == "location";
  const Directive* alias = nullptr;
  const Directive* tryFiles = nullptr;
  if (isLocation) {
    for (const Directive& c : loc.children) {
      if (c.name == "alias") alias = &c;
      if (c.name == "try_files") tryFiles = &c;
    }
  } else {
    for (const Directive& c : loc.children)
      if (c.name == "try_files") tryFiles = &c;
  }
  if (alias != nullptr) {
    if (m.kind == LocationMatch::Kind::Regex || alias->args.size() != 1 ||
        alias->arg(0).find('$') != std::string::npos) {
      tracker_.skip(*alias,
                    "alias is converted for prefix and exact locations without variables "
                    "only");
      return false;
    }
    st.alias = resolvePath(alias->arg(0), false);
    tracker_.converted(*alias);
  } else if (const Directive* root = sc.last("root")) {
    if (root->args.size() != 1 || root->arg(0).find('$') != std::string::npos) {
      tracker_.skip(*root, "a root with variables is not converted");
      return false;
    }
    st.root = resolvePath(root->arg(0), false);
    if (!root->arg(0).starts_with("/"))
      tracker_.differs(*root, "relative root written as " + st.root + " (Debian's nginx prefix)");
    else
      tracker_.converted(*root);
  } else {
    st.root = "/usr/share/nginx/html";
    tracker_.differs(loc, "no root: nginx serves files from its default root; written as " +
                              st.root + " (Debian's)");
  }
  // index: the entries of the nearest level's index directives.
  std::vector<std::string> index;
  for (const Directive* d : sc.all("index")) {
    bool fixed = true;
    for (const Arg& a : d->args) fixed = fixed && a.text.find_first_of("$/") == std::string::npos;
    if (!fixed) {
      tracker_.skip(*d, "index entries with variables or paths are not converted");
      continue;
    }
    for (const Arg& a : d->args) index.push_back(a.text);
    tracker_.converted(*d);
  }
  if (!index.empty() && !(index.size() == 1 && index[0] == "index.html")) st.index = index;
  if (tryFiles != nullptr) {
    std::vector<std::string> entries;
    std::string problem;
    for (size_t i = 0; i < tryFiles->args.size(); ++i) {
      std::string e = tryFiles->arg(i);
      for (size_t at = e.find("${uri}"); at != std::string::npos; at = e.find("${uri}"))
        e.replace(at, 6, "$uri");
      const bool last = i + 1 == tryFiles->args.size();
      if (last && e.starts_with("@")) {
        problem = "falls back to the named location " + e +
                  ", which a static route cannot hand a request to; missing files are answered "
                  "404";
        entries.push_back("=404");
        break;
      }
      if (last && e.starts_with("=")) {
        entries.push_back(e);
        continue;
      }
      bool varsOk = true;
      for (const VarRef& v : findVariables(e)) varsOk = varsOk && v.name == "uri";
      if (!varsOk) {
        problem = "the entry '" + e + "' uses variables other than $uri";
        entries.clear();
        break;
      }
      if (last && (e.find('$') != std::string::npos || !e.starts_with("/"))) {
        problem = "the last entry '" + e + "' is not a fixed path or =code";
        entries.clear();
        break;
      }
      if (!last && e.find("$uri") == std::string::npos) {
        problem = "the entry '" + e + "' does not contain $uri";
        entries.clear();
        break;
      }
      entries.push_back(e);
    }
    if (entries.size() == 1 && entries[0].starts_with("=")) entries.insert(entries.begin(), "$uri");
    if (!entries.empty()) st.tryFiles = entries;
    // nginx routes a fallback path through the locations again; Sluice serves it here.
    const std::string& fallback = entries.empty() ? std::string() : entries.back();
    if (problem.empty() && s != nullptr && isLocation && fallback.starts_with("/")) {
      const Directive* lands = findLocation(*s, fallback);
      if (lands != nullptr && lands != &loc)
        problem = "nginx routes the fallback " + fallback +
                  " through the locations again (it "
                  "lands in " +
                  display(lands->at) +
                  "); Sluice serves it from this route's "
                  "files";
    }
    if (problem.empty()) {
      tracker_.converted(*tryFiles);
    } else if (entries.empty()) {
      tracker_.skip(*tryFiles, problem);
    } else {
      tracker_.differs(*tryFiles, problem);
    }
  }
  if (const Directive* e = sc.last("expires")) {
    const std::string v = e->args.size() == 1 ? e->arg(0) : "";
    if (v == "off") {
      tracker_.converted(*e);
    } else if (v == "epoch" || v.starts_with("-")) {
      st.cacheControl = "no-cache";
      tracker_.differs(*e, "Sluice sends Cache-Control: no-cache only (no Expires header)");
    } else if (v == "max") {
      st.cacheControl = "max-age=315360000";
      tracker_.differs(*e, "Sluice sends Cache-Control only (no Expires header)");
    } else if (auto ms = parseTimeMs(v)) {
      st.cacheControl = "max-age=" + std::to_string(*ms / 1000);
      tracker_.differs(*e, "Sluice sends Cache-Control only (no Expires header)");
    } else {
      tracker_.skip(*e, "only a plain time, epoch, max or off is converted");
    }
  }
  if (const Directive* g = sc.last("gzip_static")) {
    const std::string v = g->args.size() == 1 ? g->arg(0) : "";
    st.precompressed = v == "on" || v == "always";
    if (v == "always")
      tracker_.differs(*g, "Sluice serves the .gz file only to clients that accept gzip");
    else
      tracker_.converted(*g);
  }
  r.stat = st;
  (void)m;
  return true;
}

void Converter::middlewareOf(const Scope& sc, bool answered, bool proxied, RouteOut& r) {
  // limit_req runs after the rewrite phase: a return answers before it.
  if (!answered) rateLimits(sc, r);
  headerPolicy(sc, proxied, r);
}

void Converter::rateLimits(const Scope& sc, RouteOut& r) {
  for (const Directive* d : sc.all("limit_req")) {
    std::string zone;
    uint64_t burst = 0;
    bool nodelay = false;
    bool bad = false;
    for (const Arg& a : d->args) {
      if (a.text.starts_with("zone="))
        zone = a.text.substr(5);
      else if (a.text.starts_with("burst=")) {
        auto b = parseSize(a.text.substr(6));
        if (!b || a.text.find_first_not_of("0123456789", 6) != std::string::npos || *b > 1000000)
          bad = true;
        else
          burst = *b;
      } else if (a.text == "nodelay") {
        nodelay = true;
      } else {
        bad = true;  // delay=N, dry_run ...
      }
    }
    auto it = zones_.find(zone);
    if (it == zones_.end()) {
      tracker_.skip(*d, "no limit_req_zone named '" + zone + "'");
      continue;
    }
    if (bad) {
      tracker_.skip(*d, "only zone=, burst= and nodelay are converted");
      continue;
    }
    const Zone& z = it->second;
    if (!z.keyError.empty()) {
      tracker_.skip(*d, z.keyError);
      tracker_.skip(*z.d, z.keyError);
      continue;
    }
    std::string rate;
    uint64_t n = 0;
    if (z.perSecond != 0) {
      rate = std::to_string(z.perSecond) + "/s";
      n = z.perSecond;
    } else if (z.perMinute % 60 == 0) {
      rate = std::to_string(z.perMinute / 60) + "/s";
      n = z.perMinute / 60;
    } else {
      rate = std::to_string(z.perMinute) + "/m";
      n = z.perMinute;
    }
    if (n == 1)
      tracker_.converted(*z.d);
    else
      tracker_.differs(*z.d, "Sluice's bucket holds rate + burst requests at once (" +
                                 std::to_string(n) +
                                 " + burst) where nginx's holds burst + 1; "
                                 "the refill rate is the same");
    std::vector<std::string> diffs;
    if (!nodelay && burst > 0)
      diffs.push_back(
          "without nodelay nginx delays the requests over the rate (up to burst); "
          "Sluice answers them at once while the bucket has room (as nodelay)");
    std::string status = "503";
    if (const Directive* st = sc.last("limit_req_status")) {
      if (st->args.size() == 1) status = st->arg(0);
      tracker_.converted(*st);
    }
    if (status != "429")
      diffs.push_back(
          "Sluice answers 429 Too Many Requests (with Retry-After) where nginx "
          "answered " +
          status);
    MiddlewareOut mw;
    mw.name = zone + (burst != 0 ? "-burst" + std::to_string(burst) : "");
    mw.comments.push_back(from(*z.d));
    mw.keys = {{"type", tomlString("rate_limit")},
               {"rate", tomlString(rate)},
               {"burst", std::to_string(burst)},
               {"key", tomlString(z.key)},
               {"store", tomlString("local")}};
    const std::string name = uniqueMiddleware(mw);
    auto [prev, fresh] = zoneBursts_.emplace(zone, burst);
    if (!fresh && prev->second != burst)
      diffs.push_back(
          "nginx shares the zone's counters between every location; Sluice keeps "
          "one bucket per middleware, and this burst needs its own");
    r.middleware.push_back(name);
    tracker_.outcome(*d, diffs);
  }
}

void Converter::headerPolicy(const Scope& sc, bool proxied, RouteOut& r) {
  std::vector<std::pair<std::string, std::string>> requestSet, responseAdd;
  std::vector<std::string> requestRemove, responseRemove;
  std::string unknown;
  if (proxied) {
    for (const Directive* d : sc.all("proxy_set_header")) {
      if (d->args.size() != 2) {
        tracker_.skip(*d, "expected a name and a value");
        continue;
      }
      const std::string& name = d->arg(0);
      const std::string& value = d->arg(1);
      const std::string ln = lower(name);
      auto builtIn = [&](std::initializer_list<std::string_view> same, const std::string& what) {
        for (auto v : same)
          if (value == v) {
            tracker_.converted(*d);
            return;
          }
        tracker_.differs(*d, what);
      };
      if (ln == "host") {
        if (value == "$proxy_host" || value == "$upstream_addr")
          tracker_.differs(*d,
                           "Sluice forwards the client's Host header; it cannot send the "
                           "upstream's name");
        else
          builtIn({"$host", "$http_host"},
                  "Sluice forwards the client's Host header as sent; it "
                  "cannot be set to '" +
                      value + "'");
      } else if (ln == "x-forwarded-for") {
        builtIn({"$proxy_add_x_forwarded_for"},
                "Sluice appends the client address to X-Forwarded-For itself");
      } else if (ln == "x-forwarded-proto") {
        builtIn({"$scheme"}, "Sluice sets X-Forwarded-Proto to the client connection's scheme");
      } else if (ln == "x-forwarded-host") {
        builtIn({"$host", "$http_host", "$server_name"},
                "Sluice sets X-Forwarded-Host to the client's Host header");
      } else if (ln == "x-request-id") {
        builtIn({"$request_id"},
                "Sluice sets X-Request-Id itself (kept from the client when "
                "sane, else generated)");
      } else if (ln == "upgrade") {
        builtIn({"$http_upgrade"}, "Sluice forwards WebSocket upgrades itself");
      } else if (ln == "connection") {
        bool idiom = value.empty() || lower(value) == "upgrade" || lower(value) == "keep-alive" ||
                     (value.starts_with("$") && upgradeMaps_.count(value.substr(1)) != 0);
        if (idiom)
          tracker_.converted(*d);
        else
          tracker_.differs(*d,
                           "Sluice manages Connection to the backend itself (keep-alive, "
                           "WebSocket upgrades)");
      } else if (proxyOwned(ln) || !isToken(name)) {
        tracker_.skip(*d, "Sluice manages " + name + " itself; it cannot be set");
      } else if (value.empty()) {
        requestRemove.push_back(name);
        tracker_.converted(*d);
      } else if (auto v = translateVariables(value, kHeaderVars, unknown);
                 v && v->find_first_of("\r\n") == std::string::npos &&
                 value.find_first_of("{}") == std::string::npos) {
        requestSet.emplace_back(name, *v);
        tracker_.converted(*d);
      } else {
        tracker_.skip(*d, v ? "the value has characters Sluice's templates cannot carry"
                            : "the value uses " + unknown +
                                  "; Sluice's header templates have "
                                  "$remote_addr, $host, $scheme and $request_id only");
      }
    }
    for (const Directive* d : sc.all("proxy_hide_header")) {
      if (d->args.size() == 1 && isToken(d->arg(0)) && !proxyOwned(lower(d->arg(0)))) {
        responseRemove.push_back(d->arg(0));
        tracker_.converted(*d);
      } else {
        tracker_.skip(*d, "Sluice manages this header itself");
      }
    }
  }
  for (const Directive* d : sc.all("add_header")) {
    if (liftedHsts_.count(d) != 0) continue;  // the listener's hsts
    const bool always = d->args.size() == 3 && d->arg(2) == "always";
    if (d->args.size() != 2 && !always) {
      tracker_.skip(*d, "expected a name, a value and optionally always");
      continue;
    }
    const std::string& name = d->arg(0);
    const std::string& value = d->arg(1);
    if (r.stat && lower(name) == "cache-control" && r.stat->cacheControl.empty() &&
        findVariables(value).empty() && value.find_first_of("\r\n") == std::string::npos) {
      r.stat->cacheControl = value;
      tracker_.converted(*d);
      continue;
    }
    auto v = translateVariables(value, kHeaderVars, unknown);
    if (proxyOwned(lower(name)) || !isToken(name)) {
      tracker_.skip(*d, "Sluice manages " + name + " itself");
    } else if (!v || value.find_first_of("{}") != std::string::npos ||
               v->find_first_of("\r\n") != std::string::npos) {
      tracker_.skip(*d, v ? "the value has characters Sluice's templates cannot carry"
                          : "the value uses " + unknown +
                                "; Sluice's header templates have $remote_addr, $host, $scheme "
                                "and $request_id only");
    } else {
      responseAdd.emplace_back(name, *v);
      if (always)
        tracker_.converted(*d);
      else
        tracker_.differs(*d,
                         "without always nginx adds it to 2xx and 3xx answers only; Sluice "
                         "adds it to every answer of the route");
    }
  }
  if (requestSet.empty() && requestRemove.empty() && responseAdd.empty() && responseRemove.empty())
    return;
  auto table = [](const std::vector<std::pair<std::string, std::string>>& kv) {
    std::string s = "{ ";
    for (size_t i = 0; i < kv.size(); ++i)
      s += (i ? ", " : "") + tomlString(kv[i].first) + " = " + tomlString(kv[i].second);
    return s + " }";
  };
  auto list = [](const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + tomlString(v[i]);
    return s + "]";
  };
  MiddlewareOut mw;
  mw.name = "headers-" + r.hint;
  mw.keys.emplace_back("type", tomlString("headers"));
  if (!requestSet.empty()) mw.keys.emplace_back("request_set", table(requestSet));
  if (!requestRemove.empty()) mw.keys.emplace_back("request_remove", list(requestRemove));
  if (!responseAdd.empty()) mw.keys.emplace_back("response_add", table(responseAdd));
  if (!responseRemove.empty()) mw.keys.emplace_back("response_remove", list(responseRemove));
  r.middleware.push_back(uniqueMiddleware(mw));
}

std::string Converter::uniqueMiddleware(MiddlewareOut m) {
  std::string identity;
  for (const auto& [k, v] : m.keys) identity += k + "=" + v + "\n";
  for (const MiddlewareOut& e : middleware_)
    if (e.identity == identity) return e.name;
  m.identity = identity;
  std::string base;
  for (char c : m.name) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')
      base.push_back(c);
    else if (!base.empty() && base.back() != '-')
      base.push_back('-');
  }
  while (!base.empty() && base.back() == '-') base.pop_back();
  if (base.empty()) base = "mw";
  std::string name = base;
  for (int n = 2;; ++n) {
    bool taken = false;
    for (const MiddlewareOut& e : middleware_) taken = taken || e.name == name;
    if (!taken) break;
    name = base + "-" + std::to_string(n);
  }
  m.name = name;
  middleware_.push_back(std::move(m));
  return name;
}

}  // namespace sluice::config::nginx
