// Unit tests for proxy/upstream/balancer and the outlier state machine in pool.cpp.
#include "proxy/upstream/balancer.h"

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

using namespace sluice;
using namespace sluice::upstream;

namespace {

std::unique_ptr<Pool> makePool(const std::vector<uint32_t>& weights, config::Balance bal,
                               const std::vector<std::string>& names = {}) {
  auto p = std::make_unique<Pool>();
  p->name = "p";
  p->settings.balance = bal;
  for (size_t i = 0; i < weights.size(); ++i) {
    auto b = std::make_shared<Backend>();
    b->pool = "p";
    b->name = b->address = names.empty() ? std::string(1, char('a' + i)) + ":80" : names[i];
    b->resolved = true;
    p->backends.push_back(b);
    p->weights.push_back(weights[i]);
  }
  if (bal == config::Balance::Hash) p->ring.build(p->backends, p->weights);
  return p;
}

std::map<int, int> distribution(Balancer& bal, const Pool& pool, int n, bool hashed = false) {
  std::map<int, int> out;
  for (int i = 0; i < n; ++i) {
    PickRequest r;
    r.nowMs = monotonicMs();
    if (hashed) r.hash = hash64("key-" + std::to_string(i));
    PickResult res = bal.pick(pool, r);
    REQUIRE(res.index >= 0);
    out[res.index]++;
  }
  return out;
}

std::vector<int> hashPicks(const Pool& pool, int keys) {
  auto bal = makeBalancer(config::Balance::Hash);
  std::vector<int> out;
  for (int i = 0; i < keys; ++i) {
    PickRequest r;
    r.nowMs = monotonicMs();
    r.hash = hash64("user-" + std::to_string(i));
    out.push_back(bal->pick(pool, r).index);
  }
  return out;
}

}  // namespace

TEST_SUITE("upstream_balancer") {
  TEST_CASE("round_robin and least_conn (idle) give exact weighted shares") {
    for (auto kind : {config::Balance::RoundRobin, config::Balance::LeastConn}) {
      auto pool = makePool({3, 2, 1}, kind);
      auto bal = makeBalancer(kind);
      auto d = distribution(*bal, *pool, 600);
      CHECK(d[0] == 300);
      CHECK(d[1] == 200);
      CHECK(d[2] == 100);
    }
  }

  TEST_CASE("p2c and hash shares follow weights within tolerance") {
    for (auto kind : {config::Balance::P2c, config::Balance::Hash}) {
      CAPTURE(int(kind));
      auto pool = makePool({3, 2, 1}, kind);
      auto bal = makeBalancer(kind);
      auto d = distribution(*bal, *pool, 6000, kind == config::Balance::Hash);
      CHECK(d[0] == doctest::Approx(3000).epsilon(0.15));
      CHECK(d[1] == doctest::Approx(2000).epsilon(0.15));
      CHECK(d[2] == doctest::Approx(1000).epsilon(0.2));
    }
  }

  TEST_CASE("least_conn picks the fewest active per weight; ties are shared") {
    auto pool = makePool({1, 1, 2}, config::Balance::LeastConn);
    auto bal = makeBalancer(config::Balance::LeastConn);
    pool->backends[0]->active = 3;
    pool->backends[1]->active = 1;
    pool->backends[2]->active = 4;  // 4/2 = 2 per weight unit
    PickRequest r;
    r.nowMs = monotonicMs();
    CHECK(bal->pick(*pool, r).index == 1);
    pool->backends[1]->active = 2;  // ties with c (2 == 4/2): both get picks, by weight
    std::map<int, int> d;
    for (int i = 0; i < 30; ++i) d[bal->pick(*pool, r).index]++;
    CHECK(d[0] == 0);
    CHECK(d[1] == 10);
    CHECK(d[2] == 20);
  }

  TEST_CASE("p2c never picks the busier of two") {
    auto pool = makePool({1, 1}, config::Balance::P2c);
    auto bal = makeBalancer(config::Balance::P2c);
    pool->backends[0]->active = 5;
    PickRequest r;
    r.nowMs = monotonicMs();
    for (int i = 0; i < 100; ++i) CHECK(bal->pick(*pool, r).index == 1);
  }

  TEST_CASE("every balancer skips down, ejected, draining, full and tried backends") {
    for (auto kind : {config::Balance::RoundRobin, config::Balance::LeastConn, config::Balance::P2c,
                      config::Balance::Hash}) {
      CAPTURE(int(kind));
      auto pool = makePool({1, 1, 1, 1, 1}, kind);
      pool->settings.maxConnections = 2;
      uint64_t now = monotonicMs();
      pool->backends[0]->healthy = false;
      pool->backends[1]->ejectedUntilMs = now + 60000;
      pool->backends[2]->draining = true;
      pool->backends[3]->active = 2;  // at max_connections
      auto bal = makeBalancer(kind);
      const Backend* tried[1] = {};
      for (int i = 0; i < 50; ++i) {
        PickRequest r;
        r.nowMs = now;
        r.hash = hash64(std::to_string(i));
        CHECK(bal->pick(*pool, r).index == 4);
      }
      tried[0] = pool->backends[4].get();
      PickRequest r;
      r.nowMs = now;
      r.skip = tried;
      r.skipCount = 1;
      PickResult res = bal->pick(*pool, r);
      CHECK(res.index == -1);
      CHECK(res.saturated);  // only because backend 3 is full
      pool->backends[3]->active = 0;
      CHECK(bal->pick(*pool, r).index == 3);
      pool->backends[3]->healthy = false;
      res = bal->pick(*pool, r);
      CHECK(res.index == -1);
      CHECK_FALSE(res.saturated);
    }
  }

  TEST_CASE("consistent hash: adding or removing one of N backends moves about 1/N keys") {
    const int keys = 10000;
    std::vector<std::string> names = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"};
    auto four = makePool({1, 1, 1, 1}, config::Balance::Hash, names);
    auto five = makePool({1, 1, 1, 1, 1}, config::Balance::Hash,
                         {names[0], names[1], names[2], names[3], "10.0.0.5:80"});
    auto three = makePool({1, 1, 1}, config::Balance::Hash, {names[0], names[1], names[3]});
    auto a = hashPicks(*four, keys);
    auto b = hashPicks(*five, keys);
    auto c = hashPicks(*three, keys);
    int moved = 0;
    for (int i = 0; i < keys; ++i) {
      if (a[size_t(i)] != b[size_t(i)]) {
        ++moved;
        CHECK(b[size_t(i)] == 4);  // only to the new backend
      }
    }
    CHECK(moved == doctest::Approx(keys / 5.0).epsilon(0.25));
    // Remove 10.0.0.3 (index 2 of four): only its keys move; index 3 is index 2 in `three`.
    int movedR = 0;
    std::map<int, int> spread;
    for (int i = 0; i < keys; ++i) {
      int before = a[size_t(i)];
      int after = c[size_t(i)];
      std::string nb = names[size_t(before)];
      std::string na = three->backends[size_t(after)]->name;
      if (nb == names[2]) {
        ++movedR;
        spread[after]++;
      } else {
        CHECK(nb == na);
      }
    }
    CHECK(movedR == doctest::Approx(keys / 4.0).epsilon(0.25));
    CHECK(spread.size() == 3);  // a removed backend's keys spread over all the others
  }

  TEST_CASE("consistent hash: a down backend's keys spread over the rest, others stay") {
    auto pool = makePool({1, 1, 1, 1}, config::Balance::Hash);
    auto before = hashPicks(*pool, 4000);
    pool->backends[1]->healthy = false;
    auto during = hashPicks(*pool, 4000);
    std::map<int, int> spread;
    for (size_t i = 0; i < before.size(); ++i) {
      if (before[i] == 1)
        spread[during[i]]++;
      else
        CHECK(during[i] == before[i]);
    }
    CHECK(spread.size() == 3);
    CHECK(spread.count(1) == 0);
    pool->backends[1]->healthy = true;
    CHECK(hashPicks(*pool, 4000) == before);
  }

  TEST_CASE("hash keys: ip, header, cookie, fallback to ip") {
    http::HeaderMap h;
    config::HashKey ip;
    CHECK(requestHash(ip, h, "1.2.3.4") == hash64("1.2.3.4"));
    config::HashKey cookie{config::HashKey::Kind::Cookie, "sid"};
    CHECK(requestHash(cookie, h, "1.2.3.4") == hash64("1.2.3.4"));
    config::HashKey header{config::HashKey::Kind::Header, "x-user"};
    CHECK(requestHash(header, h, "9.9.9.9") == hash64("9.9.9.9"));
    // The cookie comes from http/cookie.h: any Cookie line, OWS and DQUOTEs removed; an
    // empty value falls back to the IP.
    h.add("Cookie", "theme=dark");
    h.add("Cookie", "sid = \"u-42\" ; x=1");
    CHECK(requestHash(cookie, h, "1.2.3.4") == hash64("u-42"));
    http::HeaderMap empty;
    empty.add("Cookie", "sid=");
    CHECK(requestHash(cookie, empty, "1.2.3.4") == hash64("1.2.3.4"));
  }

  TEST_CASE("BalancerSet keeps state per pool and resets it for a new Pool object") {
    BalancerSet set;
    auto pool = makePool({1, 1}, config::Balance::RoundRobin);
    pool->uid = 1;
    PickRequest r;
    r.nowMs = monotonicMs();
    int first = set.get(*pool).pick(*pool, r).index;
    int second = set.get(*pool).pick(*pool, r).index;
    CHECK(first != second);
    pool->uid = 2;  // as if freed and reallocated at the same address
    CHECK(set.get(*pool).pick(*pool, r).index == first);
  }
}

TEST_SUITE("upstream_outlier") {
  TEST_CASE("consecutive failures eject, success resets, ejection grows, last one stays") {
    auto pool = makePool({1, 1}, config::Balance::RoundRobin);
    pool->settings.outlier.enabled = true;
    pool->settings.outlier.consecutiveFailures = 3;
    pool->settings.outlier.ejectionTime = config::Duration(1000);
    Backend& a = *pool->backends[0];
    Backend& b = *pool->backends[1];
    uint64_t now = 1000000;

    CHECK_FALSE(reportFailure(*pool, a, now));
    CHECK_FALSE(reportFailure(*pool, a, now));
    reportSuccess(*pool, a, now);  // resets the run
    CHECK(a.consecutiveFailures == 0);
    CHECK_FALSE(reportFailure(*pool, a, now));
    CHECK_FALSE(reportFailure(*pool, a, now));
    CHECK(reportFailure(*pool, a, now));  // third in a row: ejected for 1s
    CHECK(a.ejected(now));
    CHECK(a.ejectedUntilMs == now + 1000);
    CHECK(std::string(a.stateName(now)) == "ejected");
    CHECK_FALSE(a.usable(now + 999));
    CHECK(a.usable(now + 1000));

    // The other backend fails now: it is the last usable one, so it stays.
    for (int i = 0; i < 10; ++i) CHECK_FALSE(reportFailure(*pool, b, now + 10));
    CHECK_FALSE(b.ejected(now + 10));

    // Back after 1s, fails again right away: the second ejection lasts 2s.
    now += 1000;
    for (int i = 0; i < 2; ++i) CHECK_FALSE(reportFailure(*pool, a, now));
    b.consecutiveFailures = 0;
    CHECK(reportFailure(*pool, a, now));
    CHECK(a.ejectedUntilMs == now + 2000);
    CHECK(a.ejections == 2);

    // After working for a whole ejection_time past the ejection, the multiplier resets.
    now += 2000;
    reportSuccess(*pool, a, now + 500);
    CHECK(a.ejections == 2);
    reportSuccess(*pool, a, now + 1001);
    CHECK(a.ejections == 0);
  }

  TEST_CASE("without [outlier] nothing is ejected") {
    auto pool = makePool({1, 1}, config::Balance::RoundRobin);
    Backend& a = *pool->backends[0];
    for (int i = 0; i < 100; ++i) CHECK_FALSE(reportFailure(*pool, a, 5000));
    CHECK_FALSE(a.ejected(5000));
  }

  TEST_CASE("state names by precedence") {
    Backend b;
    CHECK(std::string(b.stateName(10)) == "up");
    b.draining = true;
    CHECK(std::string(b.stateName(10)) == "draining");
    b.ejectedUntilMs = 20;
    CHECK(std::string(b.stateName(10)) == "ejected");
    b.healthy = false;
    CHECK(std::string(b.stateName(10)) == "down");
  }
}
