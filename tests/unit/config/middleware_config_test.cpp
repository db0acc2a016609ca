// Loader tests for [redis], [middleware.NAME] (rate_limit, jwt) and [[route]] middleware.
#include <doctest/doctest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "config/loader.h"
#include "config/redis_url.h"

using namespace sluice::config;

namespace {

std::string dump(const std::vector<ConfigError>& errs) {
  std::string s;
  for (const auto& e : errs) s += e.str() + "\n";
  return s;
}

void expectError(const LoadResult& r, std::string_view needle, int line, int col) {
  INFO("looking for '", needle, "' in:\n", dump(r.errors));
  CHECK_FALSE(r.config.has_value());
  const ConfigError* found = nullptr;
  for (const auto& e : r.errors)
    if (e.message.find(needle) != std::string::npos) found = &e;
  REQUIRE(found != nullptr);
  CHECK(found->line == line);
  CHECK(found->col == col);
}

bool hasWarning(const LoadResult& r, std::string_view needle) {
  for (const auto& w : r.warnings)
    if (w.message.find(needle) != std::string::npos) return true;
  return false;
}

// Lines 1-5.
constexpr std::string_view kBase = R"([[listener]]
name = "web"
listen = "127.0.0.1:8080"
[pool.p]
backends = [{ address = "127.0.0.1:9000" }]
)";

LoadResult load(std::string_view rest) {
  return loadConfigString(std::string(kBase) + std::string(rest), "test.toml");
}

std::string writeKey(EVP_PKEY* key) {
  char path[] = "/tmp/sluice-mwtest-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  FILE* f = fdopen(fd, "w");
  PEM_write_PUBKEY(f, key);
  fclose(f);
  return path;
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

TEST_CASE("a valid middleware config") {
  LoadResult r = load(R"([redis]
url = "redis://:secret@127.0.0.1:6390/1"
timeout = "20ms"
failure_mode = "closed"
[middleware.per-user]
type = "rate_limit"
key = "header:X-API-Key"
rate = "100/m"
burst = 20
store = "redis"
[middleware.auth]
type = "jwt"
algorithms = ["HS256"]
secret = "k"
issuer = "https://auth"
audience = "api"
required = false
[middleware.by-ip]
type = "rate_limit"
rate = "5/s"
[[route]]
name = "r"
path = "/"
pool = "p"
middleware = ["auth", "per-user", "by-ip"]
)");
  INFO(dump(r.errors));
  REQUIRE(r.config.has_value());
  const Config& c = *r.config;
  CHECK(c.redis.enabled);
  CHECK(c.redis.port == 6390);
  CHECK(c.redis.password == "secret");
  CHECK(c.redis.db == 1);
  CHECK(c.redis.timeout == Duration(20));
  CHECK(c.redis.failureMode == RedisFailureMode::Closed);
  REQUIRE(c.middleware.size() == 3);
  CHECK(c.middleware[0].name == "per-user");  // file order
  CHECK(c.middleware[0].rateLimit.keyKind == RateLimitKeyKind::Header);
  CHECK(c.middleware[0].rateLimit.keyName == "X-API-Key");
  CHECK(c.middleware[0].rateLimit.rate == 100);
  CHECK(c.middleware[0].rateLimit.period == Duration(60000));
  CHECK(c.middleware[0].rateLimit.burst == 20);
  CHECK(c.middleware[1].type == MiddlewareType::Jwt);
  CHECK(c.middleware[1].jwt.required == false);
  CHECK(c.middleware[1].jwt.audience == "api");
  CHECK(c.middleware[2].rateLimit.keyKind == RateLimitKeyKind::Ip);
  // With [redis] present the store defaults to redis.
  CHECK(c.middleware[2].rateLimit.store == RateLimitStore::Redis);
  REQUIRE(c.routes.size() == 1);
  CHECK(c.routes[0].middleware == std::vector<std::string>{"auth", "per-user", "by-ip"});
}

TEST_CASE("middleware errors have positions") {
  LoadResult r = load(R"([middleware.a]
type = "rate_limit"
rate = "100/d"
key = "query:x"
store = "redis"
burst = -1
[middleware.b]
type = "magic"
[middleware.c]
type = "cors"
[middleware.d]
rate = "1/s"
[middleware.e]
type = "jwt"
algorithms = ["none"]
[middleware.f]
type = "jwt"
algorithms = ["HS256"]
[middleware.g]
type = "jwt"
algorithms = ["RS256"]
public_key = "/nonexistent/key.pem"
[middleware.h]
type = "rate_limit"
rate = "1/s"
colour = "red"
[[route]]
name = "r"
path = "/"
pool = "p"
middleware = ["a", "nope", "a"]
[[route]]
name = "r2"
path = "/x"
pool = "p"
middleware = "a"
)");
  expectError(r, "middleware.a.rate: expected \"N/s\", \"N/m\" or \"N/h\"", 8, 8);
  expectError(r, "middleware.a.key: expected \"ip\", \"header:NAME\"", 9, 7);
  expectError(r, "middleware.a.store: \"redis\" needs a [redis] table", 10, 9);
  expectError(r, "middleware.a.burst: must be between 0 and 1000000, got -1", 11, 9);
  expectError(r, "middleware.b.type: expected \"rate_limit\" or \"jwt\", got 'magic'", 13, 8);
  expectError(r, "middleware.c.type: 'cors' is not supported in this version", 15, 8);
  expectError(r, "middleware.d: missing required key 'type'", 16, 1);
  expectError(r,
              "middleware.e.algorithms[0]: expected \"HS256\", \"RS256\" or \"ES256\", got 'none'",
              20, 15);
  expectError(r, "middleware.f.algorithms: no listed algorithm can verify a token", 23, 14);
  expectError(r, "middleware.g.public_key: cannot read /nonexistent/key.pem", 27, 14);
  expectError(r, "unknown key 'colour' in [middleware.h] (type = \"rate_limit\")", 31, 1);
  expectError(r, "route[0].middleware[1]: no middleware named 'nope'", 36, 20);
  expectError(r, "route[0].middleware[2]: middleware 'a' is listed twice", 36, 28);
  expectError(r, "route[1].middleware: expected an array of middleware names", 41, 14);
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

TEST_CASE("jwt public keys are read and checked at load") {
  EVP_PKEY* rsa = EVP_RSA_gen(2048);
  EVP_PKEY* ec = EVP_EC_gen("P-256");
  REQUIRE(rsa != nullptr);
  REQUIRE(ec != nullptr);
  std::string rsaPath = writeKey(rsa), ecPath = writeKey(ec);
  char junkPath[] = "/tmp/sluice-mwtest-XXXXXX";
  int fd = mkstemp(junkPath);
  REQUIRE(write(fd, "not a key\n", 10) == 10);
  close(fd);

  // RS256 with an EC key: unusable -> error; with ES256 also listed: only a warning.
  LoadResult r = load("[middleware.j]\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\npublic_key = \"" +
                      ecPath + "\"\n");
  expectError(r, "middleware.j.algorithms: no listed algorithm can verify a token", 8, 14);
  CHECK(hasWarning(r, "RS256 needs an RSA public key"));

  r = load("[middleware.j]\ntype = \"jwt\"\nalgorithms = [\"RS256\", \"ES256\"]\npublic_key = \"" +
           ecPath +
           "\"\n[[route]]\nname = \"r\"\npath = \"/\"\npool = \"p\"\nmiddleware = [\"j\"]\n");
  INFO(dump(r.errors));
  CHECK(r.config.has_value());
  CHECK(hasWarning(r, "RS256 tokens will be rejected"));

  r = load("[middleware.j]\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\npublic_key = \"" + rsaPath +
           "\"\n[[route]]\nname = \"r\"\npath = \"/\"\npool = \"p\"\nmiddleware = [\"j\"]\n");
  CHECK(r.config.has_value());
  CHECK(r.warnings.empty());

  r = load(
      std::string("[middleware.j]\ntype = \"jwt\"\nalgorithms = [\"ES256\"]\npublic_key = \"") +
      junkPath + "\"\n");
  expectError(r, "is not a PEM public key", 9, 14);

  unlink(rsaPath.c_str());
  unlink(ecPath.c_str());
  unlink(junkPath);
  EVP_PKEY_free(rsa);
  EVP_PKEY_free(ec);
}

TEST_CASE("middleware warnings") {
  LoadResult r = load(R"([middleware.rl]
type = "rate_limit"
key = "jwt:sub"
rate = "1/s"
[middleware.unused]
type = "rate_limit"
rate = "1/s"
[[route]]
name = "r"
path = "/"
pool = "p"
middleware = ["rl"]
)");
  INFO(dump(r.errors));
  REQUIRE(r.config.has_value());
  CHECK(hasWarning(r, "no jwt middleware comes before it"));
  CHECK(hasWarning(r, "middleware 'unused' is not used by any route"));
  // store defaults to local without [redis]
  CHECK(r.config->middleware[0].rateLimit.store == RateLimitStore::Local);
}
