// Unit tests for middleware/redis_script: the locally computed SHA1 that EVALSHA sends.
#include "middleware/redis_script.h"

#include <doctest/doctest.h>

using namespace sluice::middleware;

TEST_CASE("redis scripts carry the SHA1 of their body") {
  struct Case {
    const char* body;
    const char* sha;
  };
  const Case cases[] = {
      {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
      {"return 1", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"},
  };
  for (const Case& c : cases) {
    INFO("body: " << std::string(c.body));
    RedisScript s(c.body);
    CHECK(s.body == c.body);
    CHECK(s.sha == c.sha);
  }
  RedisBatchScript b("return 1", 2, 3);
  CHECK(b.script.sha == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
  CHECK(b.argsPerCall == 2);
  CHECK(b.repliesPerCall == 3);
}
