// The registered middleware types through the loader: [middleware.NAME] tables of type
// rate_limit and jwt (middleware::parsers()), and [[route]] middleware lists naming them.
#include <doctest/doctest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "config/loader.h"
#include "middleware/jwt_config.h"
#include "middleware/rate_limit_config.h"
#include "middleware/registry.h"
#include "tests/unit/config/load_helpers.h"

using namespace sluice::config;
using namespace sluice::config::testing;
using sluice::middleware::JwtSettings;
using sluice::middleware::RateLimitKeyKind;
using sluice::middleware::RateLimitSettings;
using sluice::middleware::RateLimitStore;
using sluice::middleware::settingsAs;

namespace {

LoadResult load(std::string_view rest) {
  return loadAfterBase(rest, sluice::middleware::parsers());
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
  CHECK(c.middleware[0].type == "rate_limit");
  const auto* perUser = settingsAs<RateLimitSettings>(c.middleware[0]);
  REQUIRE(perUser != nullptr);
  CHECK(perUser->keyKind == RateLimitKeyKind::Header);
  CHECK(perUser->keyName == "X-API-Key");
  CHECK(perUser->rate == 100);
  CHECK(perUser->period == Duration(60000));
  CHECK(perUser->burst == 20);
  CHECK(c.middleware[1].type == "jwt");
  const auto* auth = settingsAs<JwtSettings>(c.middleware[1]);
  REQUIRE(auth != nullptr);
  CHECK(auth->required == false);
  CHECK(auth->audience == "api");
  const auto* byIp = settingsAs<RateLimitSettings>(c.middleware[2]);
  REQUIRE(byIp != nullptr);
  CHECK(byIp->keyKind == RateLimitKeyKind::Ip);
  // With [redis] present the store defaults to redis.
  CHECK(byIp->store == RateLimitStore::Redis);
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
  expectError(r,
              "middleware.b.type: expected \"rate_limit\", \"jwt\", \"cors\" or \"headers\", "
              "got 'magic'",
              13, 8);
  expectError(r, "middleware.c: missing required key 'allow_origins'", 14, 1);
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
  const auto* rl = settingsAs<RateLimitSettings>(r.config->middleware[0]);
  REQUIRE(rl != nullptr);
  CHECK(rl->store == RateLimitStore::Local);
}
