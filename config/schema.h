// Plain structs that the TOML loader fills. No behaviour, no uv handles: a Config is the
// validated user intent; the runtime Snapshot (proxy/snapshot.h) is compiled from it.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sluice::config {

using Duration = std::chrono::milliseconds;

// 1-based position of a key or value in the TOML file (0 = unknown).
struct SourcePos {
  int line = 0;
  int col = 0;
};

// A parsed "host:port". `host` is an IP literal for listeners; backends may use names.
struct HostPort {
  std::string host;  // without IPv6 brackets
  uint16_t port = 0;
};

// An IPv4 or IPv6 network, e.g. 10.0.0.0/8 or ::1/128.
struct Cidr {
  sockaddr_storage network{};  // family + address bytes, host bits zeroed
  int prefixLen = 0;
};

// Where release state lives: this process only, or shared through [redis] by every instance.
enum class ReleaseStore { Local, Redis };

// Upper bound of server.max_connections and listener.max_connections_per_ip.
constexpr int64_t kMaxConnectionsLimit = 10'000'000;

struct ServerSettings {
  unsigned workers = 0;  // 0 = "auto" (number of CPUs)
  std::string pidFile;   // empty = none
  // Client connections open at once, all workers together (each worker takes its share).
  // 0 = "auto": the Server derives it from the open-file limit before a snapshot is built.
  uint64_t maxConnections = 0;
  Duration shutdownTimeout{30000};
  uint64_t maxHeaderSize = 32 * 1024;
  uint64_t maxBodySize = 100ull * 1024 * 1024;  // 0 = unlimited
  Duration clientHeaderTimeout{10000};
  Duration clientIdleTimeout{60000};
  std::vector<Cidr> trustedProxies;
  // Release state (live split weights, rollbacks, promotion steps) is written here on every
  // change and read back at startup and on reload; empty = kept in memory only.
  std::string stateFile;
  ReleaseStore releaseStore = ReleaseStore::Local;
  SourcePos releaseStorePos;
};

struct AdminSettings {
  bool enabled = false;  // true when an [admin] table is present
  HostPort listen;
  std::string token;  // empty = no auth
  SourcePos pos;
};

enum class LogFormat { Json, Combined };
enum class LogLevel { Debug, Info, Warn, Error };

struct LogSettings {
  std::string access = "stdout";  // "stdout" | "off" | a file path
  LogFormat format = LogFormat::Json;
  LogLevel level = LogLevel::Info;
};

struct TlsCertificateConfig {
  std::string cert;  // PEM chain, leaf first
  std::string key;   // PEM private key
  std::string ocsp;  // optional DER OCSP response to staple
  SourcePos pos;
};

struct ListenerTls {
  bool enabled = false;                            // true when [listener.tls] is present
  std::vector<TlsCertificateConfig> certificates;  // the first is the default
  std::string minVersion = "1.2";                  // "1.2" | "1.3"
  std::vector<std::string> alpn{"http/1.1"};
  std::string hsts;  // Strict-Transport-Security value; empty = none
  bool sessionTickets = true;
  // How long a session may be resumed (session cache and tickets); whole seconds, 1s-24h.
  Duration sessionTimeout{300000};
  SourcePos pos;
};

struct ListenerConfig {
  std::string name;
  HostPort listen;
  std::string redirectHttps;  // empty = route normally
  // Open connections from one peer address; 0 = no cap.
  uint32_t maxConnectionsPerIp = 0;
  // TCP_DEFER_ACCEPT: a connection is handed over once the client's first bytes arrived.
  bool deferAccept = true;
  ListenerTls tls;
  SourcePos pos;
};

enum class Balance { RoundRobin, LeastConn, P2c, Hash };

// What `balance = "hash"` hashes: the client IP, a request header or a cookie.
struct HashKey {
  enum class Kind { Ip, Header, Cookie };
  Kind kind = Kind::Ip;
  std::string name;  // header (lower-case) or cookie name
};

// [pool.X.health]: active HTTP checks run by the main thread.
struct HealthCheckConfig {
  bool enabled = false;  // true when the table is present
  std::string path = "/health";
  Duration interval{2000};
  Duration timeout{1000};
  uint32_t healthyThreshold = 2;
  uint32_t unhealthyThreshold = 3;
  int expectStatusLo = 200;
  int expectStatusHi = 399;
  SourcePos pos;
};

// [pool.X.outlier]: passive checks from real traffic.
struct OutlierConfig {
  bool enabled = false;  // true when the table is present
  uint32_t consecutiveFailures = 5;
  Duration ejectionTime{30000};
  SourcePos pos;
};

struct BackendConfig {
  std::string address;  // as written, "host:port"
  HostPort hostPort;
  uint32_t weight = 1;
  SourcePos pos;
};

struct PoolConfig {
  std::string name;
  std::vector<BackendConfig> backends;
  Balance balance = Balance::RoundRobin;
  Duration connectTimeout{2000};
  Duration responseTimeout{30000};
  Duration idleTimeout{60000};
  uint32_t retries = 1;
  HashKey hashKey;                 // balance = "hash"
  uint32_t maxConnections = 0;     // in-flight requests per backend; 0 = unlimited
  Duration resolveInterval{5000};  // DNS re-resolution of hostname backends
  HealthCheckConfig health;
  OutlierConfig outlier;
  bool tls = false;           // HTTPS to the backends
  bool tlsVerify = true;      // verify the backend certificate and host name
  std::string tlsCa;          // CA bundle file; empty = the system store
  std::string tlsServerName;  // SNI / verified name; empty = the backend's host
  SourcePos pos;
};

// A route's traffic split: one arm per pool; the first is the baseline.
struct SplitArm {
  std::string pool;
  uint32_t weight = 0;  // relative; 0 = no new traffic
  SourcePos pos;
};

// What keeps a user on one side of a split ("sticky").
enum class StickyKind : uint8_t { None, Ip, Header, Cookie, JwtClaim, Auto };

// [route.rollback]: automatic canary rollback. A canary (every split pool but the first) whose
// error rate or p99 latency crosses a limit over the sliding window is set to weight 0.
struct RollbackRules {
  bool enabled = false;
  double maxErrorRate = -1;  // < 0 = not judged
  double maxP99Ratio = 0;    // 0 = not judged; canary p99 over the baseline's
  uint32_t minRequests = 50;
  Duration window{30000};
  SourcePos pos;
};

// [route.promote]: progressive delivery of the split's second pool (the canary).
struct PromoteRules {
  bool enabled = false;
  std::vector<uint32_t> steps;  // canary percentages, strictly increasing, 1-100
  Duration interval{120000};
  SourcePos pos;
};

// return = { status = 301, location = "https://{host}{uri}" }: the proxy answers the route's
// requests itself (after its middleware), no pool involved.
struct ReturnConfig {
  bool enabled = false;
  int status = 0;           // 200-599
  std::string location;     // template: {host}, {uri}, {scheme}; required for 3xx
  std::string body;         // literal; empty = no body
  std::string contentType;  // with a body; defaults to text/plain
  SourcePos pos;
};

// static = { root = "/srv/app", index = [...], try_files = [...] }: the route's requests are
// answered with files from a directory (GET and HEAD), no pool involved.
struct StaticConfig {
  bool enabled = false;
  std::string dir;     // `root` or `alias`: absolute (resolved against the config's directory)
  bool alias = false;  // the route's path prefix is replaced by `dir` (nginx alias), not kept
  std::vector<std::string> index{"index.html"};  // tried in order for a directory
  // Candidates in order ($uri = the request path below the route's files; a trailing '/'
  // means a directory); the last is the fallback: a path, or "=CODE". Empty: just $uri.
  std::vector<std::string> tryFiles;
  std::string cacheControl;    // Cache-Control of file answers; empty = none
  bool precompressed = false;  // serve FILE.br / FILE.gz when the client accepts them
  // How long a worker reuses a small file's lookup (content and validators) without asking the
  // disk again; 0 = look up on every request.
  Duration cacheValid{1000};
  SourcePos pos;
};

struct RouteConfig {
  std::string name;
  std::string host;  // empty = any; "*.example.com" = wildcard
  // Exactly one of path, pathExact, pathRegex is set.
  std::string path;             // prefix match
  std::string pathExact;        // exact match
  std::string pathRegex;        // RE2 pattern, searched (unanchored) in the raw path
  bool prefixPriority = false;  // `path` only: when it is the longest prefix, no regex is tried
  std::string rewrite;          // pathRegex only: upstream target template ($0..$9)
  std::vector<std::string> methods;  // empty = any; upper-case
  bool stripPrefix = false;
  std::string pool;             // or `split`, or `ret`
  ReturnConfig ret;             // enabled: a fixed answer instead of a pool
  StaticConfig files;           // enabled: files from a directory instead of a pool
  std::vector<SplitArm> split;  // empty unless the route splits traffic
  StickyKind sticky = StickyKind::None;
  std::string stickyName;      // header, cookie or claim name
  std::string cohort;          // hash with this name instead of the route's (shared cohorts)
  std::string overrideHeader;  // "X-Canary: <pool>" forces that pool of the split
  std::string overrideCookie;  // cookie <name>=<pool> forces that pool of the split
  RollbackRules rollback;
  PromoteRules promote;
  // A pool of the split whose live weight stayed 0 this long (and that no route sends new
  // traffic to) has its WebSocket tunnels and keep-alive connections closed; 0 = off.
  Duration drainTimeout{0};
  std::vector<std::string> middleware;  // [middleware.NAME] names, applied in order
  SourcePos pos;
};

// [redis]: the shared store of `store = "redis"` rate limits.
enum class RedisFailureMode { Open, Closed };

struct RedisSettings {
  bool enabled = false;                          // true when a [redis] table is present
  std::string url = "redis://127.0.0.1:6379/0";  // as written (after ${ENV})
  bool unixSocket = false;
  std::string host = "127.0.0.1";  // tcp: IP literal or host name, without brackets
  uint16_t port = 6379;
  std::string path;      // unix:///path
  std::string password;  // empty = no AUTH
  int db = 0;            // SELECT db when non-zero
  Duration timeout{50};  // per command
  RedisFailureMode failureMode = RedisFailureMode::Open;
  SourcePos pos;
};

// [tracing]: OpenTelemetry spans, exported as OTLP/HTTP JSON (docs/observability.md).
struct TracingSettings {
  bool enabled = false;  // true when a [tracing] table is present
  std::string endpoint;  // as written (after ${ENV}): http://host[:port]/path
  std::string host;      // from the endpoint, without brackets
  uint16_t port = 80;
  std::string path = "/";
  double sampleRatio = 1.0;  // for requests without a parent
  std::string serviceName = "sluice";
  std::vector<std::pair<std::string, std::string>> resourceAttributes;  // in file order
  uint32_t queueSize = 4096;  // spans per worker waiting for the exporter
  uint32_t batchSize = 512;   // spans per POST at most
  Duration exportInterval{1000};
  Duration exportTimeout{5000};  // one POST (connect, send, answer)
  SourcePos pos;
};

// The settings of one [middleware.NAME] table. Each middleware type defines its own subclass
// (in middleware/, next to its filter) and parses it through config/middleware_types.h; the
// config layer only carries it, immutable, from the loader to that type's factory builder.
class MiddlewareSettings {
 public:
  virtual ~MiddlewareSettings() = default;
  // True when the middleware verifies claims that later ones may read (RequestContext::claims).
  virtual bool providesClaims() const { return false; }
  // Non-empty when the middleware reads verified claims: its key as written (e.g. "jwt:sub"),
  // for the warning about a route that lists no claim provider before it.
  virtual std::string claimsKey() const { return {}; }
  // True for cors: it answers preflights, which carry no credentials, so a middleware that
  // refuses requests (refusesRequests) must not come before it on a route.
  virtual bool answersPreflights() const { return false; }
  virtual bool refusesRequests() const { return false; }
};
using MiddlewareSettingsPtr = std::shared_ptr<const MiddlewareSettings>;

struct MiddlewareConfig {
  std::string name;
  std::string type;                // as written: "rate_limit", "jwt", ...
  MiddlewareSettingsPtr settings;  // never null in a loaded Config
  SourcePos pos;
};

struct Config {
  std::string file;  // path it was read from
  ServerSettings server;
  AdminSettings admin;
  LogSettings log;
  std::vector<ListenerConfig> listeners;
  std::vector<PoolConfig> pools;    // in file order
  std::vector<RouteConfig> routes;  // in file order
  RedisSettings redis;
  std::vector<MiddlewareConfig> middleware;  // in file order
  TracingSettings tracing;
};

}  // namespace sluice::config
