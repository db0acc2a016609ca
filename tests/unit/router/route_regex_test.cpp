// Unit tests for path_regex routes in proxy/router/route_table: the nginx-like order (exact,
// prefix_priority prefix, regexes in file order, longest prefix), case-insensitive patterns,
// captures, rewrite expansion with the query, and fixed-answer Location templates.
#include <re2/re2.h>

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "proxy/router/route_table.h"

using namespace sluice::router;

namespace {

Route prefix(std::string name, std::string path, bool priority = false) {
  Route r;
  r.name = std::move(name);
  r.path = std::move(path);
  r.prefixPriority = priority;
  return r;
}

Route exactRoute(std::string name, std::string path) {
  Route r = prefix(std::move(name), std::move(path));
  r.exact = true;
  return r;
}

Route regexRoute(std::string name, const std::string& pattern, std::string rewrite = {},
                 std::vector<std::string> methods = {}, std::string host = {}) {
  Route r;
  r.name = std::move(name);
  r.path = pattern;
  std::string error;
  r.regex = compilePathRegex(pattern, error);
  REQUIRE_MESSAGE(r.regex != nullptr, error);
  r.regexGroups = r.regex->NumberOfCapturingGroups();
  r.rewrite = std::move(rewrite);
  r.methods = std::move(methods);
  r.host = std::move(host);
  return r;
}

std::string matchName(const RouteTable& t, std::string_view path, std::string_view method = "GET",
                      std::string_view host = "example.com") {
  const Route* r = t.match(host, path, method);
  return r ? r->name : "-";
}

// The upstream target a request would get: the route's rewrite expanded, or "-".
std::string rewritten(const RouteTable& t, std::string_view path, std::string_view query = {}) {
  Captures caps;
  const Route* r = t.match("example.com", path, "GET", &caps);
  if (r == nullptr || r->rewrite.empty()) return "-";
  std::string out = "garbage";
  expandRewrite(r->rewrite, caps, query, out);
  return out;
}

}  // namespace

TEST_SUITE("route_regex") {
  TEST_CASE("nginx order: exact, then ^~ longest prefix, then regexes, then longest prefix") {
    RouteTable t;
    t.build({prefix("root", "/"), prefix("static", "/static/", true), prefix("api", "/api/"),
             regexRoute("images", R"(\.(png|jpg)$)"), exactRoute("exact-logo", "/static/logo.png"),
             regexRoute("api-v", "^/api/v[0-9]+/"), regexRoute("api-v1", "^/api/v1/")});
    // Exact beats everything.
    CHECK(matchName(t, "/static/logo.png") == "exact-logo");
    // A prefix_priority prefix that is the longest match skips the regexes.
    CHECK(matchName(t, "/static/a.png") == "static");
    CHECK(matchName(t, "/static/a.css") == "static");
    // Otherwise the regexes in file order beat the longest (plain) prefix.
    CHECK(matchName(t, "/api/x.png") == "images");
    CHECK(matchName(t, "/api/v1/users") == "api-v");  // first in the file wins, not the longest
    CHECK(matchName(t, "/img/a.jpg") == "images");
    // No regex matches: the longest prefix.
    CHECK(matchName(t, "/api/users") == "api");
    CHECK(matchName(t, "/other") == "root");
  }

  TEST_CASE("prefix_priority only counts when it is the longest prefix (as nginx's ^~)") {
    RouteTable t;
    t.build({prefix("a", "/a/", true), prefix("ab", "/a/b/"), regexRoute("re", "c$")});
    CHECK(matchName(t, "/a/c") == "a");     // "/a/" is the longest: no regex tried
    CHECK(matchName(t, "/a/b/c") == "re");  // "/a/b/" is longer and plain: regexes first
    CHECK(matchName(t, "/a/b/d") == "ab");
  }

  TEST_CASE("regexes are searched (unanchored) in the raw path, without the query") {
    RouteTable t;
    t.build({regexRoute("php", R"(\.php$)"), regexRoute("mid", "admin")});
    CHECK(matchName(t, "/index.php") == "php");
    CHECK(matchName(t, "/index.php5") == "-");
    CHECK(matchName(t, "/x/admin/y") == "mid");
    CHECK(matchName(t, "/%41dmin") == "-");  // no percent-decoding
  }

  TEST_CASE("case: sensitive by default, (?i) makes a pattern insensitive") {
    RouteTable t;
    t.build({regexRoute("jpg", R"((?i)\.jpe?g$)"), regexRoute("gif", R"(\.gif$)")});
    CHECK(matchName(t, "/a.JPG") == "jpg");
    CHECK(matchName(t, "/a.jpeg") == "jpg");
    CHECK(matchName(t, "/a.gif") == "gif");
    CHECK(matchName(t, "/a.GIF") == "-");
  }

  TEST_CASE("methods and hosts apply to regex routes as to others") {
    RouteTable t;
    t.build({regexRoute("post", "^/p", {}, {"POST"}), regexRoute("any", "^/p"),
             regexRoute("host", "^/p", {}, {}, "api.example.com")});
    CHECK(matchName(t, "/p", "POST") == "post");
    CHECK(matchName(t, "/p", "GET") == "any");
    CHECK(matchName(t, "/p", "GET", "api.example.com") == "host");
  }

  TEST_CASE("captures and rewrite: $0..$9, unset groups, literal $, the query") {
    RouteTable t;
    t.build({regexRoute("v1", "^/api/v1/(users|teams)/([0-9]+)$", "/v2/$1?id=$2"),
             regexRoute("all", "^/old/(.*)", "/new/$1"),
             regexRoute("opt", "^/o(/x)?/(.*)$", "/o[$1][$2]$$x$"),
             regexRoute("whole", "^/w/.*", "/mirror$0"), regexRoute("drop", "^/d/(.*)", "/$1?"),
             regexRoute("none", "^/plain")});
    CHECK(rewritten(t, "/old/a/b", "?q=1&r=2") == "/new/a/b?q=1&r=2");
    CHECK(rewritten(t, "/old/", "") == "/new/");
    CHECK(rewritten(t, "/old/x", "?") == "/new/x");
    CHECK(rewritten(t, "/api/v1/teams/42", "") == "/v2/teams?id=42");
    CHECK(rewritten(t, "/api/v1/teams/42", "?page=3") == "/v2/teams?id=42&page=3");
    CHECK(rewritten(t, "/o/rest") == "/o[][rest]$$x$");
    CHECK(rewritten(t, "/o/x/rest") == "/o[/x][rest]$$x$");
    CHECK(rewritten(t, "/w/a") == "/mirror/w/a");
    CHECK(rewritten(t, "/d/k", "?gone=1") == "/k");
    CHECK(rewritten(t, "/plain") == "-");
  }

  TEST_CASE("expandRewrite: groups past the captured count are empty") {
    Captures caps;
    caps.group[0] = "/a";
    caps.count = 1;
    std::string out;
    expandRewrite("/x$0$1$9", caps, "?k", out);
    CHECK(out == "/x/a?k");
  }

  TEST_CASE("a catastrophic-backtracking pattern stays linear") {
    RouteTable t;
    t.build({regexRoute("evil", "^/(a+)+$"), prefix("root", "/")});
    const std::string path = "/" + std::string(100000, 'a') + "b";
    CHECK(matchName(t, path) == "root");
    CHECK(matchName(t, "/aaaa") == "evil");
  }

  TEST_CASE("expandLocation: {host}, {uri}, {scheme}, literal text") {
    std::string out = "garbage";
    expandLocation("https://{host}{uri}", "example.com", "/a?b=1", "http", out);
    CHECK(out == "https://example.com/a?b=1");
    expandLocation("{scheme}://www.{host}:8443/x{uri}", "example.com", "/", "https", out);
    CHECK(out == "https://www.example.com:8443/x/");
    expandLocation("/fixed", "h", "/u", "http", out);
    CHECK(out == "/fixed");
  }

  TEST_CASE("compilePathRegex reports RE2's message") {
    std::string error;
    CHECK(compilePathRegex("^/(a", error) == nullptr);
    CHECK(error.find("missing )") != std::string::npos);
  }
}
