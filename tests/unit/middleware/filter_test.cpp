// Filter plumbing (middleware/filter): request Attributes and the per-exchange FilterArena.
#include "middleware/filter.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

using namespace sluice::middleware;

namespace {

bool aligned(const void* p, size_t align) { return reinterpret_cast<uintptr_t>(p) % align == 0; }

struct Small {
  uint8_t v;
};
struct alignas(16) Wide {
  uint8_t bytes[24];
};
struct alignas(64) CacheLine {
  uint64_t words[3];
};
struct Big {
  char bytes[1000];
};

// Allocates a mixed sequence (odd sizes between over-aligned objects, one bigger than a fresh
// chunk) and checks every object's alignment and that none overlaps another.
struct Allocation {
  const void* p;
  size_t size;
};
std::vector<Allocation> makeMixed(FilterArena& arena, int rounds) {
  std::vector<Allocation> all;
  for (int i = 0; i < rounds; ++i) {
    Small* s = arena.make<Small>(Small{uint8_t(i)});
    all.push_back({s, sizeof(Small)});
    Wide* w = arena.make<Wide>();
    CHECK(aligned(w, alignof(Wide)));
    all.push_back({w, sizeof(Wide)});
    CacheLine* c = arena.make<CacheLine>();
    CHECK(aligned(c, alignof(CacheLine)));
    all.push_back({c, sizeof(CacheLine)});
    uint64_t* u = arena.make<uint64_t>(uint64_t(i));
    CHECK(aligned(u, alignof(uint64_t)));
    all.push_back({u, sizeof(uint64_t)});
    if (i % 7 == 0) all.push_back({arena.make<Big>(), sizeof(Big)});
  }
  return all;
}
void checkDisjoint(std::vector<Allocation> all) {
  std::sort(all.begin(), all.end(),
            [](const Allocation& a, const Allocation& b) { return a.p < b.p; });
  for (size_t i = 1; i < all.size(); ++i)
    CHECK(static_cast<const char*>(all[i - 1].p) + all[i - 1].size <=
          static_cast<const char*>(all[i].p));
}

}  // namespace

TEST_SUITE("filter_attributes") {
  TEST_CASE("set, get, overwrite, has") {
    Attributes a;
    CHECK(a.get("jwt", "sub") == nullptr);
    CHECK_FALSE(a.has("jwt"));
    a.set("jwt", "sub", "alice");
    a.set("log", "ratelimit", "allowed");
    REQUIRE(a.get("jwt", "sub") != nullptr);
    CHECK(*a.get("jwt", "sub") == "alice");
    CHECK(*a.get("log", "ratelimit") == "allowed");
    a.set("jwt", "sub", "bob");  // overwrite in place, no second slot
    CHECK(*a.get("jwt", "sub") == "bob");
    CHECK(a.has("jwt"));
    CHECK(a.has("log"));
    // Namespace and name are separate parts: no prefix or concatenation confusion.
    CHECK(a.get("jw", "tsub") == nullptr);
    CHECK(a.get("jwtsub", "") == nullptr);
    CHECK(a.get("jwt", "su") == nullptr);
    CHECK_FALSE(a.has("jw"));
    CHECK_FALSE(a.has("jwtx"));
    a.set("", "", "empty");
    CHECK(*a.get("", "") == "empty");
    CHECK(a.has(""));
  }

  TEST_CASE("clear forgets everything and the slots are reused afterwards") {
    Attributes a;
    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      CHECK(a.get("jwt", "sub") == nullptr);
      CHECK_FALSE(a.has("jwt"));
      CHECK_FALSE(a.has("log"));
      const std::string who = "user" + std::to_string(round);
      // A different key order each round: a stale slot key must not answer for another.
      if (round % 2 == 0) {
        a.set("jwt", "sub", who);
        a.set("log", "ratelimit", "limited");
      } else {
        a.set("log", "ratelimit", "limited");
        a.set("jwt", "sub", who);
      }
      a.set("jwt", "sub", who + "!");
      CHECK(*a.get("jwt", "sub") == who + "!");
      CHECK(*a.get("log", "ratelimit") == "limited");
      a.clear();
    }
    a.set("x", "y", "z");
    CHECK(*a.get("x", "y") == "z");
    CHECK(a.get("jwt", "sub") == nullptr);
    CHECK(a.get("log", "ratelimit") == nullptr);
  }
}

TEST_SUITE("filter_arena") {
  TEST_CASE("objects are aligned (16 and 64 too), disjoint and keep their values") {
    FilterArena arena;
    std::vector<Allocation> all = makeMixed(arena, 40);
    checkDisjoint(all);
    CHECK(static_cast<const Small*>(all[0].p)->v == 0);
    CHECK(arena.capacity() >= 40 * (sizeof(Small) + sizeof(Wide) + sizeof(CacheLine) + 8));
  }

  TEST_CASE("reset coalesces the chunks: the same requests fit without growing") {
    FilterArena arena;
    makeMixed(arena, 40);
    arena.reset();
    const size_t coalesced = arena.capacity();
    for (int request = 0; request < 5; ++request) {
      CAPTURE(request);
      checkDisjoint(makeMixed(arena, 40));
      CHECK(arena.capacity() == coalesced);
      arena.reset();
      CHECK(arena.capacity() == coalesced);
    }
  }

  TEST_CASE("a first object bigger than the default chunk gets a chunk of its own") {
    FilterArena arena;
    CHECK(arena.capacity() == 0);
    Big* b = arena.make<Big>();
    b->bytes[999] = 'x';
    CHECK(arena.capacity() >= sizeof(Big));
    Small* s = arena.make<Small>(Small{7});
    CHECK(s->v == 7);
    CHECK(b->bytes[999] == 'x');
  }
}
