// middleware/cors: origin parsing and matching (ports, case, wildcard anchoring, null, the
// CORScanner / Corsy probe shapes), preflight decisions, Vary merging, and removal of the
// backend's Access-Control-* headers.
#include <doctest/doctest.h>

#include <string>

#include "middleware/cors.h"

using namespace sluice;
using namespace sluice::middleware;

namespace {

CorsPolicy policy(std::initializer_list<const char*> origins) {
  CorsPolicy p;
  for (const char* o : origins) {
    if (std::string_view(o) == "*") {
      p.anyOrigin = true;
      continue;
    }
    auto pat = parseOriginPattern(o);
    REQUIRE(pat);
    p.origins.push_back(*pat);
  }
  p.methods = {"GET", "POST", "PUT"};
  p.headers = {"authorization", "content-type"};
  p.finish();
  return p;
}

}  // namespace

TEST_CASE("origins are normalised: case and default ports") {
  auto o = parseOrigin("HTTPS://App.Example.COM:443");
  REQUIRE(o);
  CHECK(o->str() == "https://app.example.com");
  CHECK(parseOrigin("http://a.com:80")->str() == "http://a.com");
  CHECK(parseOrigin("http://a.com:8080")->str() == "http://a.com:8080");
  CHECK(parseOrigin("https://a.com:80")->str() == "https://a.com:80");
  CHECK(parseOrigin("http://[::1]:8080")->str() == "http://[::1]:8080");
  CHECK(parseOrigin("null")->opaque);
  for (const char* bad :
       {"", "a.com", "https://", "https://a.com/", "https://a.com/x", "https://user@a.com",
        "https://a.com:", "https://a.com:0", "https://a.com:70000", "https://a..com",
        "https://.a.com", "https://a.com.", "https://a b.com", "1http://a.com", "https://*.a.com",
        "https://a.com?x", "https://a.com#x", "https://[zz]:1"})
    CHECK_MESSAGE(!parseOrigin(bad), bad);
  CHECK(parseOrigin("https://*.a.com", true));
  CHECK_FALSE(parseOrigin("https://*", true));
  CHECK_FALSE(parseOrigin("https://a.*.com", true));
}

TEST_CASE("origin matching table") {
  const CorsPolicy p =
      policy({"https://app.example.com", "https://*.example.com", "http://localhost:3000"});
  struct Row {
    const char* origin;
    bool allowed;
  };
  const Row rows[] = {
      {"https://app.example.com", true},
      {"https://APP.example.com", true},
      {"https://app.example.com:443", true},
      {"https://a.example.com", true},
      {"https://a.b.example.com", true},
      {"https://example.com", false},               // the wildcard needs a label
      {"https://example.com.evil.net", false},      // suffix trick
      {"https://evilexample.com", false},           // no dot boundary
      {"https://app.example.com.evil.net", false},  // prefix trick
      {"https://evil.net/app.example.com", false},
      {"http://app.example.com", false},  // scheme downgrade
      {"http://a.example.com", false},
      {"https://a.example.com:8443", false},  // another port
      {"https://app.example.co", false},
      {"null", false},  // never unless listed
      {"http://localhost:3000", true},
      {"http://localhost:3001", false},
      {"http://localhost", false},
      {"", false},
      {"https://app.example.com/", false},
      {"https://app.example.com%60.evil.net", false},
      {"https://app.example.com_.evil.net", false},
  };
  for (const Row& r : rows) CHECK_MESSAGE(p.originAllowed(r.origin) == r.allowed, r.origin);
}

TEST_CASE("\"*\" allows every origin but null; a literal null is allowed when listed") {
  const CorsPolicy any = policy({"*"});
  CHECK(any.originAllowed("https://whatever.net"));
  CHECK(any.originAllowed("http://10.0.0.1:81"));
  CHECK_FALSE(any.originAllowed("null"));
  CHECK_FALSE(any.originAllowed("not an origin"));
  const CorsPolicy withNull = policy({"null"});
  CHECK(withNull.originAllowed("null"));
  CHECK_FALSE(withNull.originAllowed("https://a.com"));
}

TEST_CASE("preflight decisions") {
  CorsPolicy p = policy({"https://app.example.com"});
  const auto ok = PreflightVerdict::Allowed;
  const auto no = PreflightVerdict::Forbidden;
  CHECK(judgePreflight(p, "https://app.example.com", "PUT", "", false) == ok);
  CHECK(judgePreflight(p, "https://app.example.com", "GET", "", false) == ok);
  CHECK(judgePreflight(p, "https://app.example.com", "DELETE", "", false) == no);
  CHECK(judgePreflight(p, "https://app.example.com", "put", "", false) == no);  // case-sensitive
  CHECK(judgePreflight(p, "https://app.example.com", "PUT", "Content-Type, AUTHORIZATION", false) ==
        ok);
  CHECK(judgePreflight(p, "https://app.example.com", "PUT", "content-type,x-secret", false) == no);
  CHECK(judgePreflight(p, "https://app.example.com", "PUT", " , ", false) == ok);
  CHECK(judgePreflight(p, "https://evil.com", "GET", "", false) == no);
  CHECK(judgePreflight(p, "https://app.example.com", "", "", false) == no);
  CHECK(judgePreflight(p, "https://app.example.com", "GET", "", true) == no);  // PNA not on
  p.privateNetwork = true;
  CHECK(judgePreflight(p, "https://app.example.com", "GET", "", true) == ok);
  p.anyHeader = true;
  p.anyMethod = true;
  CHECK(judgePreflight(p, "https://app.example.com", "PATCH", "x-anything", false) == ok);
}

TEST_CASE("Vary is merged into one field, never duplicated") {
  http::HeaderMap h;
  mergeVary(h, "Origin");
  CHECK(h.get(http::Hdr::Vary) == "Origin");
  mergeVary(h, "Origin");
  CHECK(h.count(http::Hdr::Vary) == 1);

  http::HeaderMap a;
  a.add("Vary", "Accept-Encoding");
  mergeVary(a, "Origin");
  CHECK(a.count(http::Hdr::Vary) == 1);
  CHECK(a.get(http::Hdr::Vary) == "Accept-Encoding, Origin");

  http::HeaderMap b;
  b.add("vary", "accept-encoding, origin");
  mergeVary(b, "Origin");
  CHECK(b.get(http::Hdr::Vary) == "accept-encoding, origin");

  http::HeaderMap star;
  star.add("Vary", "*");
  mergeVary(star, "Origin");
  CHECK(star.get(http::Hdr::Vary) == "*");

  http::HeaderMap two;
  two.add("Vary", "Accept");
  two.add("Vary", "Cookie");
  mergeVary(two, "Origin");
  CHECK(two.count(http::Hdr::Vary) == 3);  // a third field: merged in meaning
}

TEST_CASE("the backend's Access-Control-* headers are removed") {
  http::HeaderMap h;
  h.add("Access-Control-Allow-Origin", "*");
  h.add("access-control-allow-credentials", "true");
  h.add("Access-Control-Expose-Headers", "X");
  h.add("Content-Type", "text/plain");
  h.add("Access-Controlled", "x");
  removeAccessControl(h);
  CHECK_FALSE(h.has("Access-Control-Allow-Origin"));
  CHECK_FALSE(h.has("access-control-allow-credentials"));
  CHECK_FALSE(h.has("Access-Control-Expose-Headers"));
  CHECK(h.has("Content-Type"));
  CHECK(h.has("Access-Controlled"));
}
