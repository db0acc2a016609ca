// Unit tests for proxy/upstream/pool: smooth weighted round-robin and the backend registry.
#include "proxy/upstream/pool.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

using namespace sluice::upstream;

namespace {

Pool makePool(const std::vector<uint32_t>& weights) {
  Pool p;
  p.name = "p";
  for (size_t i = 0; i < weights.size(); ++i) {
    auto b = std::make_shared<Backend>();
    b->pool = "p";
    b->address = std::string(1, char('a' + i)) + ":80";
    b->resolved = true;
    p.backends.push_back(b);
    p.weights.push_back(weights[i]);
  }
  return p;
}

// Picks `n` times and returns the sequence as letters ('-' for none).
std::string picks(SmoothWrr& wrr, const Pool& pool, size_t n, const Backend* const* skip = nullptr,
                  size_t skipCount = 0) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    int idx = wrr.pick(pool, skip, skipCount);
    if (idx >= 0) REQUIRE(size_t(idx) < pool.backends.size());
    s.push_back(idx < 0 ? '-' : char('a' + idx));
  }
  return s;
}

size_t longestRun(const std::string& s, char c) {
  size_t best = 0, run = 0;
  for (char x : s) {
    run = x == c ? run + 1 : 0;
    best = std::max(best, run);
  }
  return best;
}

}  // namespace

TEST_SUITE("upstream_pool") {
  TEST_CASE("smooth WRR 5:1:1 gives the nginx sequence, no bursts") {
    Pool pool = makePool({5, 1, 1});
    SmoothWrr wrr;
    const size_t rounds = 20;
    std::string seq = picks(wrr, pool, 7 * rounds);
    for (size_t r = 0; r < rounds; ++r) {
      CAPTURE(r);
      CHECK(seq.substr(r * 7, 7) == "aabacaa");
    }
    std::map<char, size_t> counts;
    for (char c : seq) ++counts[c];
    CHECK(counts['a'] == 5 * rounds);
    CHECK(counts['b'] == 1 * rounds);
    CHECK(counts['c'] == 1 * rounds);
    // Never the five a's of a cycle in a row ("...caa|aab..." is the longest run).
    CHECK(longestRun(seq, 'a') <= 4);
    CHECK(longestRun(seq.substr(0, 7), 'a') <= 2);
  }

  TEST_CASE("smooth WRR: exact counts over N * total picks") {
    struct Case {
      std::vector<uint32_t> weights;
    } cases[] = {{{1}}, {{1, 1}}, {{1, 1, 1}}, {{3, 2}}, {{2, 7, 1}}, {{10, 1}}, {{4, 4, 1, 3}}};
    for (const Case& c : cases) {
      Pool pool = makePool(c.weights);
      uint32_t total = 0;
      for (uint32_t w : c.weights) total += w;
      SmoothWrr wrr;
      const size_t n = 13;
      std::string seq = picks(wrr, pool, n * total);
      for (size_t i = 0; i < c.weights.size(); ++i) {
        CAPTURE(i);
        CAPTURE(total);
        size_t count = size_t(std::count(seq.begin(), seq.end(), char('a' + i)));
        CHECK(count == n * c.weights[i]);
        // Smooth: within every window of `total` consecutive picks, exactly the weight.
        for (size_t start = 0; start + total <= seq.size(); start += total)
          CHECK(size_t(std::count(seq.begin() + long(start), seq.begin() + long(start + total),
                                  char('a' + i))) == c.weights[i]);
      }
    }
  }

  TEST_CASE("equal weights are plain round-robin") {
    Pool pool = makePool({1, 1, 1});
    SmoothWrr wrr;
    CHECK(picks(wrr, pool, 9) == "abcabcabc");
  }

  TEST_CASE("skip list") {
    Pool pool = makePool({1, 1, 1});
    SmoothWrr wrr;
    const Backend* skipA[] = {pool.backends[0].get()};
    std::string seq = picks(wrr, pool, 10, skipA, 1);
    CHECK(seq.find('a') == std::string::npos);
    CHECK(std::count(seq.begin(), seq.end(), 'b') == 5);
    CHECK(std::count(seq.begin(), seq.end(), 'c') == 5);

    const Backend* skipAB[] = {pool.backends[0].get(), pool.backends[1].get()};
    CHECK(picks(wrr, pool, 3, skipAB, 2) == "ccc");

    const Backend* skipAll[] = {pool.backends[0].get(), pool.backends[1].get(),
                                pool.backends[2].get()};
    CHECK(wrr.pick(pool, skipAll, 3) == -1);

    // A backend of another pool in the skip list changes nothing.
    Pool other = makePool({1});
    const Backend* skipOther[] = {other.backends[0].get()};
    std::string all = picks(wrr, pool, 30, skipOther, 1);
    for (char c : {'a', 'b', 'c'}) CHECK(std::count(all.begin(), all.end(), c) == 10);
  }

  TEST_CASE("unhealthy and unresolved backends are skipped") {
    Pool pool = makePool({5, 1, 1});
    SmoothWrr wrr;
    pool.backends[0]->healthy = false;
    std::string seq = picks(wrr, pool, 20);
    CHECK(seq.find('a') == std::string::npos);
    CHECK(std::count(seq.begin(), seq.end(), 'b') == 10);
    CHECK(std::count(seq.begin(), seq.end(), 'c') == 10);

    pool.backends[1]->resolved = false;
    CHECK(picks(wrr, pool, 5) == "ccccc");
    CHECK(pool.hasHealthyBackend());

    pool.backends[2]->healthy = false;
    CHECK(wrr.pick(pool, nullptr, 0) == -1);
    CHECK_FALSE(pool.hasHealthyBackend());

    // Back to healthy: picked again, with its weight.
    pool.backends[0]->healthy = true;
    pool.backends[1]->resolved = true;
    pool.backends[2]->healthy = true;
    CHECK(pool.hasHealthyBackend());
    SmoothWrr fresh;
    CHECK(picks(fresh, pool, 14) == "aabacaaaabacaa");
  }

  TEST_CASE("no eligible backend: -1") {
    Pool empty;
    SmoothWrr wrr;
    CHECK(wrr.pick(empty, nullptr, 0) == -1);
    CHECK_FALSE(empty.hasHealthyBackend());

    Pool unresolved = makePool({1, 2});
    for (auto& b : unresolved.backends) b->resolved = false;
    CHECK(wrr.pick(unresolved, nullptr, 0) == -1);
    CHECK_FALSE(unresolved.hasHealthyBackend());
  }

  TEST_CASE("BackendRegistry: same object for the same (pool, address) while referenced") {
    BackendRegistry reg;
    BackendPtr a1 = reg.get("p1", "10.0.0.1:80");
    BackendPtr a2 = reg.get("p1", "10.0.0.1:80");
    CHECK(a1 == a2);
    CHECK(a1->pool == "p1");
    CHECK(a1->address == "10.0.0.1:80");
    CHECK(a1->healthy.load());

    BackendPtr b = reg.get("p1", "10.0.0.2:80");
    BackendPtr c = reg.get("p2", "10.0.0.1:80");
    CHECK(b != a1);
    CHECK(c != a1);
    CHECK(c->pool == "p2");

    // State carries over between lookups (reloads).
    a1->healthy = false;
    a1->active = 3;
    BackendPtr a3 = reg.get("p1", "10.0.0.1:80");
    CHECK(a3 == a1);
    CHECK_FALSE(a3->healthy.load());
    CHECK(a3->active.load() == 3);
  }

  TEST_CASE("BackendRegistry: unreferenced entries are dropped; prune() keeps live ones") {
    BackendRegistry reg;
    BackendPtr keep = reg.get("p", "keep:80");
    keep->healthy = false;
    {
      BackendPtr gone = reg.get("p", "gone:80");
      gone->healthy = false;
    }
    reg.prune();
    // The referenced backend is the same object with its state.
    BackendPtr again = reg.get("p", "keep:80");
    CHECK(again == keep);
    CHECK_FALSE(again->healthy.load());
    // The dropped one comes back fresh.
    BackendPtr fresh = reg.get("p", "gone:80");
    CHECK(fresh->healthy.load());
    CHECK(fresh->address == "gone:80");
    CHECK(reg.get("p", "gone:80") == fresh);

    // Without prune(), an expired entry is replaced too.
    {
      BackendPtr tmp = reg.get("p", "tmp:80");
      tmp->active = 7;
    }
    CHECK(reg.get("p", "tmp:80")->active.load() == 0);
  }
}
