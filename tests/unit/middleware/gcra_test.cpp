// GCRA math, the local store and key extraction, on a fake clock.
#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "middleware/gcra.h"
#include "middleware/identity.h"
#include "middleware/local_store.h"
#include "proxy/http/message.h"

using namespace sluice::middleware;

TEST_CASE("gcra: a fresh key gets N + burst at once, then N per period") {
  GcraParams p = GcraParams::make(10, 1000, 5);  // 10/s, burst 5
  CHECK(p.emissionUs == 100000);
  CHECK(p.capacity == 15);
  int64_t tat = 0;
  int64_t now = 1'000'000'000;
  for (int i = 0; i < 15; ++i) {
    GcraDecision d = gcraDecide(tat, now, p);
    REQUIRE(d.allowed);
    CHECK(d.remaining == 14 - i);
    CHECK(d.resetUs == (i + 1) * 100000);
  }
  GcraDecision d = gcraDecide(tat, now, p);
  CHECK_FALSE(d.allowed);
  CHECK(d.remaining == 0);
  CHECK(d.retryAfterUs == 100000);
  CHECK(d.resetUs == 1500000);
  CHECK(ceilSeconds(d.retryAfterUs, 1) == 1);
  // Refused requests do not consume anything.
  int64_t before = tat;
  gcraDecide(tat, now + 50000, p);
  CHECK(tat == before);
  // Exactly one emission interval later, exactly one more request.
  d = gcraDecide(tat, now + 100000, p);
  CHECK(d.allowed);
  CHECK(d.remaining == 0);
  CHECK_FALSE(gcraDecide(tat, now + 100000, p).allowed);
  CHECK_FALSE(gcraDecide(tat, now + 199999, p).allowed);
  CHECK(gcraDecide(tat, now + 200000, p).allowed);
  // After the bucket has had time to refill completely, it holds N + burst again, no more.
  now += 10'000'000;
  int allowed = 0;
  while (gcraDecide(tat, now, p).allowed) ++allowed;
  CHECK(allowed == 15);
}

TEST_CASE("gcra: continuous refill at N per period") {
  GcraParams p = GcraParams::make(60, 60000, 0);  // 60/m: one per second
  int64_t tat = 0, now = 5'000'000;
  int allowed = 0;
  while (gcraDecide(tat, now, p).allowed) ++allowed;
  CHECK(allowed == 60);
  // Over the next 30 s, one request per second passes.
  int more = 0;
  for (int step = 1; step <= 300; ++step) {  // every 100 ms
    if (gcraDecide(tat, now + step * 100000, p).allowed) ++more;
  }
  CHECK(more == 30);
}

TEST_CASE("gcra: header rounding") {
  CHECK(ceilSeconds(0) == 0);
  CHECK(ceilSeconds(1) == 1);
  CHECK(ceilSeconds(1000000) == 1);
  CHECK(ceilSeconds(1000001) == 2);
  CHECK(ceilSeconds(0, 1) == 1);
  GcraParams p = GcraParams::make(3, 1000, 0);
  CHECK(p.emissionUs == 333333);
}

TEST_CASE("local store: per key, bounded, shared between threads") {
  LocalStore store(1024);
  GcraParams p = GcraParams::make(5, 1000, 0);
  int64_t now = 1'000'000;
  for (int i = 0; i < 5; ++i) CHECK(store.decide("a", p, now).allowed);
  CHECK_FALSE(store.decide("a", p, now).allowed);
  CHECK(store.decide("b", p, now).allowed);
  CHECK(store.decide("a", p, now + 200000).allowed);

  // Bounded: many distinct keys never grow it past its limit (+ one shard's slack).
  for (int i = 0; i < 20000; ++i) store.decide("k" + std::to_string(i), p, now);
  CHECK(store.size() <= 1024 + LocalStore::kShards * 16);
  // Keys whose bucket refilled are dropped first; a later sweep frees them.
  for (int i = 0; i < 20000; ++i) store.decide("z" + std::to_string(i), p, now + 10'000'000);
  CHECK(store.size() <= 1024 + LocalStore::kShards * 16);

  // Exact under concurrency: 8 threads x 100 requests against one bucket of 50.
  LocalStore shared;
  GcraParams big = GcraParams::make(50, 3600000, 0);  // 50/h: no refill during the test
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i)
        if (shared.decide("same", big).allowed) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(ok.load() == 50);
}

TEST_CASE("local store registry keeps state across rebuilds") {
  LocalStoreRegistry reg;
  auto a = reg.get("per-user");
  GcraParams p = GcraParams::make(1, 3600000, 0);
  CHECK(a->decide("k", p, 1000).allowed);
  auto again = reg.get("per-user");  // a new snapshot while the old one lives
  CHECK(again.get() == a.get());
  CHECK_FALSE(again->decide("k", p, 1000).allowed);
  CHECK(reg.get("other").get() != a.get());
  a.reset();
  again.reset();
  reg.prune();
  CHECK(reg.size() == 0);
}

TEST_CASE("identity keys") {
  sluice::http::RequestHead req;
  req.headers.add("X-API-Key", " abc ");
  req.headers.add("Cookie", "theme=dark; session=\"s1\"");
  req.headers.add("Cookie", "other=1");
  RequestContext ctx;
  ctx.request = &req;
  ctx.clientIp = "10.1.2.3";
  using K = sluice::middleware::RateLimitKeyKind;
  struct Case {
    bool published;  // the jwt filter has published the "sub" claim (a verified token)
    K kind;
    const char* name;
    bool used;  // the configured source, not the IP fallback
    const char* key;
  };
  const Case cases[] = {
      {false, K::Ip, "", false, "ip:10.1.2.3"},
      {false, K::Header, "x-api-key", true, "header:abc"},
      {false, K::Header, "X-Missing", false, "ip:10.1.2.3"},
      {false, K::Cookie, "session", true, "cookie:s1"},
      {false, K::Cookie, "other", true, "cookie:1"},
      {false, K::Cookie, "Session", false, "ip:10.1.2.3"},  // names are case-sensitive
      // jwt: only claims the jwt filter published (verified tokens) count.
      {false, K::JwtClaim, "sub", false, "ip:10.1.2.3"},
      {true, K::JwtClaim, "sub", true, "jwt:user-7"},
      {true, K::JwtClaim, "tenant", false, "ip:10.1.2.3"},
  };
  for (const Case& c : cases) {
    INFO("source " << int(c.kind) << " " << std::string(c.name));
    if (c.published) ctx.attributes.set("jwt", "sub", "user-7");  // rows in this order
    std::string k;
    CHECK(appendIdentityKey(c.kind, c.name, ctx, k) == c.used);
    CHECK(k == c.key);
  }
  // Long values are hashed.
  ctx.attributes.set("jwt", "sub", std::string(500, 'x'));
  std::string k;
  CHECK(appendIdentityKey(K::JwtClaim, "sub", ctx, k));
  CHECK(k.starts_with("jwt:sha256:"));
  CHECK(k.size() == 4 + 7 + 64);
}
