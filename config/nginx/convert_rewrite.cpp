// nginx `rewrite` -> routes: fixed redirects, server-level rewrites as pattern routes ahead of
// the locations, and static-file locations (root, alias, index, try_files).
#include <cctype>

#include "config/nginx/converter.h"

namespace sluice::config::nginx {

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

}  // namespace sluice::config::nginx
