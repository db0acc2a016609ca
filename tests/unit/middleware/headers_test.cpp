// middleware/headers: value templates and the order of edits (remove, set, add).
#include <doctest/doctest.h>

#include <string>

#include "middleware/headers.h"

using namespace sluice;
using namespace sluice::middleware;

TEST_CASE("header templates expand the documented placeholders") {
  HeaderTemplate t;
  std::string err;
  REQUIRE(t.parse("{scheme}://{host} {route}/{pool} id={request_id} ip={client_ip}", true, err));
  RequestContext ctx;
  ctx.host = "api.example.com";
  ctx.routeName = "api";
  ctx.poolName = "blue";
  ctx.requestId = "abc";
  ctx.clientIp = "10.0.0.7";
  ctx.tls = true;
  std::string out;
  t.expand(ctx, out);
  CHECK(out == "https://api.example.com api/blue id=abc ip=10.0.0.7");
  ctx.poolName = {};
  ctx.tls = false;
  t.expand(ctx, out);
  CHECK(out == "http://api.example.com api/- id=abc ip=10.0.0.7");
  CHECK(t.parse("plain", false, err));
  CHECK(t.literal());
  CHECK(t.parse("", false, err));
  CHECK(t.literal());
  CHECK_FALSE(t.parse("{nope}", true, err));
  CHECK(err.find("unknown placeholder {nope}") == 0);
  CHECK_FALSE(t.parse("{host", true, err));
  CHECK(err.find("unclosed") == 0);
  CHECK_FALSE(t.parse("{pool}", false, err));
  CHECK(err.find("{pool} is only known in response values") == 0);
}

TEST_CASE("edits: remove, then set (replacing every field), then add") {
  HeaderEdits e;
  std::string err;
  e.remove = {"Server"};
  HeaderEdit set;
  set.name = "X-Env";
  REQUIRE(set.value.parse("prod", false, err));
  e.set.push_back(set);
  HeaderEdit add;
  add.name = "X-Trace";
  REQUIRE(add.value.parse("{request_id}", false, err));
  e.add.push_back(add);
  http::HeaderMap h;
  h.add("server", "nginx");
  h.add("X-Env", "dev");
  h.add("x-env", "test");
  h.add("X-Trace", "upstream");
  RequestContext ctx;
  ctx.requestId = "r1";
  applyHeaderEdits(e, ctx, h);
  CHECK_FALSE(h.has("Server"));
  CHECK(h.count("X-Env") == 1);
  CHECK(h.get("X-Env") == "prod");
  CHECK(h.count("X-Trace") == 2);
}
