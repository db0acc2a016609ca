// The one local-reply builder (proxy/http/local_reply): JSON errors, plain bodies, a filter's
// headers in order, bodiless replies, and reuse of the head and body it fills.
#include "proxy/http/local_reply.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace sluice::http;

namespace {

struct Built {
  ResponseHead head;
  std::string body;
};

// The head's live headers as "Name: value" lines, in order.
std::vector<std::string> lines(const ResponseHead& h) {
  std::vector<std::string> v;
  for (size_t i = 0; i < h.headers.size(); ++i)
    if (!h.headers.removedAt(i))
      v.push_back(std::string(h.headers.nameAt(i)) + ": " + std::string(h.headers.valueAt(i)));
  return v;
}

void checkLength(const Built& b) {
  CHECK(b.head.hasContentLength);
  CHECK(b.head.contentLength == b.body.size());
}

}  // namespace

TEST_SUITE("local_reply") {
  TEST_CASE("an error code becomes a JSON body with the request id") {
    Built b;
    buildLocalReply({404, "no_route"}, "rid-1", b.head, b.body);
    CHECK(b.head.status == 404);
    CHECK(b.head.reason == "Not Found");
    CHECK(b.body == R"({"error":"no_route","request_id":"rid-1"})");
    CHECK(lines(b.head) == std::vector<std::string>{"Content-Type: application/json"});
    checkLength(b);
  }

  TEST_CASE("a plain body keeps its content type; the reply's headers follow in order") {
    LocalReply r;
    r.status = 200;
    r.body = "pong";
    r.contentType = "text/plain";
    r.header("Cache-Control", "no-store").header("X-B", "2").header("X-A", "1");
    Built b;
    buildLocalReply(r, "rid", b.head, b.body);
    CHECK(b.head.status == 200);
    CHECK(b.body == "pong");
    CHECK(lines(b.head) == std::vector<std::string>{"Content-Type: text/plain",
                                                    "Cache-Control: no-store", "X-B: 2",
                                                    "X-A: 1"});
    checkLength(b);
  }

  TEST_CASE("an error code wins over a body; a body without content type adds none") {
    LocalReply r(503, "no_healthy_backend");
    r.body = "ignored";
    r.contentType = "text/plain";
    Built b;
    buildLocalReply(r, "x", b.head, b.body);
    CHECK(b.body == R"({"error":"no_healthy_backend","request_id":"x"})");
    CHECK(b.head.headers.get("Content-Type") == "application/json");
    CHECK(b.head.headers.count("Content-Type") == 1);

    LocalReply plain;
    plain.status = 200;
    plain.body = "ok";
    buildLocalReply(plain, "x", b.head, b.body);
    CHECK_FALSE(b.head.headers.has("Content-Type"));
    CHECK(b.body == "ok");
  }

  TEST_CASE("a 204 with headers (CORS preflight) has no body and Content-Length 0") {
    LocalReply r;
    r.status = 204;
    r.header("Access-Control-Allow-Origin", "https://a.example")
        .header("Access-Control-Allow-Methods", "GET, POST")
        .header("Vary", "Origin");
    Built b;
    buildLocalReply(r, "rid", b.head, b.body);
    CHECK(b.head.status == 204);
    CHECK(b.head.reason == "No Content");
    CHECK(b.body.empty());
    CHECK(lines(b.head) == std::vector<std::string>{
                               "Access-Control-Allow-Origin: https://a.example",
                               "Access-Control-Allow-Methods: GET, POST", "Vary: Origin"});
    checkLength(b);
  }

  TEST_CASE("headers past kMaxHeaders are dropped, not overflowed") {
    LocalReply r;
    r.status = 200;
    for (size_t i = 0; i < LocalReply::kMaxHeaders + 3; ++i) r.header("X-N", "v");
    CHECK(r.headerCount == LocalReply::kMaxHeaders);
    Built b;
    buildLocalReply(r, "rid", b.head, b.body);
    CHECK(b.head.headers.count("X-N") == LocalReply::kMaxHeaders);
  }

  TEST_CASE("building twice into the same head and body clears the first reply") {
    Built b;
    LocalReply first;
    first.status = 308;
    first.body = "a long first body that must not survive";
    first.contentType = "text/plain";
    first.header("Location", "https://example.com/");
    buildLocalReply(first, "r1", b.head, b.body);
    b.head.keepAlive = false;  // anything the previous user left behind
    b.head.chunked = true;
    const size_t bodyCapacity = b.body.capacity();

    buildLocalReply({400, "bad_request"}, "r2", b.head, b.body);
    CHECK(b.head.status == 400);
    CHECK(b.head.reason == "Bad Request");
    CHECK(lines(b.head) == std::vector<std::string>{"Content-Type: application/json"});
    CHECK_FALSE(b.head.headers.has("Location"));
    CHECK(b.body == R"({"error":"bad_request","request_id":"r2"})");
    CHECK(b.head.keepAlive);
    CHECK_FALSE(b.head.chunked);
    checkLength(b);
    CHECK(b.body.capacity() >= bodyCapacity);  // reused, not shrunk
  }
}
