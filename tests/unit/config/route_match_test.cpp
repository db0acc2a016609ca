// Unit tests for the [[route]] keys path_regex, prefix_priority, rewrite and return: what the
// loader keeps, and every error with its position.
#include <doctest/doctest.h>

#include <string>

#include "config/loader.h"
#include "tests/unit/config/load_helpers.h"

using namespace sluice::config;
using namespace sluice::config::testing;

namespace {

// kListenerAndPool is lines 1-5; "[[route]]" is line 6, so the route's keys start at line 7.
LoadResult loadRoute(const std::string& keys) {
  return loadAfterBase("[[route]]\n" + keys, {});
}

}  // namespace

TEST_CASE("path_regex, prefix_priority and rewrite are loaded") {
  auto r = loadAfterBase(R"([[route]]
name = "img"
path_regex = '(?i)\.(png|jpe?g)$'
pool = "p"
[[route]]
name = "v1"
path_regex = '^/api/v1/(.*)$'
rewrite = "/v2/$1"
pool = "p"
[[route]]
name = "static"
path = "/static/"
prefix_priority = true
pool = "p"
)",
                         {});
  INFO(dump(r.errors));
  REQUIRE(r.config.has_value());
  const auto& routes = r.config->routes;
  REQUIRE(routes.size() == 3);
  CHECK(routes[0].pathRegex == R"((?i)\.(png|jpe?g)$)");
  CHECK(routes[0].path.empty());
  CHECK(routes[1].rewrite == "/v2/$1");
  CHECK(routes[2].prefixPriority);
  CHECK(routes[2].path == "/static/");
}

TEST_CASE("path_regex errors carry the position and RE2's message") {
  auto r = loadRoute("name = \"r\"\npath_regex = \"^/(a\"\npool = \"p\"\n");
  expectError(r, "route[0].path_regex: invalid regular expression '^/(a': missing ): ^/(a", 8, 14);

  r = loadRoute("name = \"r\"\npath_regex = '(?<n>x)'\npool = \"p\"\n");
  expectError(r, "route[0].path_regex: invalid regular expression", 8, 14);

  r = loadRoute("name = \"r\"\npath_regex = \"\"\npool = \"p\"\n");
  expectError(r, "route[0].path_regex: must not be empty", 8, 14);

  r = loadRoute("name = \"r\"\npath = \"/\"\npath_regex = \"^/x\"\npool = \"p\"\n");
  expectError(r, "route[0]: use exactly one of 'path', 'path_exact' and 'path_regex'", 9, 14);

  r = loadRoute("name = \"r\"\npath_regex = \"^/x\"\nprefix_priority = true\npool = \"p\"\n");
  expectError(r, "route[0].prefix_priority: only allowed with 'path'", 9, 19);

  r = loadRoute("name = \"r\"\npath_regex = \"^/x\"\nstrip_prefix = true\npool = \"p\"\n");
  expectError(r, "route[0].strip_prefix: only allowed with 'path'", 9, 16);
}

TEST_CASE("rewrite errors") {
  auto r = loadRoute("name = \"r\"\npath_regex = '^/(a)/(b)'\nrewrite = \"/$3\"\npool = \"p\"\n");
  expectError(r, "route[0].rewrite: '$3' but path_regex has 2 capturing groups", 9, 11);

  r = loadRoute("name = \"r\"\npath_regex = '^/a'\nrewrite = \"/$1\"\npool = \"p\"\n");
  expectError(r, "route[0].rewrite: '$1' but path_regex has 0 capturing groups", 9, 11);

  r = loadRoute("name = \"r\"\npath = \"/a\"\nrewrite = \"/b\"\npool = \"p\"\n");
  expectError(r, "route[0].rewrite: only allowed with 'path_regex'", 9, 11);

  r = loadRoute("name = \"r\"\npath_regex = '^/a'\nrewrite = \"b\"\npool = \"p\"\n");
  expectError(r, "route[0].rewrite: must start with '/'", 9, 11);

  r = loadRoute("name = \"r\"\npath_regex = '^/a'\nrewrite = \"/a b\"\npool = \"p\"\n");
  expectError(r, "route[0].rewrite: must not contain spaces", 9, 11);

  // '$' before a non-digit is literal; $0 is always there.
  r = loadRoute("name = \"r\"\npath_regex = '^/a'\nrewrite = \"/x$0$y$\"\npool = \"p\"\n");
  INFO(dump(r.errors));
  CHECK(r.config.has_value());
}

TEST_CASE("return routes: redirects, bodies, 204") {
  auto r = loadAfterBase(R"([[route]]
name = "to-https"
path = "/"
return = { status = 301, location = "https://{host}{uri}" }
[[route]]
name = "hello"
path_exact = "/hello"
return = { status = 200, body = "hi\n" }
[[route]]
name = "json"
path_exact = "/j"
return = { status = 503, body = '{"down":true}', content_type = "application/json" }
[[route]]
name = "empty"
path_exact = "/e"
return = { status = 204 }
)",
                         {});
  INFO(dump(r.errors));
  REQUIRE(r.config.has_value());
  const auto& routes = r.config->routes;
  REQUIRE(routes.size() == 4);
  CHECK(routes[0].ret.enabled);
  CHECK(routes[0].ret.status == 301);
  CHECK(routes[0].ret.location == "https://{host}{uri}");
  CHECK(routes[0].pool.empty());
  CHECK(routes[1].ret.body == "hi\n");
  CHECK(routes[1].ret.contentType == "text/plain");
  CHECK(routes[2].ret.contentType == "application/json");
  CHECK(routes[3].ret.status == 204);
  CHECK(routes[3].ret.body.empty());
}

TEST_CASE("return errors") {
  auto r = loadRoute("name = \"r\"\npath = \"/\"\nreturn = { status = 302 }\n");
  expectError(r, "route[0].return: a 302 needs 'location'", 9, 10);

  r = loadRoute("name = \"r\"\npath = \"/\"\nreturn = { status = 301, location = \"/{path}\" }\n");
  expectError(r,
              "route[0].return.location: unknown placeholder '{path}' (expected {host}, {uri} "
              "or {scheme}",
              9, 37);

  r = loadRoute("name = \"r\"\npath = \"/\"\nreturn = { status = 301, location = \"/{host\" }\n");
  expectError(r, "unknown placeholder '{host'", 9, 37);

  r = loadRoute("name = \"r\"\npath = \"/\"\nreturn = { status = 200, location = \"/x\" }\n");
  expectError(r, "route[0].return.location: only allowed with a 3xx status", 9, 37);

  r = loadRoute("name = \"r\"\npath = \"/\"\nreturn = { status = 204, body = \"x\" }\n");
  expectError(r, "route[0].return.body: a 204 has no body", 9, 33);

  r = loadRoute("name = \"r\"\npath = \"/\"\nreturn = { status = 600 }\n");
  expectError(r, "route[0].return.status", 9, 21);

  r = loadRoute("name = \"r\"\npath = \"/\"\nreturn = { status = 200, content_type = \"x\" }\n");
  expectError(r, "route[0].return.content_type: only allowed with 'body'", 9, 41);

  r = loadRoute("name = \"r\"\npath = \"/\"\nreturn = { status = 200, code = 1 }\n");
  expectError(r, "unknown key 'code' in route[0].return", 9, 26);

  r = loadRoute("name = \"r\"\npath = \"/\"\npool = \"p\"\nreturn = { status = 204 }\n");
  expectError(r, "route[0]: use exactly one of 'pool', 'split', 'return' and 'static'", 10, 10);

  r = loadRoute(
      "name = \"r\"\npath_regex = '^/(a)'\nrewrite = \"/$1\"\nreturn = { status = 204 }\n");
  expectError(r, "route[0].rewrite: not allowed with 'return'", 9, 11);

  r = loadRoute("name = \"r\"\npath = \"/\"\n");
  expectError(r, "route[0]: missing required key 'pool' (or 'split', 'return' for a fixed answer, 'static'", 6, 1);
}
