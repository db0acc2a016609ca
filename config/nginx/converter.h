// Inside the nginx converter (config/nginx/convert*.cpp): what it knows about every directive
// (Tracker), nginx's inheritance of directives from http to server to location (Scope), the
// Sluice configuration being built (Out*), and the Converter that fills it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/nginx/convert.h"
#include "config/nginx/values.h"

namespace sluice::config::nginx {

// What became of each directive. Every directive read ends in one state; one left Unseen at
// the end gets a generic "not converted" warning, so nothing is dropped without a word.
enum class Fate { Unseen, Converted, NoEffect, Differs, NotConverted };

// What nginx does with a directive the converter has nothing to write for: its fate and the
// reason the report gives (known_directives.cpp); nullptr for a directive not in that list.
struct KnownDirective {
  std::string_view name;
  Fate fate;
  std::string_view why;
};
const KnownDirective* knownDirective(std::string_view name);

class Tracker {
 public:
  // Numbers every directive (file order, includes expanded) and counts them. The entries of
  // `types`, `map` and similar tables are not directives and are not counted.
  void index(const std::vector<Directive>& list);

  void converted(const Directive& d);
  // Converted, but Sluice behaves differently: a warning says how.
  void differs(const Directive& d, const std::string& how);
  // converted() when `differences` is empty, else differs() with all of them.
  void outcome(const Directive& d, const std::vector<std::string>& differences);
  // Not converted (changes behaviour): a warning says why and what Sluice does instead.
  void skip(const Directive& d, const std::string& why);
  // Not converted, without effect in Sluice: a note.
  void noEffect(const Directive& d, const std::string& why);
  // `d` and everything inside it not converted, with one warning on `d`.
  void skipBlock(const Directive& d, const std::string& why);
  Fate fate(const Directive& d) const;

  // Everything still Unseen gets a warning; fills the counts and the sorted diagnostics.
  void finish(ConvertResult& res);

 private:
  void mark(const Directive& d, Fate f);
  void markTree(const Directive& d, Fate f);
  void add(std::vector<std::pair<size_t, Diag>>& list, const Directive& d, std::string msg);
  void walk(const std::vector<Directive>& list, const Directive* parent, bool counted);
  const Directive* parentOf(const Directive* d) const;

  std::map<const Directive*, size_t> order_;
  std::map<const Directive*, const Directive*> parent_;
  std::map<const Directive*, Fate> fate_;
  std::vector<const Directive*> counted_;
  std::vector<std::pair<size_t, Diag>> warnings_, notes_;
  std::set<std::string> seen_;  // FILE:LINE + message, to say each thing once
};

// The directives of one level (http, server or location) by name, and its parent level.
// nginx inherits a directive from the nearest enclosing level that has it, and a level that
// has a directive at all (even once, for list directives like proxy_set_header and
// add_header) inherits none of the parent's.
class Scope {
 public:
  explicit Scope(const Scope* parent) : parent_(parent) {}
  void add(const Directive& d) { at_[d.name].push_back(&d); }
  // Every occurrence at the nearest level that has `name`.
  std::vector<const Directive*> all(std::string_view name) const;
  // The effective one (the last occurrence at the nearest level), or nullptr.
  const Directive* last(std::string_view name) const;
  bool here(std::string_view name) const { return at_.find(name) != at_.end(); }
  const Scope* parent() const { return parent_; }

 private:
  const Scope* parent_;
  std::map<std::string, std::vector<const Directive*>, std::less<>> at_;
};

// ---- what is being built ----------------------------------------------------------------

struct ReturnOut {
  int status = 0;
  std::string location;  // Sluice template ({host}, {uri}, {scheme})
  std::string body;
  bool hasBody = false;
  std::string contentType;  // "" = Sluice's default (text/plain)
};

struct StaticOut {
  std::string root;
  std::string alias;
  std::vector<std::string> index;  // empty = Sluice's default ["index.html"]
  std::vector<std::string> tryFiles;
  std::string cacheControl;
  bool precompressed = false;
};

struct RouteOut {
  enum class Match { Path, Exact, Regex };
  std::string hint;  // what the route name is made of: "api", "login", "regex-2"
  std::string name;  // final, unique
  std::string host;
  Match match = Match::Path;
  std::string path;  // the prefix, exact path or pattern
  bool prefixPriority = false;
  bool stripPrefix = false;
  std::string rewrite;
  std::string pool;
  std::optional<ReturnOut> ret;
  std::optional<StaticOut> stat;
  std::vector<std::string> middleware;
  std::vector<std::string> comments;  // lines above the route
  // 0: before the other routes of its host (prefixes and exact paths written as patterns),
  // 1: in file order, 2: after them (prefixes written as patterns), 3: the catch-all.
  int order = 1;
};

struct BackendOut {
  std::string address;
  uint32_t weight = 1;
  std::string disabled;  // set: written as a comment, with this reason
};

struct PoolOut {
  std::string name;
  std::vector<BackendOut> backends;
  std::string balance;  // "" = round_robin
  std::string hashKey;
  std::optional<int64_t> connectMs, responseMs, idleMs;
  std::optional<int> retries;
  std::optional<uint64_t> maxConnections;
  std::optional<uint64_t> outlierFailures;
  std::optional<int64_t> outlierMs;
  bool tls = false;
  std::optional<bool> tlsVerify;
  std::string tlsCa, tlsServerName;
  std::vector<std::string> comments;
  std::map<std::string, std::string> keyComments;  // key -> trailing comment
  std::string base;  // the upstream (or address) this pool is a variant of
};

struct MiddlewareOut {
  std::string name;
  std::vector<std::pair<std::string, std::string>> keys;  // key -> TOML value text
  std::vector<std::string> comments;
  std::string identity;  // equal identities = one middleware
};

struct ListenerOut {
  std::string name;
  std::string address;
  int port = 0;
  bool ipv6 = false;
  bool tls = false;
  std::vector<std::pair<std::string, std::string>> certs;  // (cert, key)
  std::string minVersion;
  std::string hsts;
  std::optional<bool> sessionTickets;
  std::optional<int64_t> sessionTimeoutMs;  // ssl_session_timeout, when not the default 5m
  std::string redirect;                     // redirect_https template
  std::vector<std::string> comments;
  std::vector<size_t> servers;  // indexes into Converter::servers_, file order
  size_t defaultServer = 0;
};

struct ServerInfo {
  const Directive* d = nullptr;
  std::unique_ptr<Scope> scope;
  std::vector<std::pair<ListenSpec, const Directive*>> listens;
  std::vector<std::string> hosts;      // names a route can use: "a.example.com", "*.example.com"
  std::string label;                   // first usable name, else "server"
  std::optional<ReturnOut> returnAll;  // a server-level `return` answers every request
  const Directive* returnAllAt = nullptr;
  std::vector<const Directive*> rewrites;   // server-level rewrites, in order
  std::vector<RouteOut> routes;             // without host yet
  std::vector<const Directive*> locations;  // of this server, file order (not nested ones)
  bool hasRootLocation = false;             // `location /` or `location ^~ /`
  bool sslOn = false;                       // `ssl on;`
  // if ($scheme = http) { return 3xx https://...; }: the redirect of its plain listeners.
  std::optional<ReturnOut> plainRedirect;
  const Directive* plainRedirectAt = nullptr;  // the return
  const Directive* plainRedirectIf = nullptr;  // the if
};

// A location reduced to what matching needs.
struct LocationMatch {
  enum class Kind { Prefix, Priority, Exact, Regex, Named, Invalid };
  Kind kind = Kind::Invalid;
  std::string path;  // the prefix / exact path / PCRE pattern / @name
  bool caseless = false;
};
LocationMatch parseLocation(const Directive& d);

class Converter {
 public:
  explicit Converter(ConvertOptions opt) : opt_(std::move(opt)) {}
  ConvertResult run(const std::vector<Directive>& main);

 private:
  // convert.cpp: contexts, global settings, servers, listeners and host groups
  void mainContext(const std::vector<Directive>& list);
  void events(const Directive& d);
  void errorLog(const Directive& d, bool mainLevel);
  void http(const Directive& d);
  void mapBlock(const Directive& d);
  void limitReqZone(const Directive& d);
  void globalSettings();
  void bodySize();
  // set_real_ip_from / real_ip_header X-Forwarded-For / real_ip_recursive -> trusted_proxies.
  void realIp();
  // Every `name` directive of the http block, in servers, locations and ifs too, in file order.
  std::vector<const Directive*> everywhere(std::string_view name) const;
  void accessLog();
  void accessLogDirective(const Directive& d);
  void server(const Directive& d);
  void serverNames(ServerInfo& s, const Directive& d);
  void serverRewritePhase(ServerInfo& s);
  bool schemeRedirect(ServerInfo& s, const Directive& c);
  void listeners();
  void listenerTls(ListenerOut& l);
  void liftHsts();
  void hostGroups();
  void emitServerRoutes(ServerInfo& s, const std::string& host, bool hostless, bool labelled);
  RouteOut catchAll(ServerInfo& s);
  void sweep(const std::vector<Directive>& list, bool inHttp);
  void unusedUpstreams();
  void nameRoutes();

  // convert_location.cpp: one location -> routes
  void locations(ServerInfo& s);
  void location(ServerInfo& s, const Directive& loc, const Scope& parent);
  bool proxyRoute(ServerInfo& s, const Directive& loc, const LocationMatch& m, const Scope& sc,
                  const Directive& pp, RouteOut& r);
  bool returnRoute(ServerInfo& s, const Directive& d, const Scope& sc, RouteOut& r);
  void locationRewrite(ServerInfo& s, const Directive& loc, const LocationMatch& m,
                       const Directive& rw, const Scope& sc, std::vector<RouteOut>& extra);
  bool redirectRewrite(ServerInfo& s, const Directive& rw, RouteOut& r);
  bool rewriteTarget(const Directive& rw, const std::string& pattern, const std::string& repl);
  void serverRewrite(ServerInfo& s, const Directive& rw);
  bool staticRoute(const ServerInfo* s, const Directive& loc, const LocationMatch& m,
                   const Scope& sc, RouteOut& r);
  void middlewareOf(const Scope& sc, bool answered, bool proxied, RouteOut& r);
  void rateLimits(const Scope& sc, RouteOut& r);
  void headerPolicy(const Scope& sc, bool proxied, RouteOut& r);
  std::optional<std::string> redirectTarget(const ServerInfo& s, const Directive& d,
                                            std::string_view url);
  void matchRoute(const LocationMatch& m, RouteOut& r);
  bool prefixAsRegexIsExact(const ServerInfo& s, const LocationMatch& m, std::string& why);
  const Directive* findLocation(const ServerInfo& s, std::string_view uri) const;
  std::string uniqueMiddleware(MiddlewareOut m);

  // convert_upstream.cpp: upstream blocks, proxy_pass targets, pools
  void upstream(const Directive& d);
  // The pool for `proxy_pass` in a location with scope `sc`; "" when it cannot be converted
  // (the reason is on the directive). `uri` receives the URI part of proxy_pass.
  std::string poolFor(const Directive& proxyPass, const Scope& sc, std::string& uri, bool& hasUri);
  std::string poolVariant(const std::string& base, const PoolOut& wanted);

  // emit.cpp
  std::string toml(const ConvertResult& counts) const;

  // helpers
  std::string display(const Where& w) const;   // "nginx.conf:12"
  std::string from(const Directive& d) const;  // "nginx.conf:12: location /api/"
  std::string resolvePath(const std::string& p, bool confRelative) const;

  ConvertOptions opt_;
  Tracker tracker_;
  std::string confDir_;  // the folder of the main file (nginx's conf prefix)
  const Directive* http_ = nullptr;
  std::unique_ptr<Scope> httpScope_;

  // [server] and [log]
  std::optional<std::string> workers_, pidFile_, maxBody_, maxHeader_, headerTimeout_, idleTimeout_,
      shutdownTimeout_, logAccess_, logFormat_, logLevel_;
  std::vector<std::string> trustedProxies_;
  std::map<std::string, std::string> serverComments_;  // key -> where it came from

  std::vector<ListenerOut> listeners_;
  std::map<std::string, PoolOut> pools_;
  std::vector<std::string> poolOrder_;
  struct UpstreamInfo {
    const Directive* d = nullptr;
    PoolOut pool;       // what the upstream block says (name = the upstream's)
    size_t usable = 0;  // servers that are neither backup nor down
  };
  std::map<std::string, UpstreamInfo> upstreams_;
  std::vector<MiddlewareOut> middleware_;
  struct Zone {
    const Directive* d = nullptr;
    std::string key;  // Sluice key: "ip", "header:X", "cookie:x"
    std::string keyError;
    uint64_t perSecond = 0, perMinute = 0;  // one of them
  };
  std::map<std::string, Zone> zones_;
  std::map<std::string, uint64_t> zoneBursts_;  // the first burst each zone was used with
  std::set<std::string> upgradeMaps_;           // variables of the WebSocket `map` idiom
  std::map<std::string, const Directive*> otherMaps_;
  std::set<const Directive*> liftedHsts_;  // add_header STS written as a listener's hsts
  std::vector<ServerInfo> servers_;
  std::vector<RouteOut> routes_;  // final, with hosts and names
};

// TOML spelling of a string: a basic string with escapes.
std::string tomlString(std::string_view s);
// A pattern: a literal string '...' when possible (backslashes stay as written).
std::string tomlPattern(std::string_view s);

}  // namespace sluice::config::nginx
