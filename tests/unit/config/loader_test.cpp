// Unit tests for config/loader: a full valid file, and every class of error with its position.
#include "config/loader.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "config/units.h"
#include "tests/unit/config/load_helpers.h"

using namespace sluice::config;
using namespace sluice::config::testing;

namespace {

LoadResult load(std::string_view text) {
  return loadConfigString(text, "test.toml", {});  // no middleware types needed here
}

// A minimal valid file to append broken pieces to (lines 1-6).
constexpr std::string_view kBase = R"([[listener]]
name = "web"
listen = "127.0.0.1:8080"
[pool.p]
backends = [{ address = "127.0.0.1:9000" }]
[[route]]
)";

}  // namespace

TEST_CASE("a full valid config fills every struct") {
  ::setenv("SLUICE_LT_TOKEN", "s3cret", 1);
  ::unsetenv("SLUICE_LT_UNSET");
  const std::string text = R"([server]
workers = 4
pid_file = "/run/sluice.pid"
shutdown_timeout = "15s"
max_header_size = "16k"
max_body_size = "1m"
client_header_timeout = "5s"
client_idle_timeout = "2m"
trusted_proxies = ["10.0.0.0/8", "::1/128", "192.168.1.1"]

[admin]
listen = "127.0.0.1:9901"
token = "${SLUICE_LT_TOKEN}"

[log]
access = "/var/log/sluice/access.log"
format = "combined"
level = "warn"

[[listener]]
name = "web"
listen = "0.0.0.0:8080"
redirect_https = "https://{host}:8443{uri}"

[[listener]]
name = "web6"
listen = "[::]:${SLUICE_LT_UNSET:-8081}"

[pool.web]
backends = [
  { address = "127.0.0.1:9001", weight = 3 },
  { address = "api-blue:8000" },
]
balance = "round_robin"
connect_timeout = "250ms"
response_timeout = "30s"
idle_timeout = "1h"
retries = 0

[pool.api-blue]
backends = [{ address = "[::1]:9100", weight = 1000 }]

[[route]]
name = "api"
host = "API.Example.com"
path = "/api/"
methods = ["GET", "POST"]
strip_prefix = true
pool = "api-blue"

[[route]]
name = "app"
host = "*.example.com"
path_exact = "/healthz"
pool = "web"
)";
  LoadResult r = load(text);
  INFO(dump(r.errors));
  REQUIRE(r.errors.empty());
  REQUIRE(r.config.has_value());
  CHECK(r.warnings.empty());
  const Config& c = *r.config;
  CHECK(c.file == "test.toml");

  CHECK(c.server.workers == 4);
  CHECK(c.server.pidFile == "/run/sluice.pid");
  CHECK(c.server.shutdownTimeout == Duration{15000});
  CHECK(c.server.maxHeaderSize == 16 * 1024);
  CHECK(c.server.maxBodySize == 1024 * 1024);
  CHECK(c.server.clientHeaderTimeout == Duration{5000});
  CHECK(c.server.clientIdleTimeout == Duration{120000});
  REQUIRE(c.server.trustedProxies.size() == 3);
  CHECK(c.server.trustedProxies[0].prefixLen == 8);
  CHECK(c.server.trustedProxies[1].network.ss_family == AF_INET6);
  CHECK(c.server.trustedProxies[2].prefixLen == 32);

  CHECK(c.admin.enabled);
  CHECK(c.admin.listen.host == "127.0.0.1");
  CHECK(c.admin.listen.port == 9901);
  CHECK(c.admin.token == "s3cret");
  CHECK(c.admin.pos.line == 11);
  CHECK(c.admin.pos.col == 1);

  CHECK(c.log.access == "/var/log/sluice/access.log");
  CHECK(c.log.format == LogFormat::Combined);
  CHECK(c.log.level == LogLevel::Warn);

  REQUIRE(c.listeners.size() == 2);
  CHECK(c.listeners[0].name == "web");
  CHECK(c.listeners[0].listen.host == "0.0.0.0");
  CHECK(c.listeners[0].listen.port == 8080);
  CHECK(c.listeners[0].redirectHttps == "https://{host}:8443{uri}");
  CHECK(c.listeners[0].pos.line == 20);
  CHECK(c.listeners[1].name == "web6");
  CHECK(c.listeners[1].listen.host == "::");
  CHECK(c.listeners[1].listen.port == 8081);
  CHECK(c.listeners[1].redirectHttps.empty());
  CHECK(c.listeners[1].pos.line == 25);

  // Pools keep file order (toml++ itself orders table keys alphabetically).
  REQUIRE(c.pools.size() == 2);
  const PoolConfig& web = c.pools[0];
  CHECK(web.name == "web");
  CHECK(web.pos.line == 29);
  REQUIRE(web.backends.size() == 2);
  CHECK(web.backends[0].address == "127.0.0.1:9001");
  CHECK(web.backends[0].hostPort.host == "127.0.0.1");
  CHECK(web.backends[0].hostPort.port == 9001);
  CHECK(web.backends[0].weight == 3);
  CHECK(web.backends[0].pos.line == 31);
  CHECK(web.backends[0].pos.col == 3);
  CHECK(web.backends[1].address == "api-blue:8000");
  CHECK(web.backends[1].hostPort.host == "api-blue");
  CHECK(web.backends[1].weight == 1);
  CHECK(web.balance == Balance::RoundRobin);
  CHECK(web.connectTimeout == Duration{250});
  CHECK(web.responseTimeout == Duration{30000});
  CHECK(web.idleTimeout == Duration{3600000});
  CHECK(web.retries == 0);
  const PoolConfig& blue = c.pools[1];
  CHECK(blue.name == "api-blue");
  REQUIRE(blue.backends.size() == 1);
  CHECK(blue.backends[0].hostPort.host == "::1");
  CHECK(blue.backends[0].weight == 1000);
  // Defaults where the file is silent.
  CHECK(blue.connectTimeout == Duration{2000});
  CHECK(blue.responseTimeout == Duration{30000});
  CHECK(blue.idleTimeout == Duration{60000});
  CHECK(blue.retries == 1);

  REQUIRE(c.routes.size() == 2);
  CHECK(c.routes[0].name == "api");
  CHECK(c.routes[0].host == "api.example.com");  // lower-cased
  CHECK(c.routes[0].path == "/api/");
  CHECK(c.routes[0].pathExact.empty());
  CHECK(c.routes[0].methods == std::vector<std::string>{"GET", "POST"});
  CHECK(c.routes[0].stripPrefix);
  CHECK(c.routes[0].pool == "api-blue");
  CHECK(c.routes[0].pos.line == 43);
  CHECK(c.routes[1].host == "*.example.com");
  CHECK(c.routes[1].path.empty());
  CHECK(c.routes[1].pathExact == "/healthz");
  CHECK(c.routes[1].methods.empty());
  CHECK_FALSE(c.routes[1].stripPrefix);
  CHECK(c.routes[1].pool == "web");
}

TEST_CASE("defaults of a minimal config and string forms of workers and sizes") {
  ::setenv("SLUICE_LT_WORKERS", "8", 1);
  std::string text(kBase);
  text += "name = \"r\"\npath = \"/\"\npool = \"p\"\n";
  LoadResult r = load(text);
  INFO(dump(r.errors));
  REQUIRE(r.config.has_value());
  CHECK(r.config->server.workers == 0);  // auto
  CHECK(r.config->server.maxHeaderSize == 32 * 1024);
  CHECK_FALSE(r.config->admin.enabled);
  CHECK(r.config->log.access == "stdout");
  CHECK(r.config->log.format == LogFormat::Json);
  CHECK(r.config->log.level == LogLevel::Info);

  r = load(
      "[server]\nworkers = \"${SLUICE_LT_WORKERS:-auto}\"\nmax_body_size = 0\n"
      "shutdown_timeout = \"0\"\n" +
      text);
  INFO(dump(r.errors));
  REQUIRE(r.config.has_value());
  CHECK(r.config->server.workers == 8);
  CHECK(r.config->server.maxBodySize == 0);
  CHECK(r.config->server.shutdownTimeout == Duration{0});
}

TEST_CASE("connection caps: server.max_connections and listener.max_connections_per_ip") {
  const std::string route = "name = \"r\"\npath = \"/\"\npool = \"p\"\n";
  LoadResult r = load(std::string(kBase) + route);
  REQUIRE(r.config.has_value());
  CHECK(r.config->server.maxConnections == 0);             // "auto", resolved by the Server
  CHECK(r.config->listeners[0].maxConnectionsPerIp == 0);  // no cap

  for (const char* v : {"\"auto\"", "5000", "\"5000\""}) {
    r = load(std::string("[server]\nmax_connections = ") + v + "\n" + std::string(kBase) + route);
    INFO(v, dump(r.errors));
    REQUIRE(r.config.has_value());
    CHECK(r.config->server.maxConnections == (std::string_view(v) == "\"auto\"" ? 0 : 5000));
  }
  expectError(load("[server]\nmax_connections = 0\n" + std::string(kBase) + route),
              "server.max_connections: must be between 1 and 10000000, got 0", 2, 19);
  expectError(load("[server]\nmax_connections = \"lots\"\n" + std::string(kBase) + route),
              "server.max_connections: expected \"auto\" or an integer between 1 and 10000000, "
              "got 'lots'",
              2, 19);
  expectError(load("[server]\nmax_connections = 1.5\n" + std::string(kBase) + route),
              "server.max_connections: expected \"auto\" or an integer between 1 and 10000000, "
              "got a float",
              2, 19);

  r = load(R"([[listener]]
name = "web"
listen = "127.0.0.1:8080"
max_connections_per_ip = 20
[pool.p]
backends = [{ address = "127.0.0.1:9000" }]
[[route]]
)" + route);
  INFO(dump(r.errors));
  REQUIRE(r.config.has_value());
  CHECK(r.config->listeners[0].maxConnectionsPerIp == 20);
  expectError(load(R"([[listener]]
name = "web"
listen = "127.0.0.1:8080"
max_connections_per_ip = -1
)"),
              "listener[0].max_connections_per_ip: must be between 0 and 10000000, got -1", 4, 26);
}

TEST_CASE("listener.defer_accept: on unless turned off, a boolean") {
  const std::string rest =
      "[pool.p]\nbackends = [{ address = \"127.0.0.1:9000\" }]\n"
      "[[route]]\nname = \"r\"\npath = \"/\"\npool = \"p\"\n";
  const std::string head = "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\n";
  LoadResult r = load(head + rest);
  REQUIRE(r.config.has_value());
  CHECK(r.config->listeners[0].deferAccept);
  r = load(head + "defer_accept = false\n" + rest);
  INFO(dump(r.errors));
  REQUIRE(r.config.has_value());
  CHECK_FALSE(r.config->listeners[0].deferAccept);
  r = load(head + "defer_accept = \"yes\"\n" + rest);
  REQUIRE_FALSE(r.config.has_value());
  CHECK(dump(r.errors).find("listener[0].defer_accept") != std::string::npos);
}

TEST_CASE("unknown keys are errors with the key's exact position") {
  LoadResult r = load(R"([server]
workers = 2
  bogus = 1
[[listener]]
name = "web"
listen = "127.0.0.1:80"
  colour = "blue"
)");
  expectError(r, "unknown key 'bogus' in [server]", 3, 3);
  expectError(r, "unknown key 'colour' in [[listener]]", 7, 3);
  CHECK(r.errors.size() == 2);
  CHECK(r.errors[0].str() == "test.toml:3:3: unknown key 'bogus' in [server]");

  r = load(std::string("surprise = true\n") + std::string(kBase) +
           "name = \"r\"\npath = \"/\"\npool = \"p\"\nweight = 5\n");
  expectError(r, "unknown key 'surprise' at the top level", 1, 1);
  expectError(r, "unknown key 'weight' in [[route]]", 11, 1);

  r = load(R"([[listener]]
name = "web"
listen = "127.0.0.1:8443"
[listener.tls]
min_version = "1.2"
[pool.p]
backends = [{ address = "h:1", port = 2 }]
)");
  expectError(r, "listener[0].tls: missing required key 'certificates'", 4, 1);
  expectError(r, "unknown key 'port' in pool.p.backends[0]", 7, 32);
}

TEST_CASE("several errors in one file are all reported, sorted by position") {
  LoadResult r = load(R"([server]
workers = 0
max_header_size = "lots"
[log]
level = "verbose"
[[listener]]
name = "web"
listen = "localhost:8080"
[pool.p]
backends = [{ address = "h:1", weight = 0 }]
retries = 11
[[route]]
name = "r"
path = "api"
pool = "p"
)");
  INFO(dump(r.errors));
  CHECK_FALSE(r.config.has_value());
  REQUIRE(r.errors.size() == 7);
  CHECK(r.errors[0].str() == "test.toml:2:11: server.workers: must be between 1 and 256, got 0");
  CHECK(r.errors[1].str() ==
        "test.toml:3:19: server.max_header_size: invalid size 'lots' "
        "(expected e.g. \"512\", \"16k\", \"1m\")");
  CHECK(r.errors[2].line == 5);
  CHECK(r.errors[2].message.find("log.level: expected \"debug\"") == 0);
  CHECK(r.errors[3].line == 8);
  CHECK(r.errors[3].col == 10);
  CHECK(r.errors[3].message.find("host must be an IP address") != std::string::npos);
  CHECK(r.errors[4].line == 10);
  CHECK(r.errors[4].col == 41);
  CHECK(r.errors[4].message.find("pool.p.backends[0].weight: must be between 1 and 1000") == 0);
  CHECK(r.errors[5].line == 11);
  CHECK(r.errors[5].message.find("pool.p.retries: must be between 0 and 10") == 0);
  CHECK(r.errors[6].str() == "test.toml:14:8: route[0].path: must start with '/', got 'api'");
}

TEST_CASE("wrong types are errors naming the expected type") {
  LoadResult r = load(R"([server]
workers = true
shutdown_timeout = 30
max_body_size = 1.5
trusted_proxies = "10.0.0.0/8"
[admin]
listen = 9901
[[listener]]
name = 1
listen = "127.0.0.1:80"
[pool.p]
backends = "127.0.0.1:9000"
retries = "1"
[pool.q]
backends = ["127.0.0.1:9000"]
[[route]]
name = "r"
path = "/"
methods = "GET"
strip_prefix = "yes"
pool = "p"
)");
  expectError(r, "server.workers: expected \"auto\" or an integer between 1 and 256, got a boolean",
              2, 11);
  expectError(r,
              "server.shutdown_timeout: expected a duration string such as \"2s\", got an integer",
              3, 20);
  expectError(r, "server.max_body_size: expected a size string such as \"16k\", got a float", 4,
              17);
  expectError(r, "server.trusted_proxies: expected an array of CIDR strings, got a string", 5, 19);
  expectError(r, "admin.listen: expected a string, got an integer", 7, 10);
  expectError(r, "listener[0].name: expected a string, got an integer", 9, 8);
  expectError(r, "pool.p.backends: expected an array of", 12, 12);
  expectError(r, "pool.p.retries: expected an integer, got a string", 13, 11);
  expectError(r,
              "pool.q.backends[0]: expected a table like { address = \"host:port\" }, got a string",
              15, 13);
  expectError(r, "route[0].methods: expected an array of strings", 19, 11);
  expectError(r, "route[0].strip_prefix: expected a boolean (true or false), got a string", 20, 16);

  r = load("server = 5\nlistener = { name = \"x\" }\n");
  expectError(r, "server: expected a table ([server]), got an integer", 1, 10);
  expectError(r, "listener: expected an array of tables ([[listener]]), got a table", 2, 12);
}

TEST_CASE("missing required keys point at their table") {
  LoadResult r = load(R"([admin]
token = "t"

[[listener]]
redirect_https = "https://x{uri}"

[pool.p]
balance = "round_robin"

[pool.q]
backends = [
  { weight = 2 },
]

[[route]]
host = "a.example.com"
)");
  expectError(r, "admin: missing required key 'listen'", 1, 1);
  expectError(r, "listener[0]: missing required key 'name'", 4, 1);
  expectError(r, "listener[0]: missing required key 'listen'", 4, 1);
  expectError(r, "pool.p: missing required key 'backends'", 7, 1);
  expectError(r, "pool.q.backends[0]: missing required key 'address'", 12, 3);
  expectError(r, "route[0]: missing required key 'name'", 15, 1);
  expectError(r, "route[0]: missing required key 'path' (or 'path_exact', 'path_regex')", 15, 1);
  expectError(r, "route[0]: missing required key 'pool'", 15, 1);

  r = load("[pool.p]\nbackends = []\n");
  expectError(r, "pool.p.backends: must not be empty", 2, 12);
  expectError(r, "at least one [[listener]] is required", 1, 1);

  r = load("");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].str() == "test.toml:1:1: at least one [[listener]] is required");
}

TEST_CASE("a route naming a missing pool points at the pool value") {
  std::string text(kBase);
  text += "name = \"r\"\npath = \"/\"\npool =   \"nope\"\n";
  LoadResult r = load(text);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].str() ==
        "test.toml:9:10: route[0].pool: no pool named 'nope' (define it with [pool.nope])");
  CHECK_FALSE(r.config.has_value());

  // An invalid pool still counts as declared: no second, misleading error on the route.
  r = load(std::string(kBase) +
           "name = \"r\"\npath = \"/\"\npool = \"bad\"\n[pool.bad]\nretries = 1\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].message == "pool.bad: missing required key 'backends'");
}

TEST_CASE("duplicate names and addresses") {
  LoadResult r = load(R"([admin]
listen = "127.0.0.1:9901"
[[listener]]
name = "web"
listen = "0.0.0.0:80"
[[listener]]
name = "web"
listen = "0.0.0.0:80"
[[listener]]
name = "adm"
listen = "127.0.0.1:9901"
[[listener]]
name = "v6"
listen = "[0::0]:443"
[[listener]]
name = "v6b"
listen = "[::]:443"
[pool.p]
backends = [{ address = "h:1" }, { address = "h:1" }]
[[route]]
name = "r"
path = "/"
pool = "p"
[[route]]
name = "r"
path = "/x"
pool = "p"
)");
  expectError(r, "listener[1].name: duplicate listener name 'web' (first used at line 4)", 7, 8);
  expectError(r,
              "listener[1].listen: address 0.0.0.0:80 is already used by listener 'web' (line 5)",
              8, 10);
  expectError(r, "address 127.0.0.1:9901 is already used by [admin] (line 2)", 11, 10);
  expectError(r, "address [::]:443 is already used by listener 'v6'", 17, 10);
  expectError(r, "pool.p.backends[1].address: duplicate backend 'h:1'", 19, 46);
  expectError(r, "route[1].name: duplicate route name 'r' (first used at line 21)", 25, 8);
  CHECK(r.errors.size() == 6);
}

TEST_CASE("bad listen addresses") {
  auto listenErr = [](const std::string& listen) {
    return load("[[listener]]\nname = \"w\"\nlisten = \"" + listen + "\"\n");
  };
  expectError(listenErr("localhost:8080"), "host must be an IP address", 3, 10);
  expectError(listenErr("0.0.0.0"), "missing port", 3, 10);
  expectError(listenErr("0.0.0.0:0"), "invalid port '0'", 3, 10);
  expectError(listenErr("[::1]:99999"), "invalid port '99999'", 3, 10);
  expectError(listenErr("::1:80"), "need brackets", 3, 10);
  expectError(listenErr("300.0.0.1:80"), "invalid IPv4 address", 3, 10);
  // A good address gives no listen error (only the unrelated "no route" warning).
  LoadResult ok = listenErr("127.0.0.1:80");
  INFO(dump(ok.errors));
  CHECK(ok.errors.empty());
  REQUIRE(ok.config.has_value());
  CHECK(ok.config->listeners[0].listen.port == 80);
}

TEST_CASE("a TOML syntax error is reported with toml++'s position") {
  LoadResult r = load("[server]\nworkers = 2\nshutdown_timeout = \"30s\n");
  REQUIRE(r.errors.size() == 1);
  CHECK_FALSE(r.config.has_value());
  CHECK(r.errors[0].line == 3);
  CHECK(r.errors[0].col > 1);
  CHECK(r.errors[0].message.find("TOML syntax error: ") == 0);

  r = load("[[listener]]\nname = \"a\"\nname = \"b\"\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].line == 3);
  CHECK(r.errors[0].message.find("TOML syntax error: ") == 0);
  CHECK(r.errors[0].str().rfind("test.toml:3:", 0) == 0);
}

TEST_CASE("environment interpolation in values") {
  ::setenv("SLUICE_LT_PORT", "9090", 1);
  ::unsetenv("SLUICE_LT_MISSING");
  LoadResult r = load(R"([admin]
listen = "127.0.0.1:${SLUICE_LT_PORT}"
token = "${SLUICE_LT_MISSING:-fallback}"
[[listener]]
name = "web"
listen = "127.0.0.1:${SLUICE_LT_MISSING}"
)");
  expectError(r, "listener[0].listen: environment variable 'SLUICE_LT_MISSING' is not set", 6, 10);
  REQUIRE(r.errors.size() == 1);

  r = load(R"([admin]
listen = "127.0.0.1:${SLUICE_LT_PORT}"
token = "${SLUICE_LT_MISSING:-fallback}"
[[listener]]
name = "${SLUICE_LT_MISSING:-web}"
listen = "127.0.0.1:80"
)");
  INFO(dump(r.errors));
  REQUIRE(r.config.has_value());
  CHECK(r.config->admin.listen.port == 9090);
  CHECK(r.config->admin.token == "fallback");
  CHECK(r.config->listeners[0].name == "web");

  // Interpolation happens before interpretation: a bad result is reported on the value.
  ::setenv("SLUICE_LT_BAD", "soon", 1);
  r = load("[server]\nshutdown_timeout = \"${SLUICE_LT_BAD}\"\n");
  expectError(r, "server.shutdown_timeout: invalid duration 'soon'", 2, 20);
  r = load("[log]\nformat = \"${NOT VALID}\"\n");
  expectError(r, "log.format: invalid environment variable reference", 2, 10);
}

TEST_CASE("value rules: ranges, enums, paths, methods, redirects, names") {
  LoadResult r = load(R"([server]
workers = 257
max_header_size = "512"
client_idle_timeout = "0s"
[log]
format = "xml"
access = ""
[[listener]]
name = "web"
listen = "127.0.0.1:80"
redirect_https = "http://example.com"
[pool."bad name"]
backends = [{ address = "h:1" }]
[pool.p]
backends = [{ address = "h:1", weight = 1001 }]
balance = "fastest"
connect_timeout = "2 s"
[pool.q]
backends = [{ address = "h" }]
balance = "random"
[[route]]
name = "r"
path = "/a"
path_exact = "/b"
pool = "p"
[[route]]
name = "s"
path_exact = "/b"
strip_prefix = true
methods = ["get", "POST"]
host = "bad host"
pool = "q"
[[route]]
name = "t"
path = "/has space"
methods = []
pool = "p"
)");
  expectError(r, "server.workers: must be between 1 and 256, got 257", 2, 11);
  expectError(r, "server.max_header_size: must be between 1k and 1m", 3, 19);
  expectError(r, "server.client_idle_timeout: must be greater than 0", 4, 23);
  expectError(r, "log.format: expected \"json\" or \"combined\", got 'xml'", 6, 10);
  expectError(r, "log.access: expected \"stdout\", \"off\" or a file path", 7, 10);
  expectError(r, "listener[0].redirect_https: expected an https:// URL", 11, 18);
  expectError(r, "invalid pool name 'bad name'", 12, 7);
  expectError(r, "pool.p.backends[0].weight: must be between 1 and 1000, got 1001", 15, 41);
  expectError(r, "pool.p.balance: expected \"round_robin\", \"least_conn\", \"p2c\" or \"hash\", got 'fastest'", 16, 11);
  expectError(r, "pool.p.connect_timeout: invalid duration '2 s'", 17, 19);
  expectError(r, "pool.q.backends[0].address: expected host:port (missing port)", 19, 25);
  expectError(r, "pool.q.balance: expected \"round_robin\", \"least_conn\", \"p2c\" or \"hash\", got 'random'", 20, 11);
  expectError(r, "route[0]: use exactly one of 'path', 'path_exact' and 'path_regex'", 24, 14);
  expectError(r, "route[1].strip_prefix: only allowed with 'path'", 29, 16);
  expectError(r, "route[1].methods[0]: invalid method 'get'", 30, 12);
  expectError(r, "route[1].host: invalid host 'bad host'", 31, 8);
  expectError(r, "route[2].path: must not contain spaces", 35, 8);
  expectError(r, "route[2].methods: must not be empty", 36, 11);
  CHECK(r.errors.size() == 18);

  for (const char* bal : {"round_robin", "least_conn", "p2c", "hash"}) {
    CAPTURE(bal);
    r = load(std::string(kBase) + "name = \"r\"\npath = \"/\"\npool = \"p\"\n[pool.p2]\n" +
             "backends = [{ address = \"h:1\" }]\nbalance = \"" + bal + "\"\n");
    INFO(dump(r.errors));
    CHECK(r.config.has_value());
  }

  // redirect_https: a {uri} template without https:// is accepted, as is a plain https URL.
  r = load(
      "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:80\"\nredirect_https = \"{uri}\"\n"
      "[[listener]]\nname = \"b\"\nlisten = \"127.0.0.1:81\"\n"
      "redirect_https = \"https://example.com\"\n");
  INFO(dump(r.errors));
  REQUIRE(r.config.has_value());
  CHECK(r.config->listeners[0].redirectHttps == "{uri}");
  CHECK(r.config->listeners[1].redirectHttps == "https://example.com");
}

TEST_CASE("warnings do not block loading") {
  LoadResult r = load(std::string(kBase) + "name = \"r\"\npath = \"/\"\npool = \"p\"\n" +
                      "methods = [\"GET\", \"GET\"]\n[pool.unused]\n" +
                      "backends = [{ address = \"h:1\" }]\n[[route]]\nname = \"r2\"\n" +
                      "path = \"/\"\nmethods = [\"GET\"]\npool = \"p\"\n");
  INFO(dump(r.errors), dump(r.warnings));
  REQUIRE(r.config.has_value());
  REQUIRE(r.warnings.size() == 3);
  CHECK(r.warnings[0].str() ==
        "test.toml:10:19: route[0].methods[1]: method 'GET' is listed twice");
  CHECK(r.warnings[1].str() == "test.toml:11:1: pool 'unused' is not used by any route");
  CHECK(r.warnings[2].line == 13);
  CHECK(r.warnings[2].message.find("route 'r2' matches the same host, path and methods as "
                                   "route 'r' (line 6)") == 0);
  CHECK(r.config->routes[0].methods == std::vector<std::string>{"GET"});
}

TEST_CASE("server.state_file in a folder that cannot be written is a warning") {
  const std::string route = "name = \"r\"\npath = \"/\"\npool = \"p\"\n";
  LoadResult bad = load("[server]\nstate_file = \"/nonexistent-sluice-dir/state.json\"\n" +
                        std::string(kBase) + route);
  INFO(dump(bad.errors), dump(bad.warnings));
  REQUIRE(bad.config.has_value());
  REQUIRE(bad.warnings.size() == 1);
  CHECK(bad.warnings[0].str().find("test.toml:2:14: server.state_file: cannot write in "
                                   "'/nonexistent-sluice-dir'") == 0);
  LoadResult ok =
      load("[server]\nstate_file = \"/tmp/sluice-state.json\"\n" + std::string(kBase) + route);
  CHECK(ok.warnings.empty());
}

TEST_CASE("loadConfigFile reads a file and reports unreadable ones") {
  char path[] = "/tmp/sluice_loader_test_XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  {
    std::ofstream out(path);
    out << "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\n  oops = 1\n";
  }
  LoadResult r = loadConfigFile(path, {});
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].str() == std::string(path) + ":4:3: unknown key 'oops' in [[listener]]");

  {
    std::ofstream out(path);
    out << "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\n";
  }
  r = loadConfigFile(path, {});
  REQUIRE(r.config.has_value());
  CHECK(r.config->file == path);
  ::unlink(path);

  r = loadConfigFile("/nonexistent/sluice.toml", {});
  REQUIRE(r.errors.size() == 1);
  CHECK_FALSE(r.config.has_value());
  CHECK(r.errors[0].str() ==
        "/nonexistent/sluice.toml: cannot read config file: No such file or directory");

  r = loadConfigFile("/tmp", {});
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].message == "cannot read config file: Is a directory");
}
