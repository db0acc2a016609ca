// Unit tests for proxy/http/cookie: the request Cookie header parser.
#include "proxy/http/cookie.h"

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace sluice::http;

namespace {

using Pairs = std::vector<std::pair<std::string_view, std::string_view>>;

Pairs allPairs(std::string_view header) {
  Pairs out;
  for (const CookiePair& c : CookieRange(header)) out.emplace_back(c.name, c.value);
  return out;
}

}  // namespace

TEST_SUITE("http_cookie") {
  TEST_CASE("pairs of one header value, in order") {
    struct Case {
      const char* header;
      Pairs pairs;
    };
    const Case cases[] = {
        {"", {}},
        {"a=1", {{"a", "1"}}},
        {"a=1; b=2", {{"a", "1"}, {"b", "2"}}},
        {"a=1;b=2", {{"a", "1"}, {"b", "2"}}},           // no SP after ';'
        {"  a=1 ;\tb=2\t ", {{"a", "1"}, {"b", "2"}}},   // OWS around pairs
        {"a = 1", {{"a", "1"}}},                         // OWS around '='
        {"a=", {{"a", ""}}},                             // empty value
        {"a=\"\"", {{"a", ""}}},                         // empty quoted value
        {"s=\"v 1\"; t=x", {{"s", "v 1"}, {"t", "x"}}},  // DQUOTEs removed
        {"s=\"open", {{"s", "\"open"}}},                 // unbalanced quote kept
        {"s=\"", {{"s", "\""}}},                         // a lone quote is the value
        {"a=b=c", {{"a", "b=c"}}},                       // value up to ';' only
        {"flag; a=1", {{"a", "1"}}},                     // no '=': skipped
        {"=x; a=1", {{"a", "1"}}},                       // empty name: skipped
        {";;a=1;;", {{"a", "1"}}},                       // empty pairs
        {"a=1; a=2", {{"a", "1"}, {"a", "2"}}},          // duplicates are all listed
        {"Sid=1; sid=2", {{"Sid", "1"}, {"sid", "2"}}},
    };
    for (const Case& c : cases) {
      INFO("header: " << std::string(c.header));
      CHECK(allPairs(c.header) == c.pairs);
    }
  }

  TEST_CASE("findCookie on one header value") {
    struct Case {
      const char* header;
      const char* name;
      std::optional<std::string_view> value;
    };
    const Case cases[] = {
        {"a=1;b=2", "b", "2"},
        {"a=1", "c", std::nullopt},
        {"", "a", std::nullopt},
        {"theme=dark; session=\"s1\"", "session", "s1"},
        {"theme=dark; session=\"s1\"", "Session", std::nullopt},  // names are case-sensitive
        {"sid=abc", "si", std::nullopt},                          // no prefix matches
        {"xsid=1; sid=2", "sid", "2"},                            // no suffix matches
        {"sid=; sid=2", "sid", ""},                               // the first one wins
        {"a=1; sid = 7 ", "sid", "7"},
        {"sid", "sid", std::nullopt},  // a name without '='
    };
    for (const Case& c : cases) {
      INFO("header: " << std::string(c.header));
      INFO("name: " << std::string(c.name));
      CHECK(findCookie(c.header, c.name) == c.value);
    }
  }

  TEST_CASE("findCookie over several Cookie header lines") {
    HeaderMap h;
    h.add("Accept", "sid=no");
    h.add("Cookie", "theme=dark; sid=");
    h.add("cookie", "sid=late; other=1");
    h.add("COOKIE", "gone=1");
    h.removeAt(3);
    CHECK(findCookie(h, "theme") == std::optional<std::string_view>("dark"));
    CHECK(findCookie(h, "other") == std::optional<std::string_view>("1"));
    // Read as if joined with "; ": the first pair wins, even with an empty value.
    CHECK(findCookie(h, "sid") == std::optional<std::string_view>(""));
    CHECK_FALSE(findCookie(h, "gone"));  // removed header
    CHECK_FALSE(findCookie(HeaderMap(), "sid"));

    Pairs seen;
    CHECK(forEachCookie(h, [&](const CookiePair& c) {
      seen.emplace_back(c.name, c.value);
      return true;
    }));
    CHECK(seen == Pairs{{"theme", "dark"}, {"sid", ""}, {"sid", "late"}, {"other", "1"}});
    seen.clear();
    CHECK_FALSE(forEachCookie(h, [&](const CookiePair& c) {
      seen.emplace_back(c.name, c.value);
      return seen.size() < 2;
    }));
    CHECK(seen.size() == 2);
  }

  TEST_CASE("views point into the header (no copies)") {
    std::string header = "a=1; b=\"two\"";
    auto v = findCookie(header, "b");
    REQUIRE(v);
    CHECK(v->data() == header.data() + 8);
    CHECK(*v == "two");
  }
}
