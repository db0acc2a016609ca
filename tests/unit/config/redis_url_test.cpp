// [redis]: the URL forms (config/redis_url.h) and the section's errors.
#include <doctest/doctest.h>

#include <string>

#include "config/loader.h"
#include "config/redis_url.h"
#include "tests/unit/config/load_helpers.h"

using namespace sluice::config;
using namespace sluice::config::testing;

namespace {

LoadResult load(std::string_view rest) {
  return loadAfterBase(rest, {});
}

}  // namespace

TEST_CASE("redis urls") {
  RedisSettings s;
  std::string err;
  REQUIRE(parseRedisUrl("redis://127.0.0.1:6380/2", s, err));
  CHECK(!s.unixSocket);
  CHECK(s.host == "127.0.0.1");
  CHECK(s.port == 6380);
  CHECK(s.db == 2);
  CHECK(s.password.empty());
  REQUIRE(parseRedisUrl("redis://:p%40ss@redis:6379/0", s, err));
  CHECK(s.password == "p@ss");
  CHECK(s.host == "redis");
  REQUIRE(parseRedisUrl("redis://user:pw@[::1]", s, err));
  CHECK(s.host == "::1");
  CHECK(s.port == 6379);
  CHECK(s.password == "pw");
  REQUIRE(parseRedisUrl("unix:///run/redis.sock?db=3", s, err));
  CHECK(s.unixSocket);
  CHECK(s.path == "/run/redis.sock");
  CHECK(s.db == 3);
  CHECK_FALSE(parseRedisUrl("http://x:1", s, err));
  CHECK_FALSE(parseRedisUrl("redis://x:0", s, err));
  CHECK_FALSE(parseRedisUrl("redis://x:1/abc", s, err));
  CHECK_FALSE(parseRedisUrl("redis://:1", s, err));
  CHECK_FALSE(parseRedisUrl("unix://relative", s, err));
}

TEST_CASE("redis section errors") {
  LoadResult r = load(R"([redis]
url = "http://127.0.0.1"
timeout = "0"
failure_mode = "maybe"
extra = 1
)");
  expectError(r, "redis.url: unsupported url", 7, 7);
  expectError(r, "redis.timeout: must be greater than 0", 8, 11);
  expectError(r, "redis.failure_mode: expected \"open\" or \"closed\", got 'maybe'", 9, 16);
  expectError(r, "unknown key 'extra' in [redis]", 10, 1);
}
