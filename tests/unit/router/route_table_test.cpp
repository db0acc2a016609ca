// Unit tests for proxy/router/route_table: host, path and method matching, host normalization
// and request-target splitting.
#include "proxy/router/route_table.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

using namespace sluice::router;

namespace {

Route route(std::string name, std::string host, std::string path, bool exact = false,
            std::vector<std::string> methods = {}) {
  Route r;
  r.name = std::move(name);
  r.host = std::move(host);
  r.path = std::move(path);
  r.exact = exact;
  r.methods = std::move(methods);
  return r;
}

// Name of the matched route, or "-" when none.
std::string matchName(const RouteTable& t, std::string_view host, std::string_view path,
                      std::string_view method = "GET") {
  const Route* r = t.match(host, path, method);
  return r ? r->name : "-";
}

std::string norm(std::string_view host) {
  std::string out = "garbage";
  normalizeHost(host, out);
  return out;
}

struct TargetParts {
  bool ok;
  std::string host, path, query;
};

TargetParts split(std::string_view target) {
  std::string_view h = "x", p = "x", q = "x";
  bool ok = splitTarget(target, h, p, q);
  if (!ok) return {false, std::string(h), "", ""};
  return {true, std::string(h), std::string(p), std::string(q)};
}

}  // namespace

TEST_SUITE("route_table") {
  TEST_CASE("exact host, then any host") {
    RouteTable t;
    t.build({route("any", "", "/"), route("api", "api.example.com", "/")});
    CHECK(matchName(t, "api.example.com", "/x") == "api");
    CHECK(matchName(t, "other.example.com", "/x") == "any");
    CHECK(matchName(t, "", "/x") == "any");
    // match() expects a normalized host: it compares exactly.
    CHECK(matchName(t, "API.example.com", "/x") == "any");
    CHECK(t.routes().size() == 2);
  }

  TEST_CASE("wildcard hosts: longest suffix first, never the bare domain") {
    RouteTable t;
    // Shorter wildcard first in the file: the table must still try the longer suffix first.
    t.build({route("wild", "*.example.com", "/"), route("wild-api", "*.api.example.com", "/"),
             route("any", "", "/")});
    CHECK(matchName(t, "www.example.com", "/") == "wild");
    CHECK(matchName(t, "a.b.example.com", "/") == "wild");
    CHECK(matchName(t, "v1.api.example.com", "/") == "wild-api");
    CHECK(matchName(t, "x.y.api.example.com", "/") == "wild-api");
    // "*.api.example.com" needs a label before ".api.example.com"; "*.example.com" matches.
    CHECK(matchName(t, "api.example.com", "/") == "wild");
    CHECK(matchName(t, "example.com", "/") == "any");
    CHECK(matchName(t, "badexample.com", "/") == "any");
    CHECK(matchName(t, "example.com.evil", "/") == "any");
    CHECK(matchName(t, ".example.com", "/") == "any");
  }

  TEST_CASE("exact host beats a wildcard") {
    RouteTable t;
    t.build({route("wild", "*.example.com", "/"), route("exact", "www.example.com", "/")});
    CHECK(matchName(t, "www.example.com", "/a") == "exact");
    CHECK(matchName(t, "cdn.example.com", "/a") == "wild");
    CHECK(matchName(t, "example.com", "/a") == "-");
  }

  TEST_CASE("a host group without a matching path falls back") {
    RouteTable t;
    t.build({route("api-v1", "api.example.com", "/v1/"),
             route("wild-static", "*.example.com", "/static/"), route("any", "", "/")});
    CHECK(matchName(t, "api.example.com", "/v1/users") == "api-v1");
    CHECK(matchName(t, "api.example.com", "/static/x.css") == "wild-static");
    CHECK(matchName(t, "api.example.com", "/other") == "any");
    CHECK(matchName(t, "www.example.com", "/v1/users") == "any");

    RouteTable none;
    none.build({route("api-v1", "api.example.com", "/v1/")});
    CHECK(matchName(none, "api.example.com", "/v2/") == "-");
    CHECK(matchName(none, "other", "/v1/") == "-");

    RouteTable empty;
    empty.build({});
    CHECK(matchName(empty, "a", "/") == "-");
  }

  TEST_CASE("longest prefix wins, file order breaks ties") {
    RouteTable t;
    t.build({route("root", "", "/"), route("api-v1", "", "/api/v1/"), route("api", "", "/api/"),
             route("api-dup", "", "/api/")});
    CHECK(matchName(t, "h", "/api/v1/users") == "api-v1");
    CHECK(matchName(t, "h", "/api/v2/users") == "api");
    CHECK(matchName(t, "h", "/api/") == "api");
    CHECK(matchName(t, "h", "/api") == "root");
    CHECK(matchName(t, "h", "/apix") == "root");
    CHECK(matchName(t, "h", "/") == "root");
    CHECK(matchName(t, "h", "/api/v1") == "api");
  }

  TEST_CASE("path_exact before prefix") {
    RouteTable t;
    t.build({route("prefix", "", "/login"), route("root", "", "/"),
             route("exact", "", "/login", true)});
    CHECK(matchName(t, "h", "/login") == "exact");
    CHECK(matchName(t, "h", "/login/") == "prefix");
    CHECK(matchName(t, "h", "/loginx") == "prefix");
    CHECK(matchName(t, "h", "/log") == "root");

    RouteTable onlyExact;
    onlyExact.build({route("exact", "", "/health", true)});
    CHECK(matchName(onlyExact, "h", "/health") == "exact");
    CHECK(matchName(onlyExact, "h", "/health/") == "-");
    CHECK(matchName(onlyExact, "h", "/healthz") == "-");
  }

  TEST_CASE("methods") {
    RouteTable t;
    t.build({route("read", "", "/items/", false, {"GET", "HEAD"}),
             route("write", "", "/items/", false, {"POST", "PUT"}), route("root", "", "/"),
             route("exact-get", "", "/exact", true, {"GET"})});
    CHECK(matchName(t, "h", "/items/1", "GET") == "read");
    CHECK(matchName(t, "h", "/items/1", "HEAD") == "read");
    CHECK(matchName(t, "h", "/items/1", "POST") == "write");
    CHECK(matchName(t, "h", "/items/1", "PUT") == "write");
    // No /items/ route takes DELETE: the next shorter prefix does.
    CHECK(matchName(t, "h", "/items/1", "DELETE") == "root");
    CHECK(matchName(t, "h", "/exact", "GET") == "exact-get");
    CHECK(matchName(t, "h", "/exact", "POST") == "root");
    // Method names are case-sensitive.
    CHECK(matchName(t, "h", "/items/1", "get") == "root");

    RouteTable strict;
    strict.build({route("get-only", "a.com", "/", false, {"GET"})});
    CHECK(matchName(strict, "a.com", "/", "GET") == "get-only");
    CHECK(matchName(strict, "a.com", "/", "POST") == "-");

    Route r = route("x", "", "/", false, {});
    CHECK(r.allowsMethod("ANYTHING"));
  }

  TEST_CASE("methods fall through host groups") {
    RouteTable t;
    t.build({route("api-get", "api.example.com", "/", false, {"GET"}),
             route("any-post", "", "/", false, {"POST"})});
    CHECK(matchName(t, "api.example.com", "/x", "GET") == "api-get");
    CHECK(matchName(t, "api.example.com", "/x", "POST") == "any-post");
    CHECK(matchName(t, "api.example.com", "/x", "PUT") == "-");
  }

  TEST_CASE("build() replaces the previous table") {
    RouteTable t;
    t.build({route("old", "old.com", "/"), route("old-wild", "*.old.com", "/")});
    t.build({route("new", "new.com", "/")});
    CHECK(matchName(t, "old.com", "/") == "-");
    CHECK(matchName(t, "a.old.com", "/") == "-");
    CHECK(matchName(t, "new.com", "/") == "new");
    CHECK(t.routes().size() == 1);
  }

  TEST_CASE("normalizeHost") {
    CHECK(norm("example.com") == "example.com");
    CHECK(norm("Example.COM") == "example.com");
    CHECK(norm("example.com:8080") == "example.com");
    CHECK(norm("EXAMPLE.com:80") == "example.com");
    CHECK(norm("example.com.") == "example.com");
    CHECK(norm("example.com.:443") == "example.com");
    CHECK(norm("[::1]") == "[::1]");
    CHECK(norm("[::1]:8080") == "[::1]");
    CHECK(norm("[2001:DB8::AbC]:443") == "[2001:db8::abc]");
    CHECK(norm("127.0.0.1:9000") == "127.0.0.1");
    CHECK(norm("") == "");
  }

  TEST_CASE("splitTarget: origin-form") {
    TargetParts s = split("/a/b?x=1&y=/../z");
    CHECK(s.ok);
    CHECK(s.host == "");
    CHECK(s.path == "/a/b");
    CHECK(s.query == "?x=1&y=/../z");

    s = split("/");
    CHECK(s.ok);
    CHECK(s.path == "/");
    CHECK(s.query == "");

    s = split("/search?");
    CHECK(s.ok);
    CHECK(s.path == "/search");
    CHECK(s.query == "?");

    for (const char* ok : {"/.well-known/acme", "/file.tar.gz", "/a/...", "/a/..b", "/a/b..",
                           "/a/.x/", "/a%2e/b", "//double"}) {
      CAPTURE(ok);
      CHECK(split(ok).ok);
    }
  }

  TEST_CASE("splitTarget: absolute-form") {
    TargetParts s = split("http://Example.com:8080/p/q?x=1");
    CHECK(s.ok);
    CHECK(s.host == "Example.com:8080");
    CHECK(s.path == "/p/q");
    CHECK(s.query == "?x=1");

    s = split("HTTPS://h");
    CHECK(s.ok);
    CHECK(s.host == "h");
    CHECK(s.path == "/");
    CHECK(s.query == "");

    s = split("http://[::1]:80/x");
    CHECK(s.ok);
    CHECK(s.host == "[::1]:80");
    CHECK(s.path == "/x");

    for (const char* bad : {"ftp://h/", "http:///x", "http://user@h/", "http://user:pw@h/x", "h/x",
                            "example.com", "*", "http:/h/x", "http://h/a/../b"}) {
      CAPTURE(bad);
      CHECK_FALSE(split(bad).ok);
    }
  }

  TEST_CASE("splitTarget: refused targets, dot-segments incl. percent-encoded") {
    for (const char* bad : {"", "a", "/..", "/.", "/../etc/passwd", "/a/..", "/a/.", "/a/../b",
                            "/a/./b", "/./", "/a/..?x", "/%2e%2e", "/%2E%2E/x", "/a/%2e/b",
                            "/a/.%2e/b", "/a/%2e./b", "/a/%2E", "/x#frag"}) {
      CAPTURE(bad);
      CHECK_FALSE(split(bad).ok);
    }
  }
}
