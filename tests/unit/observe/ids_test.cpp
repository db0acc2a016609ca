// Unit tests for proxy/observe/ids: request ids and W3C traceparent handling.
#include "proxy/observe/ids.h"

#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>
#include <string_view>

using namespace sluice::observe;

namespace {

bool isLowerHex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

const std::string kTrace = "0af7651916cd43dd8448eb211c80319c";
const std::string kParent = "b7ad6b7169203331";
const std::string kValid = "00-" + kTrace + "-" + kParent + "-01";

std::string next(std::string_view incoming, IdGenerator& gen) {
  std::string out;
  nextTraceparent(incoming, gen, out);
  return out;
}

}  // namespace

TEST_SUITE("ids") {
  TEST_CASE("isSaneRequestId") {
    CHECK(isSaneRequestId("a"));
    CHECK(isSaneRequestId("0123456789abcdef0123456789abcdef"));
    CHECK(isSaneRequestId("Req-1.2_3:4"));
    CHECK(isSaneRequestId("550e8400-e29b-41d4-a716-446655440000"));
    CHECK(isSaneRequestId(std::string(128, 'x')));
    CHECK_FALSE(isSaneRequestId(""));
    CHECK_FALSE(isSaneRequestId(std::string(129, 'x')));
    for (const char* bad : {"a b", "a/b", "a\"b", "a,b", "a;b", "a\r\nX-Evil: 1", "a\tb",
                            "caf\xc3\xa9", "{json}", "a=b", "<script>"}) {
      CAPTURE(bad);
      CHECK_FALSE(isSaneRequestId(bad));
    }
    CHECK_FALSE(isSaneRequestId(std::string_view("a\0b", 3)));
  }

  TEST_CASE("isValidTraceparent") {
    CHECK(isValidTraceparent(kValid));
    CHECK(isValidTraceparent("00-" + kTrace + "-" + kParent + "-00"));
    CHECK(isValidTraceparent("00-" + kTrace + "-" + kParent + "-ff"));
    // A future version may carry more fields after a dash.
    CHECK(isValidTraceparent("01-" + kTrace + "-" + kParent + "-01"));
    CHECK(isValidTraceparent("cc-" + kTrace + "-" + kParent + "-01-what-the-future"));

    const std::string zeroTrace(32, '0'), zeroParent(16, '0');
    for (const std::string& bad : {
             std::string(),
             kValid.substr(0, 54),
             kValid + "-",
             kValid + "x",
             "00-" + kTrace + "-" + kParent + "-01-extra",  // version 00 has exactly 4 fields
             "ff-" + kTrace + "-" + kParent + "-01",        // version ff is invalid
             "00-" + zeroTrace + "-" + kParent + "-01",
             "00-" + kTrace + "-" + zeroParent + "-01",
             "00-0AF7651916CD43DD8448EB211C80319C-" + kParent + "-01",  // upper case
             "00-" + kTrace + "-B7AD6B7169203331-01",
             "00-" + kTrace + "-" + kParent + "-0g",
             "0g-" + kTrace + "-" + kParent + "-01",
             "00_" + kTrace + "-" + kParent + "-01",
             "00-" + kTrace + "_" + kParent + "-01",
             "00-" + kTrace + "-" + kParent + "_01",
             "00-" + kTrace.substr(1) + "-" + kParent + "-01x",
             "01-" + kTrace + "-" + kParent + "-01x",
         }) {
      CAPTURE(bad);
      CHECK_FALSE(isValidTraceparent(bad));
    }
  }

  TEST_CASE("nextTraceparent propagates trace-id and flags with a new parent-id") {
    IdGenerator gen;
    for (const char* flags : {"01", "00", "03"}) {
      CAPTURE(flags);
      const std::string in = "00-" + kTrace + "-" + kParent + "-" + flags;
      std::string out = next(in, gen);
      CHECK(isValidTraceparent(out));
      REQUIRE(out.size() == 55);
      CHECK(out.substr(0, 3) == "00-");
      CHECK(out.substr(3, 32) == kTrace);
      CHECK(out.substr(36, 16) != kParent);
      CHECK(isLowerHex(out.substr(36, 16)));
      CHECK(out.substr(53) == flags);
    }
    // A future version is propagated as version 00 without the extra fields.
    std::string out = next("cc-" + kTrace + "-" + kParent + "-01-extra", gen);
    CHECK(isValidTraceparent(out));
    CHECK(out.size() == 55);
    CHECK(out.substr(0, 3) == "00-");
    CHECK(out.substr(3, 32) == kTrace);
    CHECK(out.substr(53) == "01");

    // Each hop gets its own parent id.
    std::set<std::string> parents;
    for (int i = 0; i < 100; ++i) parents.insert(next(kValid, gen).substr(36, 16));
    CHECK(parents.size() == 100);
  }

  TEST_CASE("nextTraceparent starts a new valid trace otherwise") {
    IdGenerator gen;
    std::set<std::string> traces;
    for (const std::string& in :
         {std::string(), std::string("garbage"), "ff-" + kTrace + "-" + kParent + "-01",
          "00-" + std::string(32, '0') + "-" + kParent + "-01", kValid + "-extra"}) {
      CAPTURE(in);
      std::string out = next(in, gen);
      CHECK(isValidTraceparent(out));
      REQUIRE(out.size() == 55);
      CHECK(out.substr(0, 3) == "00-");
      CHECK(out.substr(53) == "01");
      CHECK(out.substr(3, 32) != kTrace);
      traces.insert(out.substr(3, 32));
    }
    CHECK(traces.size() == 5);

    // It appends.
    std::string out = "traceparent: ";
    nextTraceparent("", gen, out);
    CHECK(out.size() == 13 + 55);
    CHECK(isValidTraceparent(std::string_view(out).substr(13)));
  }

  TEST_CASE("request ids are 32 lower-case hex and differ") {
    IdGenerator gen;
    std::set<std::string> seen;
    for (int i = 0; i < 2000; ++i) {
      std::string id;
      gen.requestId(id);
      REQUIRE(id.size() == 32);
      CHECK(isLowerHex(id));
      CHECK(isSaneRequestId(id));
      seen.insert(id);
    }
    CHECK(seen.size() == 2000);
    // All 16 digits, evenly: 64,000 characters, ~4,000 each.
    std::map<char, int> freq;
    for (const std::string& id : seen)
      for (char c : id) ++freq[c];
    CHECK(freq.size() == 16);
    for (const auto& [digit, n] : freq) {
      const char c = digit;  // a plain variable: clang 14 cannot capture a structured binding
      CAPTURE(c);
      CHECK(n > 3500);
      CHECK(n < 4500);
    }

    // Two generators (two workers) do not produce the same stream.
    IdGenerator other;
    std::string a, b;
    gen.requestId(a);
    other.requestId(b);
    CHECK(a != b);

    std::string h;
    gen.hex(h, 3);
    CHECK(h.size() == 6);
    CHECK(isLowerHex(h));
  }
}
