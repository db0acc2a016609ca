// [middleware.NAME] through the seam of config/middleware_types.h, with test-only types: the
// loader finds the parser by `type`, hands it the table, keeps its settings, and refuses
// types that are not in the list it was given.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "config/load_context.h"
#include "config/loader.h"
#include "tests/unit/config/load_helpers.h"

using namespace sluice::config;
using namespace sluice::config::testing;

namespace {

struct TagSettings final : MiddlewareSettings {
  std::string label;
  std::string reads;  // claimsKey()
  std::string seenWhat;
  SourcePos seenPos;
  bool provides = false;
  bool providesClaims() const override { return provides; }
  std::string claimsKey() const override { return reads; }
};

// type = "tag": label (required string), reads (optional string).
MiddlewareSettingsPtr parseTag(const MiddlewareTable& t) {
  t.checkKeys({"type", "label", "reads"});
  auto s = std::make_shared<TagSettings>();
  s->seenWhat = t.what;
  s->seenPos = t.pos;
  const auto* label = t.required("label", "(e.g. label = \"x\")");
  if (label == nullptr) return nullptr;
  auto v = t.ctx.getString(*label, t.what + ".label");
  if (!v) return nullptr;
  s->label = *v;
  if (const auto* r = t.table.get("reads")) {
    if (auto rv = t.ctx.getString(*r, t.what + ".reads")) s->reads = *rv;
  }
  return s;
}

// type = "claims": no keys of its own; provides claims to later middleware.
MiddlewareSettingsPtr parseClaims(const MiddlewareTable& t) {
  t.checkKeys({"type"});
  auto s = std::make_shared<TagSettings>();
  s->provides = true;
  return s;
}

const MiddlewareParser kFakeTypes[] = {{"tag", &parseTag}, {"claims", &parseClaims}};

LoadResult load(std::string_view rest) {
  return loadAfterBase(rest, kFakeTypes);
}

}  // namespace

TEST_CASE("a registered type's table is parsed by its own parser") {
  LoadResult r = load(R"([middleware.second]
type = "tag"
label = "two"
[middleware.first]
type = "tag"
label = "${SLUICE_MS_UNSET:-one}"
[[route]]
name = "r"
path = "/"
pool = "p"
middleware = ["first", "second"]
)");
  INFO(dump(r.errors));
  REQUIRE(r.config.has_value());
  const Config& c = *r.config;
  REQUIRE(c.middleware.size() == 2);
  CHECK(c.middleware[0].name == "second");  // file order, not key order
  CHECK(c.middleware[0].type == "tag");
  CHECK(c.middleware[0].pos.line == 6);
  const auto* s = dynamic_cast<const TagSettings*>(c.middleware[0].settings.get());
  REQUIRE(s != nullptr);
  CHECK(s->label == "two");
  CHECK(s->seenWhat == "middleware.second");
  CHECK(s->seenPos.line == 6);
  const auto* f = dynamic_cast<const TagSettings*>(c.middleware[1].settings.get());
  REQUIRE(f != nullptr);
  CHECK(f->label == "one");  // the shared getters interpolate ${ENV}
  CHECK(c.routes[0].middleware == std::vector<std::string>{"first", "second"});
  CHECK(r.warnings.empty());
}

TEST_CASE("types outside the given list are refused with positions") {
  LoadResult r = load(R"([middleware.a]
type = "rate_limit"
[middleware.b]
type = "cors"
[middleware.c]
label = "x"
[middleware.d]
type = "tag"
colour = "red"
label = "x"
[middleware.e]
type = "tag"
[middleware."bad name"]
type = "claims"
[middleware.f]
type = 7
[[route]]
name = "r"
path = "/"
pool = "p"
middleware = ["a", "e", "nope"]
)");
  expectError(r, "middleware.a.type: expected \"tag\" or \"claims\", got 'rate_limit'", 7, 8);
  expectError(r, "middleware.b.type: expected \"tag\" or \"claims\", got 'cors'", 9, 8);
  expectError(r, "middleware.c: missing required key 'type' (\"tag\" or \"claims\")", 10, 1);
  expectError(r, "unknown key 'colour' in [middleware.d] (type = \"tag\")", 14, 1);
  expectError(r, "middleware.e: missing required key 'label' (e.g. label = \"x\")", 16, 1);
  expectError(r, "invalid middleware name 'bad name' (allowed: letters, digits, '_', '.', '-')", 18,
              13);
  expectError(r, "middleware.f.type: expected a string, got an integer", 21, 8);
  // Declared but invalid middleware is not reported a second time by the route.
  CHECK(findError(r, "no middleware named 'a'") == nullptr);
  CHECK(findError(r, "no middleware named 'e'") == nullptr);
  expectError(r, "route[0].middleware[2]: no middleware named 'nope'", 26, 25);
}

TEST_CASE("no middleware type at all: every [middleware.NAME] is refused") {
  LoadResult r = loadAfterBase("[middleware.a]\ntype = \"tag\"\n", {});
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].str() ==
        "test.toml:7:8: middleware.a.type: unknown type 'tag' (no middleware type is available)");
}

TEST_CASE("a claims reader needs a claims provider before it in the route") {
  LoadResult r = load(R"([middleware.reader]
type = "tag"
label = "x"
reads = "jwt:sub"
[middleware.provider]
type = "claims"
[[route]]
name = "r1"
path = "/a"
pool = "p"
middleware = ["reader", "provider"]
[[route]]
name = "r2"
path = "/b"
pool = "p"
middleware = ["provider", "reader"]
)");
  INFO(dump(r.errors));
  REQUIRE(r.config.has_value());
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0].line == 16);
  CHECK(r.warnings[0].message ==
        "route[0].middleware[0]: 'reader' keys on 'jwt:sub' but no jwt middleware comes before "
        "it in this route; every request falls back to the client IP");
}
