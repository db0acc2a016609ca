// The converter's server blocks: server_name, the rewrite phase of a server, and the host
// groups that stand for nginx's server_name matching (catch-all routes, route names).
#include <algorithm>
#include <cctype>

#include "config/nginx/converter.h"

namespace sluice::config::nginx {

void Converter::server(const Directive& d) {
  ServerInfo s;
  s.d = &d;
  s.scope = std::make_unique<Scope>(httpScope_.get());
  tracker_.converted(d);
  for (const Directive& c : d.children) {
    const std::string& n = c.name;
    if (n == "listen") {
      ListenSpec spec;
      std::vector<std::string> args;
      for (const Arg& a : c.args) args.push_back(a.text);
      std::string err;
      if (!parseListen(args, spec, err)) {
        tracker_.skip(c, err);
        continue;
      }
      std::vector<std::string> notes;
      if (spec.http2)
        notes.push_back(
            "HTTP/2 is not supported yet: clients speak HTTP/1.1 (ALPN offers "
            "http/1.1)");
      if (!spec.unsupported.empty()) {
        std::string list;
        for (const auto& u : spec.unsupported) list += (list.empty() ? "" : ", ") + u;
        notes.push_back("parameters left out: " + list);
      }
      if (spec.ipv6 && !spec.ipv6only)
        notes.push_back(
            "ipv6only=off: Sluice's IPv6 listeners accept IPv6 only; add a "
            "listener for 0.0.0.0 as well");
      if (spec.localhost) notes.push_back("'localhost' is written as 127.0.0.1");
      tracker_.outcome(c, notes);
      s.listens.emplace_back(spec, &c);
    } else if (n == "server_name") {
      serverNames(s, c);
    } else if (n == "location") {
      if (c.block) s.locations.push_back(&c);
    } else if (n == "rewrite" || n == "return" || n == "if" || n == "set" || n == "break") {
      continue;  // the rewrite phase, in order (serverRewritePhase)
    } else if (n == "ssl" && c.args.size() == 1) {
      if (c.arg(0) == "on") {
        for (auto& l : s.listens) l.first.ssl = true;
        s.sslOn = true;
      }
      tracker_.converted(c);
    } else if (n == "error_log") {
      errorLog(c, false);
    } else {
      s.scope->add(c);
    }
  }
  if (s.sslOn)
    for (auto& l : s.listens) l.first.ssl = true;
  if (s.listens.empty()) {
    bool any = false;
    for (const Directive& c : d.children) any = any || c.name == "listen";
    if (!any) {
      ListenSpec spec;
      spec.address = "0.0.0.0:80";
      spec.port = 80;
      spec.ssl = s.sslOn;
      s.listens.emplace_back(spec, &d);
      tracker_.differs(d,
                       "no listen directive: nginx listens on *:80 when started as root "
                       "(*:8000 otherwise); the listener is 0.0.0.0:80");
    }
  }
  if (s.label.empty()) s.label = "server-" + std::to_string(d.at.line);
  serverRewritePhase(s);
  servers_.push_back(std::move(s));
}

void Converter::serverNames(ServerInfo& s, const Directive& d) {
  std::vector<std::string> problems;
  for (const Arg& a : d.args) {
    const std::string n = asciiLower(a.text);
    if (n.empty() || n == "_") continue;  // requests without Host / the catch-all convention
    if (n.starts_with("~")) {
      problems.push_back("'" + a.text + "' (regular-expression names are not supported)");
      continue;
    }
    if (n.find('$') != std::string::npos) {
      problems.push_back("'" + a.text + "' (variables are not supported)");
      continue;
    }
    std::vector<std::string> names;
    if (n.starts_with(".")) {
      names = {n.substr(1), "*" + n};
    } else {
      names = {n};
    }
    for (const std::string& h : names) {
      if (h.ends_with(".*") || h.find('*', h.starts_with("*.") ? 1 : 0) != std::string::npos) {
        problems.push_back("'" + a.text + "' (only leading wildcards *.domain are supported)");
        continue;
      }
      if (!isRouteHost(h)) {
        problems.push_back("'" + a.text + "' (not a host name Sluice routes on)");
        continue;
      }
      if (std::find(s.hosts.begin(), s.hosts.end(), h) == s.hosts.end()) s.hosts.push_back(h);
    }
  }
  if (s.label.empty() && !s.hosts.empty()) s.label = s.hosts.front();
  if (problems.empty()) {
    tracker_.converted(d);
    return;
  }
  std::string list;
  for (const auto& p : problems) list += (list.empty() ? "" : ", ") + p;
  if (s.hosts.empty())
    tracker_.skip(d, list);
  else
    tracker_.differs(d, "names left out: " + list);
}

// The server-level rewrite phase runs for every request before any location is chosen: a
// `return` first in it answers everything; `rewrite`s become pattern routes (locations.cpp).
void Converter::serverRewritePhase(ServerInfo& s) {
  for (const Directive& c : s.d->children) {
    const std::string& n = c.name;
    if (n != "rewrite" && n != "return" && n != "if" && n != "set" && n != "break") continue;
    if (s.returnAll) {
      tracker_.noEffect(c, "never reached: the return at " + display(s.returnAllAt->at) +
                               " answers every request first");
      continue;
    }
    if (n == "return") {
      RouteOut r;
      if (returnRoute(s, c, *s.scope, r)) {
        s.returnAll = r.ret;
        s.returnAllAt = &c;
      }
    } else if (n == "rewrite") {
      s.rewrites.push_back(&c);
    } else if (n == "if") {
      if (!schemeRedirect(s, c))
        tracker_.skipBlock(c,
                           "if blocks are not converted (Sluice routes on host, path and "
                           "method only)");
    } else {
      tracker_.skip(c, "variables and rewrite-phase control are not converted");
    }
  }
}

// if ($scheme = http) { return 301 https://$host$request_uri; } in a server that listens with
// and without TLS: the redirect of its plain listeners (decided in listeners()).
bool Converter::schemeRedirect(ServerInfo& s, const Directive& c) {
  std::string cond;
  for (const Arg& a : c.args) cond += a.text;
  const bool plainOnly = cond == "($scheme=http)" || cond == "($scheme!=https)" ||
                         cond == "($scheme=\"http\")" || cond == "($scheme!=\"https\")";
  bool tls = false, plain = false;
  for (const auto& [spec, at] : s.listens) (spec.ssl ? tls : plain) = true;
  if (!plainOnly || !tls || !plain || c.children.size() != 1 || c.children[0].name != "return")
    return false;
  RouteOut r;
  if (!returnRoute(s, c.children[0], *s.scope, r) || r.ret->location.empty()) return false;
  s.plainRedirect = r.ret;
  s.plainRedirectAt = &c.children[0];
  s.plainRedirectIf = &c;
  return true;
}

namespace {

// Does wildcard `w` ("*.example.com") take requests for `name` before `name`'s own group?
bool covers(const std::string& w, const std::string& name) {
  if (!w.starts_with("*.") || w == name) return false;
  const std::string suffix = w.substr(1);  // ".example.com"
  std::string n = name.starts_with("*.") ? name.substr(1) : name;
  if (name.starts_with("*.")) return n.size() > suffix.size() && n.ends_with(suffix);
  return n.size() > suffix.size() && n.ends_with(suffix);
}

}  // namespace

void Converter::hostGroups() {
  auto onContentListener = [&](size_t i) {
    for (const auto& l : listeners_)
      if (l.redirect.empty() && std::find(l.servers.begin(), l.servers.end(), i) != l.servers.end())
        return true;
    return false;
  };
  std::optional<size_t> hostless;
  for (const auto& l : listeners_) {
    if (!l.redirect.empty()) continue;
    if (!hostless) {
      hostless = l.defaultServer;
    } else if (l.defaultServer != *hostless) {
      const ServerInfo& s = servers_[l.defaultServer];
      tracker_.differs(*s.d, "default server of " + l.address +
                                 ": Sluice's routes are not per listener; requests whose Host "
                                 "no server_name matches go to the routes without host, which "
                                 "come from the server at " +
                                 display(servers_[*hostless].d->at));
    }
  }
  std::map<std::string, size_t> claimed;
  std::vector<std::vector<std::string>> names(servers_.size());
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (!onContentListener(i)) continue;
    for (const auto& h : servers_[i].hosts) {
      auto [it, fresh] = claimed.emplace(h, i);
      if (fresh) {
        names[i].push_back(h);
      } else if (it->second != i) {
        for (const Directive& c : servers_[i].d->children)
          if (c.name == "server_name")
            tracker_.differs(c, "'" + h + "' is also a name of the server at " +
                                    display(servers_[it->second].d->at) +
                                    ": Sluice's routes are not per listener, so that server's "
                                    "routes answer it on every listener");
      }
    }
  }
  // The groups: the default server's routes without host (and under those of its names that
  // another server's wildcard would take first), every other server's under each name.
  std::vector<std::pair<size_t, std::string>> groups;  // (server, host; "" = no host)
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (!onContentListener(i)) continue;
    if (hostless && *hostless == i) {
      groups.emplace_back(i, "");
      for (const auto& h : names[i]) {
        bool covered = false;
        for (size_t j = 0; j < servers_.size(); ++j)
          for (const auto& w : names[j]) covered = covered || (j != i && covers(w, h));
        if (covered) groups.emplace_back(i, h);
      }
    } else {
      for (const auto& h : names[i]) groups.emplace_back(i, h);
      if (names[i].empty())
        tracker_.skipBlock(*servers_[i].d,
                           "this server is not reachable in Sluice: it has no "
                           "server_name of its own and is not the default server");
    }
  }
  for (const auto& [i, host] : groups)
    emitServerRoutes(servers_[i], host, host.empty() && hostless && *hostless == i,
                     groups.size() > 1);
}

RouteOut Converter::catchAll(ServerInfo& s) {
  RouteOut r;
  r.hint = "other";
  r.match = RouteOut::Match::Path;
  r.path = "/";
  r.order = 3;
  if (const Directive* root = s.scope->last("root")) {
    LocationMatch m;
    m.kind = LocationMatch::Kind::Prefix;
    m.path = "/";
    r.comments.push_back("paths no location matches: nginx serves them from the server's root");
    if (staticRoute(nullptr, *s.d, m, *s.scope, r)) return r;
    (void)root;
  }
  ReturnOut ret;
  ret.status = 404;
  r.ret = ret;
  r.stat.reset();
  r.comments = {
      "paths no location of this server matches: nginx answers 404 (from its default "
      "root) and never asks another server"};
  return r;
}

void Converter::emitServerRoutes(ServerInfo& s, const std::string& host, bool hostless,
                                 bool labelled) {
  std::vector<RouteOut> list;
  if (s.returnAll) {
    RouteOut r;
    r.hint = "all";
    r.path = "/";
    r.ret = s.returnAll;
    r.comments.push_back(from(*s.returnAllAt));
    list.push_back(r);
  } else {
    list = s.routes;
    std::stable_sort(list.begin(), list.end(),
                     [](const RouteOut& a, const RouteOut& b) { return a.order < b.order; });
    if (!s.hasRootLocation && (!hostless || s.scope->last("root") != nullptr))
      list.push_back(catchAll(s));
  }
  const std::string label = host.starts_with("*.") ? "any." + host.substr(2) : host;
  for (RouteOut& r : list) {
    r.host = host;
    if (labelled) r.hint = (label.empty() ? std::string("default") : label) + "-" + r.hint;
    if (list.size() == 1 && r.comments.empty()) r.comments.push_back(from(*s.d));
    routes_.push_back(std::move(r));
  }
  if (!list.empty()) {
    std::string what = hostless ? "requests for any other host" : "server_name " + host;
    routes_[routes_.size() - list.size()].comments.insert(
        routes_[routes_.size() - list.size()].comments.begin(),
        "--- " + what + " (server at " + display(s.d->at) + ")");
  }
}

void Converter::unusedUpstreams() {
  for (const auto& [name, info] : upstreams_) {
    if (tracker_.fate(*info.d) != Fate::Unseen) continue;
    tracker_.noEffect(*info.d, "no converted location uses it, so it is not written");
    for (const Directive& c : info.d->children) tracker_.noEffect(c, "its upstream is not used");
  }
}

void Converter::nameRoutes() {
  std::set<std::string> used;
  for (RouteOut& r : routes_) {
    std::string base;
    for (char c : r.hint) {
      const bool ok =
          std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
      if (ok)
        base.push_back(c);
      else if (!base.empty() && base.back() != '-')
        base.push_back('-');
    }
    while (!base.empty() && base.back() == '-') base.pop_back();
    while (!base.empty() && base.front() == '-') base.erase(base.begin());
    if (base.empty()) base = "route";
    std::string name = base;
    for (int n = 2; used.count(name) != 0; ++n) name = base + "-" + std::to_string(n);
    used.insert(name);
    r.name = name;
  }
}

}  // namespace sluice::config::nginx
