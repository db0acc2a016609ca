// Unit tests for config/nginx/convert: what each nginx shape becomes in TOML, the warnings
// with FILE:LINE, the counts, and the promise that the output always loads (mutated and
// truncated configurations included).
#include "config/nginx/convert.h"

#include <doctest/doctest.h>

#include <random>
#include <sstream>
#include <string>

#include "config/loader.h"
#include "config/nginx/parser.h"
#include "middleware/registry.h"

using namespace sluice::config;
using namespace sluice::config::nginx;

namespace {

struct Converted {
  ConvertResult res;
  LoadResult load;

  bool has(std::string_view s) const { return res.toml.find(s) != std::string::npos; }
  // The warning (or note) at LINE whose text contains `needle`.
  bool warned(int line, std::string_view needle) const {
    for (const auto* list : {&res.warnings, &res.notes})
      for (const Diag& d : *list)
        if (d.at.line == line && d.at.file == "n.conf" &&
            d.message.find(needle) != std::string::npos)
          return true;
    return false;
  }
  std::string dump() const {
    std::string s = res.toml + "\n--- warnings\n";
    for (const Diag& d : res.warnings) s += d.str() + "\n";
    for (const Diag& d : res.notes) s += "note " + d.str() + "\n";
    for (const Diag& d : res.errors) s += "error " + d.str() + "\n";
    for (const auto& e : load.errors) s += "load: " + e.str() + "\n";
    return s;
  }
};

Converted conv(std::string_view text) {
  auto p = parseText(text, "n.conf", "");
  REQUIRE(p.errors.empty());
  Converted c;
  c.res = convert(p.directives, {"n.conf", "test"});
  if (c.res.errors.empty())
    c.load = loadConfigString(c.res.toml, "out.toml", sluice::middleware::parsers());
  return c;
}

// A server block around `body`, on 127.0.0.1:8080.
std::string server(std::string_view body, std::string_view http = "") {
  return "http {\n" + std::string(http) + "server {\nlisten 127.0.0.1:8080;\n" + std::string(body) +
         "\n}\n}\n";
}

}  // namespace

TEST_CASE("convert: proxy_pass with and without a URI part, as nginx replaces it") {
  auto c = conv(server(R"(proxy_set_header Host $host;
location /api/ { proxy_pass http://127.0.0.1:9000/; }
location /v1/ { proxy_pass http://127.0.0.1:9000/v2/; }
location /raw/ { proxy_pass http://127.0.0.1:9000; }
location = /login { proxy_pass http://127.0.0.1:9000/auth; }
location /x { proxy_pass http://127.0.0.1:9000/; }
location ~ \.php$ { proxy_pass http://127.0.0.1:9000/p/; })"));
  INFO(c.dump());
  REQUIRE(c.load.config);
  CHECK(c.has("path = \"/api/\"\nstrip_prefix = true"));
  CHECK(c.has("path_regex = '^/v1/(.*)$'\nrewrite = \"/v2/$1\""));
  CHECK(c.has("path = \"/raw/\"\npool = \"127.0.0.1-9000\""));
  CHECK(c.has("path_regex = '^/login$'\nrewrite = \"/auth\""));
  CHECK(c.has("path_regex = '^/x(.*)$'\nrewrite = \"/$1\""));  // nginx: /x/y -> //y
  CHECK(c.warned(10, "nginx refuses a URI part"));
  // The prefix written as a pattern goes after the real patterns: /v1/a.php is the regex's.
  const auto& routes = c.load.config->routes;
  size_t php = 0, v1 = 0;
  for (size_t i = 0; i < routes.size(); ++i) {
    if (routes[i].pathRegex == "^/v1/(.*)$") v1 = i;
    if (routes[i].pathRegex == "\\.php$") php = i;
  }
  CHECK(php == 0);  // the skipped php location left no route: nothing precedes v1 wrongly
  CHECK(v1 > 0);
}

TEST_CASE("convert: location kinds and nginx's order") {
  auto c = conv(server(R"(proxy_set_header Host $host;
location = /exact { proxy_pass http://127.0.0.1:9000; }
location ^~ /static/ { proxy_pass http://127.0.0.1:9000; }
location ~* \.(png|jpg)$ { proxy_pass http://127.0.0.1:9001; }
location ~ ^/api/(?<v>v[0-9]+)/ { proxy_pass http://127.0.0.1:9001; }
location / { proxy_pass http://127.0.0.1:9000; })"));
  INFO(c.dump());
  REQUIRE(c.load.config);
  CHECK(c.has("path_exact = \"/exact\""));
  CHECK(c.has("path = \"/static/\"\nprefix_priority = true"));
  CHECK(c.has("path_regex = '(?i)\\.(png|jpg)$'"));
  CHECK(c.has("path_regex = '^/api/(?P<v>v[0-9]+)/'"));
  CHECK(c.res.warnings.empty());
  // A pattern RE2 cannot compile is not converted, with its position.
  c = conv(server("location ~ ^/(a)\\1 { return 200; }\nlocation / { return 204; }"));
  CHECK(c.warned(4, "RE2 cannot compile"));
  CHECK(c.load.config);
}

TEST_CASE("convert: the HTTP -> HTTPS server is a redirect_https listener (308)") {
  auto c = conv(R"(http {
server { listen 80; server_name a.test; return 301 https://$host$request_uri; }
server { listen 127.0.0.1:8081; server_name b.test; location / { return 200 "b"; } }
})");
  INFO(c.dump());
  REQUIRE(c.load.config);
  CHECK(c.has("listen = \"0.0.0.0:80\"\nredirect_https = \"https://{host}{uri}\""));
  CHECK(c.warned(2, "308 Permanent Redirect instead of 301"));
  // The redirect server has no routes; the other one is the default of its port.
  CHECK(c.has("return = { status = 200, body = \"b\" }"));
  CHECK_FALSE(c.has("host = \"a.test\""));
}

TEST_CASE("convert: server names, the default server and wildcards") {
  auto c = conv(R"(http {
proxy_set_header Host $host;
server { listen 127.0.0.1:8080; server_name a.example.com; location / { proxy_pass http://127.0.0.1:1; } }
server { listen 127.0.0.1:8080; server_name *.example.com .corp.test; location / { proxy_pass http://127.0.0.1:2; } }
server { listen 127.0.0.1:8080; server_name ~^(?<x>.+)\.re\.test$ www.shop.*; location / { proxy_pass http://127.0.0.1:3; } }
})");
  INFO(c.dump());
  REQUIRE(c.load.config);
  const auto& routes = c.load.config->routes;
  // The default server (the first): without host, and under a.example.com too, because
  // *.example.com would take that name first in Sluice.
  REQUIRE(routes.size() >= 5);
  CHECK(routes[0].host.empty());
  CHECK(routes[1].host == "a.example.com");
  CHECK(routes[2].host == "*.example.com");
  CHECK(routes[3].host == "corp.test");
  CHECK(routes[4].host == "*.corp.test");
  CHECK(c.warned(5, "regular-expression names are not supported"));
  CHECK(c.warned(5, "only leading wildcards"));
  // A named server without a / location gets a catch-all 404, never another server's routes.
  c = conv(R"(http {
server { listen 127.0.0.1:8080; location / { return 200 "default"; } }
server { listen 127.0.0.1:8080; server_name api.test; location /v1/ { return 200 "v1"; } }
})");
  REQUIRE(c.load.config);
  CHECK(c.has("host = \"api.test\"\npath = \"/\"\nreturn = { status = 404 }"));
}

TEST_CASE("convert: upstreams") {
  auto c = conv(server(R"(location / { proxy_pass http://app; proxy_set_header Host $host; })",
                       R"(upstream app {
  least_conn;
  server 10.0.0.1:8080 weight=3 max_fails=3 fail_timeout=30s;
  server 10.0.0.2:8080;
  server 10.0.0.3 backup;
  server 10.0.0.4 down;
  keepalive 32;
  keepalive_timeout 75s;
}
upstream unused { server 10.9.9.9; }
)"));
  INFO(c.dump());
  REQUIRE(c.load.config);
  CHECK(c.has("{ address = \"10.0.0.1:8080\", weight = 3 },"));
  CHECK(c.has("# { address = \"10.0.0.3:80\" },  backup server"));
  CHECK(c.has("# { address = \"10.0.0.4:80\" },  marked down"));
  CHECK(c.has("balance = \"least_conn\""));
  CHECK(c.has("idle_timeout = \"75s\""));
  CHECK(c.has("outlier = { consecutive_failures = 3, ejection_time = \"30s\" }"));
  CHECK(c.has("response_timeout = \"60s\""));  // nginx's default proxy_read_timeout
  CHECK(c.warned(6, "Sluice has no backup servers"));
  CHECK(c.warned(11, "no converted location uses it"));
  CHECK_FALSE(c.has("[pool.unused]"));

  c = conv(server(
      R"(proxy_set_header Host $host;
location /u/ { proxy_pass http://users; }
location /s/ { proxy_pass http://sess; proxy_read_timeout 5m; proxy_next_upstream off; })",
      R"(upstream users { hash $http_x_user_id consistent; server 10.0.0.1; server 10.0.0.2; }
upstream sess { ip_hash; server 10.0.0.1; server 10.0.0.2; server 10.0.0.3; }
)"));
  INFO(c.dump());
  REQUIRE(c.load.config);
  CHECK(c.has("balance = \"hash\"\nhash_key = \"header:x-user-id\""));
  CHECK(c.has("balance = \"hash\"\nhash_key = \"ip\""));
  CHECK(c.has("response_timeout = \"5m\""));
  CHECK(c.has("retries = 0"));
}

TEST_CASE("convert: one upstream with different location settings is one pool per setting") {
  auto c = conv(server(R"(proxy_set_header Host $host;
location /a/ { proxy_pass http://app; }
location /b/ { proxy_pass http://app; proxy_read_timeout 300s; }
location /c/ { proxy_pass http://app; })",
                       "upstream app { server 10.0.0.1; }\n"));
  INFO(c.dump());
  REQUIRE(c.load.config);
  CHECK(c.has("[pool.app]"));
  CHECK(c.has("[pool.app-2]"));
  CHECK_FALSE(c.has("[pool.app-3]"));
  CHECK(c.has("response_timeout = \"5m\""));
}

TEST_CASE("convert: rate limits") {
  auto c = conv(server(R"(proxy_set_header Host $host;
location = /login { limit_req zone=login burst=5 nodelay; proxy_pass http://127.0.0.1:1; }
location /api/ { limit_req zone=api burst=20; proxy_pass http://127.0.0.1:1; }
location /search { limit_req zone=slow; proxy_pass http://127.0.0.1:1; }
location /key { limit_req zone=bykey; proxy_pass http://127.0.0.1:1; })",
                       R"(limit_req_zone $binary_remote_addr zone=login:10m rate=1r/s;
limit_req_zone $binary_remote_addr zone=api:10m rate=10r/s;
limit_req_zone $binary_remote_addr zone=slow:10m rate=30r/m;
limit_req_zone $http_x_api_key zone=bykey:10m rate=120r/m;
limit_req_status 429;
)"));
  INFO(c.dump());
  REQUIRE(c.load.config);
  CHECK(c.has("[middleware.login-burst5]\ntype = \"rate_limit\"\nrate = \"1/s\"\nburst = 5"));
  CHECK(c.has("rate = \"10/s\"\nburst = 20"));
  CHECK(c.has("rate = \"30/m\"\nburst = 0"));
  CHECK(c.has("rate = \"2/s\"\nburst = 0\nkey = \"header:x-api-key\""));
  CHECK(c.has("store = \"local\""));
  CHECK(c.warned(3, "Sluice's bucket holds rate + burst"));
  CHECK_FALSE(c.warned(2, "Sluice's bucket holds"));  // 1r/s: the same bucket as nginx
  CHECK(c.warned(11, "without nodelay nginx delays"));
}

TEST_CASE("convert: header idioms and the headers middleware") {
  auto c = conv(server(R"(location / {
  proxy_pass http://127.0.0.1:1;
  proxy_http_version 1.1;
  proxy_set_header Host $host;
  proxy_set_header X-Real-IP $remote_addr;
  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Proto $scheme;
  proxy_set_header Upgrade $http_upgrade;
  proxy_set_header Connection $connection_upgrade;
  proxy_set_header X-Request-Start "t=${msec}";
  proxy_set_header Accept-Encoding "";
  proxy_hide_header X-Powered-By;
  add_header X-Frame-Options SAMEORIGIN;
  add_header Cache-Control no-store always;
})",
                       "map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n"));
  INFO(c.dump());
  REQUIRE(c.load.config);
  CHECK(c.has("request_set = { \"X-Real-IP\" = \"{client_ip}\" }"));
  CHECK(c.has("request_remove = [\"Accept-Encoding\"]"));
  CHECK(
      c.has("response_add = { \"X-Frame-Options\" = \"SAMEORIGIN\", \"Cache-Control\" = "
            "\"no-store\" }"));
  CHECK(c.has("response_remove = [\"X-Powered-By\"]"));
  CHECK(c.warned(14, "the value uses $msec"));
  CHECK(c.warned(17, "without always nginx adds it to 2xx and 3xx answers only"));
  CHECK_FALSE(c.warned(12, ""));  // Upgrade: Sluice's own
  CHECK_FALSE(c.warned(13, ""));  // Connection $connection_upgrade: the map idiom
  CHECK_FALSE(c.warned(1, "map"));
}

TEST_CASE("convert: a location without proxy_set_header Host (nginx sends the upstream name)") {
  auto c = conv(server("location / { proxy_pass http://backend:8080; }"));
  REQUIRE(c.load.config);
  CHECK(c.warned(4, "without proxy_set_header Host"));
  CHECK(c.has("{ address = \"backend:8080\" }"));
}

TEST_CASE("convert: returns and rewrites") {
  auto c = conv(server(R"(rewrite ^/legacy$ /modern permanent;
rewrite ^(.*)$ https://example.com$1 redirect;
location = /health { default_type application/json; return 200 '{"ok":true}'; }
location = /old { return 301 /new; }
location = /s { return 302 $scheme://$host:8443$request_uri; }
location = /v { return 302 https://x.test/$uri; }
location = /drop { return 444; }
location /api/ { rewrite ^/api/(.*)$ /$1 break; proxy_pass http://127.0.0.1:1; proxy_set_header Host $host; }
location /old/ { rewrite ^/old/(.*)$ /new/$1 permanent; })"));
  INFO(c.dump());
  REQUIRE(c.load.config);
  CHECK(c.has("path_regex = '^/legacy$'\nreturn = { status = 301, location = \"/modern\" }"));
  CHECK(
      c.has("path_regex = '^(.*)$'\nreturn = { status = 302, location = "
            "\"https://example.com{uri}\" }"));
  CHECK(
      c.has("return = { status = 200, body = \"{\\\"ok\\\":true}\", content_type = "
            "\"application/json\" }"));
  CHECK(c.has("return = { status = 302, location = \"{scheme}://{host}:8443{uri}\" }"));
  CHECK(c.warned(9, "uses $uri"));
  CHECK(c.warned(10, "444 closes the connection"));
  CHECK(c.has("path_regex = '^/api/(.*)$'\nrewrite = \"/$1\""));
  CHECK(c.warned(12, "a redirect built from captures ($1) is not converted"));
}

TEST_CASE("convert: static locations") {
  auto c = conv(server(R"(root /srv/site;
index index.html index.htm;
location / { try_files $uri $uri/ /index.html; }
location /assets/ { expires 30d; gzip_static on; add_header Cache-Control "public"; }
location /dl/ { alias /srv/files/; }
location ~ \.txt$ { alias /x/; }
location /app { try_files $uri @backend; }
location @backend { proxy_pass http://127.0.0.1:1; })"));
  INFO(c.dump());
  REQUIRE(c.load.config);
  CHECK(
      c.has("static = { root = \"/srv/site\", index = [\"index.html\", \"index.htm\"], "
            "try_files = [\"$uri\", \"$uri/\", \"/index.html\"] }"));
  CHECK(
      c.has("static = { root = \"/srv/site\", index = [\"index.html\", \"index.htm\"], "
            "cache_control = \"max-age=2592000\", precompressed = true }"));
  CHECK(c.has("static = { alias = \"/srv/files/\""));
  CHECK(c.warned(9, "alias is converted for prefix and exact locations"));
  CHECK(c.warned(10, "falls back to the named location @backend"));
  CHECK(c.warned(11, "named locations are only reached by internal redirects"));
}

TEST_CASE("convert: global settings, logs, TLS") {
  auto c = conv(R"(worker_processes 4;
worker_shutdown_timeout 20s;
error_log stderr info;
events { worker_connections 4096; }
http {
  access_log /var/log/nginx/access.log;
  client_max_body_size 10m;
  keepalive_timeout 30s;
  large_client_header_buffers 4 16k;
  ssl_protocols TLSv1.3;
  ssl_session_tickets off;
  ssl_session_timeout 10m;
  server {
    listen 127.0.0.1:8443 ssl http2;
    ssl_certificate /nonexistent/c.pem;
    ssl_certificate_key /nonexistent/k.pem;
    add_header Strict-Transport-Security "max-age=63072000" always;
    location /upload { client_max_body_size 0; return 204; }
  }
}
)");
  INFO(c.dump());
  CHECK(c.has("workers = 4"));
  CHECK(c.has("shutdown_timeout = \"20s\""));
  CHECK(c.has("max_body_size = \"0\""));  // the largest: unlimited
  CHECK(c.has("client_idle_timeout = \"30s\""));
  CHECK(c.has("max_header_size = \"64k\""));
  CHECK(c.has("access = \"/var/log/nginx/access.log\""));
  CHECK(c.has("format = \"combined\""));
  CHECK(c.has("level = \"info\""));
  CHECK(c.has(
      "certificates = [\n  { cert = \"/nonexistent/c.pem\", key = \"/nonexistent/k.pem\" },\n]"));
  CHECK(c.has("min_version = \"1.3\""));
  CHECK(c.has("hsts = \"max-age=63072000\""));
  CHECK(c.has("session_tickets = false"));
  CHECK(c.has("session_timeout = \"10m\""));
  CHECK(c.warned(14, "HTTP/2 is not supported yet"));
  CHECK(c.warned(7, "so this smaller limit is not enforced"));
  // The certificate cannot be read here: that is the only thing the loader refuses.
  REQUIRE_FALSE(c.load.config);
  for (const auto& e : c.load.errors) CHECK(e.message.find("certificates[0]") != std::string::npos);
}

TEST_CASE("convert: set_real_ip_from with X-Forwarded-For is server.trusted_proxies") {
  SUBCASE("converted: every address, once; the recursion and the scope are said") {
    auto c = conv(server("set_real_ip_from 172.16.0.0/12;\nlocation / { return 204; }",
                         "set_real_ip_from 10.0.0.0/8;\nset_real_ip_from 192.168.1.1;\n"
                         "set_real_ip_from 10.0.0.0/8;\nset_real_ip_from unix:;\n"
                         "real_ip_header X-Forwarded-For;\n"));
    INFO(c.dump());
    CHECK(c.has(R"(trusted_proxies = ["10.0.0.0/8", "192.168.1.1", "172.16.0.0/12"])"));
    REQUIRE(c.load.config);
    CHECK(c.load.config->server.trustedProxies.size() == 3);
    CHECK(c.warned(6, "nginx takes the last address"));  // real_ip_header
    CHECK(c.warned(9, "on every listener"));             // in a server block
    CHECK(c.warned(5, "TCP only"));                      // unix:
    CHECK_FALSE(c.warned(2, ""));                        // http level, exact
  }
  SUBCASE("real_ip_recursive on: exactly Sluice's reading") {
    auto c = conv(server("location / { return 204; }",
                         "set_real_ip_from 10.0.0.0/8;\nreal_ip_header x-forwarded-for;\n"
                         "real_ip_recursive on;\n"));
    INFO(c.dump());
    CHECK(c.has(R"(trusted_proxies = ["10.0.0.0/8"])"));
    CHECK(c.res.warnings.empty());
  }
  SUBCASE("another header (or X-Real-IP by default) is not converted") {
    for (std::string_view h :
         {"", "real_ip_header X-Real-IP;\n", "real_ip_header proxy_protocol;\n"}) {
      auto c = conv(
          server("location / { return 204; }", "set_real_ip_from 10.0.0.0/8;\n" + std::string(h)));
      INFO(c.dump());
      CHECK_FALSE(c.has("trusted_proxies = "));
      CHECK(c.warned(2, "only from X-Forwarded-For"));
    }
  }
  SUBCASE("X-Forwarded-For only in one server: the others read X-Real-IP in nginx") {
    auto c = conv(server("real_ip_header X-Forwarded-For;\nlocation / { return 204; }",
                         "set_real_ip_from 10.0.0.0/8;\n"));
    INFO(c.dump());
    CHECK_FALSE(c.has("trusted_proxies = "));
    CHECK(c.warned(2, "set it at the http level"));
    CHECK(c.warned(5, "set it at the http level"));
  }
  SUBCASE("real_ip_recursive on in one server only: the rest takes the last address") {
    auto c = conv(server("real_ip_recursive on;\nlocation / { return 204; }",
                         "set_real_ip_from 10.0.0.0/8;\nreal_ip_header X-Forwarded-For;\n"));
    INFO(c.dump());
    CHECK(c.has(R"(trusted_proxies = ["10.0.0.0/8"])"));
    CHECK(c.warned(3, "nginx takes the last address"));
  }
  SUBCASE("nothing converted: the header and the recursion have no effect") {
    auto c = conv(server("location / { return 204; }",
                         "set_real_ip_from unix:;\nreal_ip_header X-Forwarded-For;\n"
                         "real_ip_recursive on;\nset_real_ip_from;\n"));
    INFO(c.dump());
    CHECK_FALSE(c.has("trusted_proxies = "));
    CHECK(c.warned(3, "no set_real_ip_from address was converted"));
    CHECK(c.warned(4, "no set_real_ip_from address was converted"));
    CHECK(c.warned(5, "invalid set_real_ip_from"));
  }
  SUBCASE("a host name is not converted; real_ip_header alone does nothing") {
    auto c = conv(server("location / { return 204; }",
                         "set_real_ip_from lb.internal;\nreal_ip_header X-Forwarded-For;\n"));
    INFO(c.dump());
    CHECK_FALSE(c.has("trusted_proxies = "));
    CHECK(c.warned(2, "not an address or CIDR"));
    auto d = conv(server("location / { return 204; }", "real_ip_header X-Forwarded-For;\n"));
    CHECK(d.warned(2, "no set_real_ip_from uses it"));
  }
}

TEST_CASE("convert: ssl_session_timeout is the listener's session_timeout") {
  auto tls = [](std::string_view a, std::string_view b) {
    return conv(std::string("http {\n") +  // line 1
                "server { listen 127.0.0.1:8443 ssl; server_name a.test; " +
                "ssl_certificate /n/a.pem; ssl_certificate_key /n/a.key; " + std::string(a) +
                " }\n" +  // line 2
                "server { listen 127.0.0.1:8443 ssl; server_name b.test; " +
                "ssl_certificate /n/b.pem; ssl_certificate_key /n/b.key; " + std::string(b) +
                " }\n}\n");
  };
  auto c = tls("ssl_session_timeout 1d;", "ssl_session_timeout 1d;");
  INFO(c.dump());
  CHECK(c.has("session_timeout = \"24h\""));
  c = tls("ssl_session_timeout 5m;", "");  // nginx's default is Sluice's: nothing to write
  CHECK_FALSE(c.has("session_timeout ="));
  c = tls("ssl_session_timeout 2d;", "");
  CHECK_FALSE(c.has("session_timeout ="));
  CHECK(c.warned(2, "whole seconds from 1s to 24h"));
  c = tls("ssl_session_timeout 90s;", "ssl_session_timeout 10m;");  // the default server's wins
  CHECK(c.has("session_timeout = \"90s\""));
  CHECK(c.warned(3, "the first server's setting is used"));
}

TEST_CASE("convert: everything not converted is named, counted, and the output says so") {
  auto c = conv(R"(user www-data;
load_module modules/ngx_stream_module.so;
events {}
stream { server { listen 53; proxy_pass dns; } }
http {
  sendfile on;
  frobnicate yes;
  server {
    listen 127.0.0.1:8080;
    location / {
      if ($http_x) { return 403; }
      location /nested/ { return 200; }
      auth_basic "x";
      return 204;
    }
  }
}
)");
  INFO(c.dump());
  REQUIRE(c.load.config);
  CHECK(c.warned(1, "\"user\" not converted"));
  CHECK(c.warned(2, "\"load_module\" not converted"));
  CHECK(c.warned(4,
                 "Sluice proxies HTTP only (no TCP/UDP or mail proxying) (with the 3 "
                 "directives inside it)"));
  CHECK(c.warned(11, "(with the 1 directive inside it)"));
  CHECK(c.warned(6, "\"sendfile\" not converted"));
  CHECK(c.warned(7, "\"frobnicate\" not converted: Sluice has no equivalent"));
  CHECK(c.warned(11, "\"if\" not converted"));
  CHECK(c.warned(12, "nested locations are not converted"));
  CHECK(c.warned(13, "\"auth_basic\" not converted"));
  CHECK(c.res.directives == 19);
  CHECK(c.res.notConverted == 13);
  CHECK(c.res.converted == 6);
  CHECK(c.has("# 19 nginx directives: 6 converted, 13 not converted."));
  CHECK(c.has("#   n.conf:7: warning: \"frobnicate\" not converted"));
}

TEST_CASE("convert: nothing to serve is an error") {
  CHECK_FALSE(conv("events {}").res.errors.empty());
  CHECK_FALSE(conv("http { server { listen unix:/x.sock; } }").res.errors.empty());
}

TEST_CASE("convert: mutated configurations never crash and always load") {
  const std::string base = R"(worker_processes 2;
events { worker_connections 64; }
http {
  client_max_body_size 2m;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  limit_req_zone $binary_remote_addr zone=z:1m rate=5r/s;
  upstream api { least_conn; server 127.0.0.1:9001 weight=2 max_fails=2; server 127.0.0.1:9002 backup; }
  server { listen 127.0.0.1:8080; server_name a.test; return 301 https://$host$request_uri; }
  server {
    listen 127.0.0.1:8081 default_server;
    server_name a.test *.a.test;
    root /srv/a;
    proxy_set_header Host $host;
    add_header X-A a always;
    rewrite ^/old/(.*)$ /api/$1 last;
    location / { try_files $uri $uri/ /index.html; }
    location /api/ { limit_req zone=z burst=3 nodelay; proxy_pass http://api/; proxy_read_timeout 10s; }
    location = /x { return 200 "x"; }
    location ^~ /s/ { proxy_pass http://127.0.0.1:9003/t/; }
    location ~* \.(css|js)$ { expires 1h; }
    location /ws/ { proxy_pass http://api; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; }
  }
}
)";
  std::vector<std::string> lines;
  std::istringstream in(base);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  const char* junk[] = {"",           "$x",         "0",       "-1",    "99999999999999999999",
                        "a b",        "{",          "}",       "\"",    "${e}",
                        "unix:/x",    "[::1]:0",    "~*",      "=",     "^~",
                        "@n",         "http://$h/", "/a{b}",   "=999",  "TLSv1",
                        "off",        "\"/a b\"",   "noslash", "'x y'", "^(a",
                        "(?<n>x)\\1", "*.",         ".",       "1r/s",  "zone=none",
                        "burst=x"};
  std::mt19937 rng(13);
  int loaded = 0, tried = 0;
  for (int round = 0; round < 1500; ++round) {
    std::vector<std::string> m = lines;
    for (int edit = 0; edit < 2 && !m.empty(); ++edit) {
      const size_t i = rng() % m.size();
      switch (rng() % 3) {
        case 0:  // drop a line
          m.erase(m.begin() + long(i));
          break;
        case 1: {  // replace one word with junk
          std::vector<size_t> spaces;
          for (size_t k = 0; k < m[i].size(); ++k)
            if (m[i][k] == ' ') spaces.push_back(k);
          if (spaces.empty()) continue;
          const size_t at = spaces[rng() % spaces.size()] + 1;
          const size_t end = m[i].find_first_of(" ;", at);
          m[i] = m[i].substr(0, at) + junk[rng() % std::size(junk)] +
                 (end == std::string::npos ? "" : m[i].substr(end));
          break;
        }
        default:  // cut the file here
          m.resize(i);
      }
    }
    std::string text;
    for (const auto& l : m) text += l + "\n";
    auto p = parseText(text, "n.conf", "");
    if (!p.errors.empty()) continue;
    auto res = convert(p.directives, {"n.conf", "test"});
    if (!res.errors.empty()) continue;
    ++tried;
    auto load = loadConfigString(res.toml, "out.toml", sluice::middleware::parsers());
    INFO(text, "\n---\n", res.toml);
    for (const auto& e : load.errors) INFO(e.str());
    CHECK(load.config.has_value());
    loaded += load.config.has_value() ? 1 : 0;
  }
  CHECK(tried > 200);
  CHECK(loaded == tried);
}
