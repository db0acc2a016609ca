// Unit tests for proxy/admin/status_page (the page and its Content-Security-Policy) and the
// admin listener's cross-origin check (crossOrigin in proxy/admin/admin_server.h).
#include "proxy/admin/status_page.h"

#include <doctest/doctest.h>

#include <string>

#include "proxy/admin/admin_server.h"

using namespace sluice::admin;

namespace {

// The text between the first `open` tag and its closing tag.
std::string inner(const std::string& html, const std::string& open, const std::string& close) {
  const size_t a = html.find(open);
  REQUIRE(a != std::string::npos);
  const size_t from = a + open.size();
  const size_t b = html.find(close, from);
  REQUIRE(b != std::string::npos);
  return html.substr(from, b - from);
}

}  // namespace

TEST_SUITE("status_page") {
  TEST_CASE("cspHash is the base64 SHA-256 source expression") {
    CHECK(cspHash("") == "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='");
    CHECK(cspHash("abc") == "'sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0='");
  }

  TEST_CASE("the inline script and style are allowed by hash, nothing else") {
    for (bool token : {false, true}) {
      CAPTURE(token);
      const StatusPage& p = statusPage(token);
      const std::string script = inner(p.html, "<script>", "</script>");
      const std::string style = inner(p.html, "<style>", "</style>");
      CHECK(script.size() > 1000);
      CHECK(style.size() > 500);
      // Exactly one inline block of each: a second one would be refused by the browser.
      CHECK(p.html.find("<script", p.html.find("</script>")) == std::string::npos);
      CHECK(p.html.find("<style", p.html.find("</style>")) == std::string::npos);
      CHECK(p.csp.find("script-src " + cspHash(script) + ";") != std::string::npos);
      CHECK(p.csp.find("style-src " + cspHash(style) + ";") != std::string::npos);
      CHECK(p.csp.rfind("default-src 'none';", 0) == 0);
      CHECK(p.csp.find("unsafe") == std::string::npos);
      CHECK(p.csp.find("form-action 'none'") != std::string::npos);
      CHECK(p.csp.find("frame-ancestors 'none'") != std::string::npos);
      CHECK(p.csp.find("connect-src 'self'") != std::string::npos);
      CHECK(p.csp.find("require-trusted-types-for 'script'") != std::string::npos);
      // No placeholder left, no external asset.
      CHECK(p.html.find("{{") == std::string::npos);
      CHECK(p.html.find("src=") == std::string::npos);
      CHECK(p.html.find("http://") == p.html.find("http://www.w3.org/2000/svg"));
      CHECK(p.html.find("https://") == std::string::npos);
      CHECK(p.html.find(token ? "data-auth=\"token\"" : "data-auth=\"none\"") != std::string::npos);
    }
    CHECK(&statusPage(true) == &statusPage(true));  // built once
  }

  TEST_CASE("crossOrigin: a browser's request from another origin") {
    CHECK_FALSE(crossOrigin("", "127.0.0.1:9901"));  // curl, scripts: no Origin
    CHECK_FALSE(crossOrigin("http://127.0.0.1:9901", "127.0.0.1:9901"));
    CHECK_FALSE(crossOrigin("https://admin.example.com", "admin.example.com"));
    CHECK_FALSE(crossOrigin("http://LOCALHOST:9901", "localhost:9901"));
    CHECK(crossOrigin("http://evil.example", "127.0.0.1:9901"));
    CHECK(crossOrigin("http://127.0.0.1:9902", "127.0.0.1:9901"));
    CHECK(crossOrigin("null", "127.0.0.1:9901"));
    CHECK(crossOrigin("http://127.0.0.1:9901", ""));
    CHECK(crossOrigin("ftp://127.0.0.1:9901", "127.0.0.1:9901"));
  }
}
