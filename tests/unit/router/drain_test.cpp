// router::DrainTracker (drain_timeout's decision): a pool is drained once, drain_timeout after
// no route sends it new traffic any more; never while another route (split arm above 0 or
// plain `pool =`) still does; not at all when it takes traffic again before the timeout.
// router::poolUses: what the routes of a snapshot send where.
#include "proxy/router/drain.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/unit/exchange/test_snapshot.h"

using namespace sluice;
using router::DrainDue;
using router::DrainTracker;
using router::PoolUse;

namespace {

PoolUse use(std::string_view route, std::string_view pool, bool sending, uint64_t timeoutMs) {
  return PoolUse{route, pool, sending, timeoutMs};
}

std::vector<std::string> names(const std::vector<DrainDue>& due) {
  std::vector<std::string> v;
  v.reserve(due.size());
  for (const DrainDue& d : due) v.push_back(d.route + "/" + d.pool);
  return v;
}

using Names = std::vector<std::string>;

}  // namespace

TEST_SUITE("drain") {
  TEST_CASE("a pool at weight 0 is drained once, drain_timeout after it went quiet") {
    DrainTracker t;
    const std::vector<PoolUse> live = {use("r", "stable", true, 300),
                                       use("r", "canary", true, 300)};
    const std::vector<PoolUse> rolledBack = {use("r", "stable", true, 300),
                                             use("r", "canary", false, 300)};
    CHECK(t.tick(live, 1000).empty());
    CHECK(t.quietSince("canary") == 0);
    CHECK(t.tick(rolledBack, 1050).empty());
    CHECK(t.quietSince("canary") == 1050);
    CHECK(t.tick(rolledBack, 1349).empty());
    CHECK(names(t.tick(rolledBack, 1350)) == Names{"r/canary"});
    CHECK(t.tick(rolledBack, 1400).empty());  // once per quiet period
    CHECK(t.tick(rolledBack, 99999).empty());
    // Back up, then down again: a new quiet period, a new drain.
    CHECK(t.tick(live, 100000).empty());
    CHECK(t.quietSince("canary") == 0);
    CHECK(t.tick(rolledBack, 100050).empty());
    CHECK(names(t.tick(rolledBack, 100400)) == Names{"r/canary"});
  }

  TEST_CASE("raising the weight before the timeout drains nothing") {
    DrainTracker t;
    const std::vector<PoolUse> up = {use("r", "a", true, 300), use("r", "b", true, 300)};
    const std::vector<PoolUse> down = {use("r", "a", true, 300), use("r", "b", false, 300)};
    CHECK(t.tick(down, 0 + 10).empty());
    CHECK(t.tick(down, 200).empty());
    CHECK(t.tick(up, 250).empty());
    CHECK(t.tick(up, 400).empty());
    CHECK(t.tick(down, 500).empty());  // the timeout counts from here
    CHECK(t.tick(down, 799).empty());
    CHECK(names(t.tick(down, 800)) == Names{"r/b"});
  }

  TEST_CASE("a pool another route still sends traffic to is not drained") {
    DrainTracker t;
    // Route "web" rolled "shared" back; "api" still splits to it; "plain" uses "other".
    std::vector<PoolUse> uses = {use("web", "base", true, 100), use("web", "shared", false, 100),
                                 use("api", "base", true, 0), use("api", "shared", true, 0)};
    for (uint64_t now = 10; now < 1000; now += 50) CHECK(t.tick(uses, now).empty());
    // "api" rolls it back too: the quiet period starts now, with web's timeout.
    uses[3].sending = false;
    CHECK(t.tick(uses, 1000).empty());
    CHECK(t.tick(uses, 1099).empty());
    CHECK(names(t.tick(uses, 1100)) == Names{"web/shared"});

    DrainTracker plain;
    const std::vector<PoolUse> withPlain = {use("web", "base", true, 100),
                                            use("web", "canary", false, 100),
                                            use("legacy", "canary", true, 0)};
    for (uint64_t now = 10; now < 1000; now += 50) CHECK(plain.tick(withPlain, now).empty());
    // A reload removed the plain route.
    const std::vector<PoolUse> without = {withPlain[0], withPlain[1]};
    CHECK(plain.tick(without, 1000).empty());
    CHECK(names(plain.tick(without, 1100)) == Names{"web/canary"});
  }

  TEST_CASE("the first drain_timeout to pass wins; routes without one never drain") {
    DrainTracker t;
    const std::vector<PoolUse> uses = {use("slow", "x", true, 1000), use("slow", "c", false, 1000),
                                       use("fast", "y", true, 200),  use("fast", "c", false, 200),
                                       use("off", "z", true, 0),     use("off", "d", false, 0)};
    CHECK(t.tick(uses, 10).empty());
    CHECK(names(t.tick(uses, 210)) == Names{"fast/c"});
    CHECK(t.tick(uses, 5000).empty());  // "d" has no drain_timeout, "c" is drained already
    CHECK(t.quietSince("d") == 0);
  }

  TEST_CASE("a pool no route uses any more is forgotten") {
    DrainTracker t;
    CHECK(t.tick({use("r", "a", true, 100), use("r", "b", false, 100)}, 10).empty());
    CHECK(t.quietSince("b") == 10);
    CHECK(t.tick({use("r", "a", true, 100), use("r", "c", true, 100)}, 60).empty());
    CHECK(t.quietSince("b") == 0);
  }

  TEST_CASE("poolUses: split arms by live weight, plain routes, nothing without drain_timeout") {
    constexpr std::string_view kBase = R"([[listener]]
name = "web"
listen = "127.0.0.1:8080"

[pool.stable]
backends = [{ address = "127.0.0.1:9" }]

[pool.canary]
backends = [{ address = "127.0.0.1:9" }]

[[route]]
name = "plain"
path = "/plain/"
pool = "stable"

[[route]]
name = "app"
path = "/"
split = [{ pool = "stable", weight = 90 }, { pool = "canary", weight = 10 }]
)";
    auto off = test::snapshotFromToml(kBase);
    CHECK(router::poolUses(off->routes).empty());

    auto on = test::snapshotFromToml(std::string(kBase) + "drain_timeout = \"300ms\"\n");
    std::vector<PoolUse> uses = router::poolUses(on->routes);
    REQUIRE(uses.size() == 3);
    CHECK(uses[0].route == "plain");
    CHECK(uses[0].pool == "stable");
    CHECK(uses[0].sending);
    CHECK(uses[0].drainTimeoutMs == 0);
    CHECK(uses[2].route == "app");
    CHECK(uses[2].pool == "canary");
    CHECK(uses[2].sending);
    CHECK(uses[2].drainTimeoutMs == 300);
    const router::Route* app = nullptr;
    for (const router::Route& r : on->routes.routes())
      if (r.name == "app") app = &r;
    REQUIRE(app != nullptr);
    app->split->release->setWeights({100, 0}, 0);
    uses = router::poolUses(on->routes);
    CHECK(uses[1].sending);
    CHECK_FALSE(uses[2].sending);
  }
}
