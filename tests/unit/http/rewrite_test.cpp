// Unit tests for proxy/http/rewrite: upstream request and client response heads, local replies
// and chunk headers.
#include "proxy/http/rewrite.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace sluice::http;

namespace {

using Fields = std::vector<std::pair<std::string_view, std::string_view>>;

RequestHead makeRequest(std::string_view method, std::string_view target, const Fields& fields) {
  RequestHead r;
  r.method = method;
  r.target = target;
  for (auto& [n, v] : fields) r.headers.add(n, v);
  return r;
}

ResponseHead makeResponse(int status, std::string_view reason, const Fields& fields) {
  ResponseHead r;
  r.status = status;
  r.reason = reason;
  for (auto& [n, v] : fields) r.headers.add(n, v);
  return r;
}

UpstreamRequestInfo defaultInfo(std::string_view target = "/x") {
  UpstreamRequestInfo info;
  info.target = target;
  info.clientIp = "10.0.0.1";
  info.proto = "http";
  info.requestId = "rid-1";
  info.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  return info;
}

std::string upstream(const RequestHead& r, const UpstreamRequestInfo& info) {
  std::string out;
  serializeUpstreamRequest(r, info, out);
  return out;
}

std::string client(const ResponseHead& r, const ClientResponseInfo& info) {
  std::string out;
  serializeClientResponse(r, info, out);
  return out;
}

// Header lines of a serialized head (after the start line), names as written.
std::vector<std::string> headerLines(std::string_view head) {
  std::vector<std::string> lines;
  size_t end = head.find("\r\n\r\n");
  REQUIRE(end != std::string_view::npos);
  head = head.substr(0, end + 2);
  size_t pos = head.find("\r\n") + 2;
  while (pos < head.size()) {
    size_t eol = head.find("\r\n", pos);
    lines.emplace_back(head.substr(pos, eol - pos));
    pos = eol + 2;
  }
  return lines;
}

size_t countLinesStartingWith(const std::string& head, std::string_view prefix) {
  size_t n = 0;
  for (const std::string& l : headerLines(head))
    if (l.size() >= prefix.size() && iequals(std::string_view(l).substr(0, prefix.size()), prefix))
      ++n;
  return n;
}

}  // namespace

TEST_SUITE("rewrite") {
  TEST_CASE("isHopByHop") {
    for (const char* n : {"Connection", "connection", "Keep-Alive", "Proxy-Connection", "TE",
                          "Trailer", "Upgrade", "Transfer-Encoding", "Content-Length"})
      CHECK_MESSAGE(isHopByHop(n), n);
    for (const char* n : {"Host", "Accept", "X-Forwarded-For", "Content-Type", "Trailers", "T",
                          "Cookie", "Authorization", "Upgrade-Insecure-Requests"})
      CHECK_FALSE_MESSAGE(isHopByHop(n), n);
  }

  TEST_CASE("upstream request: hop-by-hop removed, Host kept, forwarding headers set") {
    RequestHead r =
        makeRequest("POST", "/original?q=1",
                    {{"Host", "Example.com:8080"},
                     {"Connection", "keep-alive, X-Secret"},
                     {"X-Secret", "s3cret"},
                     {"Keep-Alive", "timeout=5"},
                     {"Proxy-Connection", "keep-alive"},
                     {"TE", "trailers"},
                     {"Trailer", "X-Checksum"},
                     {"Upgrade", "h2c"},
                     {"Accept", "*/*"},
                     {"X-Forwarded-For", "1.1.1.1"},
                     {"X-Forwarded-Proto", "https"},
                     {"X-Forwarded-Host", "evil.example"},
                     {"X-Request-Id", "client-id"},
                     {"traceparent", "00-ffffffffffffffffffffffffffffffff-1111111111111111-01"},
                     {"Content-Length", "5"},
                     {"Cookie", "a=b"}});
    r.hasContentLength = true;
    r.contentLength = 5;
    UpstreamRequestInfo info = defaultInfo("/x?q=1");
    info.forwardedHost = "Example.com:8080";
    std::string out = upstream(r, info);
    CHECK(out ==
          "POST /x?q=1 HTTP/1.1\r\n"
          "Host: Example.com:8080\r\n"
          "Accept: */*\r\n"
          "Cookie: a=b\r\n"
          "X-Forwarded-For: 1.1.1.1, 10.0.0.1\r\n"
          "X-Forwarded-Proto: http\r\n"
          "X-Forwarded-Host: Example.com:8080\r\n"
          "X-Request-Id: rid-1\r\n"
          "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
          "Content-Length: 5\r\n"
          "\r\n");
  }

  TEST_CASE("upstream request: headers named by Connection are removed, case-insensitively") {
    RequestHead r = makeRequest("GET", "/",
                                {{"Host", "a"},
                                 {"connection", "x-one"},
                                 {"X-One", "1"},
                                 {"Connection", " X-TWO ,host, content-length"},
                                 {"x-two", "2"},
                                 {"X-Three", "3"}});
    UpstreamRequestInfo info = defaultInfo("/");
    info.forwardedHost = "a";
    std::string out = upstream(r, info);
    CHECK(countLinesStartingWith(out, "x-one:") == 0);
    CHECK(countLinesStartingWith(out, "x-two:") == 0);
    CHECK(countLinesStartingWith(out, "connection:") == 0);
    CHECK(out.find("X-Three: 3\r\n") != std::string::npos);
    // Host cannot be stripped by Connection.
    CHECK(out.find("\r\nHost: a\r\n") != std::string::npos);
    CHECK(out.find("\r\nX-Forwarded-Host: a\r\n") != std::string::npos);
  }

  TEST_CASE("upstream request: X-Forwarded-For lines are joined, then the client is appended") {
    SUBCASE("none") {
      std::string out = upstream(makeRequest("GET", "/", {{"Host", "a"}}), defaultInfo("/"));
      CHECK(out.find("\r\nX-Forwarded-For: 10.0.0.1\r\n") != std::string::npos);
    }
    SUBCASE("several lines, one with a list, one empty") {
      RequestHead r = makeRequest("GET", "/",
                                  {{"Host", "a"},
                                   {"X-Forwarded-For", "1.1.1.1"},
                                   {"x-forwarded-for", " 2.2.2.2, 3.3.3.3 "},
                                   {"X-Forwarded-For", ""},
                                   {"X-FORWARDED-FOR", "2001:db8::1"}});
      std::string out = upstream(r, defaultInfo("/"));
      CHECK(out.find("\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 2001:db8::1, 10.0.0.1\r\n") !=
            std::string::npos);
      CHECK(countLinesStartingWith(out, "x-forwarded-for:") == 1);
    }
    SUBCASE("proto https") {
      UpstreamRequestInfo info = defaultInfo("/");
      info.proto = "https";
      std::string out = upstream(makeRequest("GET", "/", {{"Host", "a"}}), info);
      CHECK(out.find("\r\nX-Forwarded-Proto: https\r\n") != std::string::npos);
      CHECK(countLinesStartingWith(out, "x-forwarded-proto:") == 1);
    }
  }

  TEST_CASE("upstream request: X-Request-Id and traceparent replaced, never duplicated") {
    RequestHead r = makeRequest("GET", "/",
                                {{"Host", "a"},
                                 {"X-Request-Id", "one"},
                                 {"x-request-id", "two"},
                                 {"Traceparent", "garbage"},
                                 {"traceparent", "more-garbage"}});
    UpstreamRequestInfo info = defaultInfo("/");
    std::string out = upstream(r, info);
    CHECK(countLinesStartingWith(out, "x-request-id:") == 1);
    CHECK(countLinesStartingWith(out, "traceparent:") == 1);
    CHECK(out.find("\r\nX-Request-Id: rid-1\r\n") != std::string::npos);
    CHECK(out.find("\r\ntraceparent: " + std::string(info.traceparent) + "\r\n") !=
          std::string::npos);
    CHECK(out.find("garbage") == std::string::npos);
    CHECK(out.find("one") == std::string::npos);
  }

  TEST_CASE("upstream request: framing is regenerated") {
    SUBCASE("chunked stays chunked, once") {
      RequestHead r = makeRequest("POST", "/", {{"Host", "a"}, {"Transfer-Encoding", "chunked"}});
      r.chunked = true;
      std::string out = upstream(r, defaultInfo("/"));
      CHECK(countLinesStartingWith(out, "transfer-encoding:") == 1);
      CHECK(out.find("\r\nTransfer-Encoding: chunked\r\n") != std::string::npos);
      CHECK(countLinesStartingWith(out, "content-length:") == 0);
    }
    SUBCASE("Content-Length is written from the parsed value") {
      RequestHead r = makeRequest("PUT", "/", {{"Host", "a"}, {"Content-Length", "0012"}});
      r.hasContentLength = true;
      r.contentLength = 12;
      std::string out = upstream(r, defaultInfo("/"));
      CHECK(countLinesStartingWith(out, "content-length:") == 1);
      CHECK(out.find("\r\nContent-Length: 12\r\n") != std::string::npos);
      CHECK(countLinesStartingWith(out, "transfer-encoding:") == 0);
    }
    SUBCASE("no body, no framing headers") {
      std::string out = upstream(makeRequest("GET", "/", {{"Host", "a"}}), defaultInfo("/"));
      CHECK(countLinesStartingWith(out, "content-length:") == 0);
      CHECK(countLinesStartingWith(out, "transfer-encoding:") == 0);
    }
    SUBCASE("an HTTP/1.0 request goes upstream as HTTP/1.1") {
      RequestHead r = makeRequest("GET", "/", {{"Host", "a"}});
      r.versionMinor = 0;
      std::string out = upstream(r, defaultInfo("/"));
      CHECK(out.rfind("GET / HTTP/1.1\r\n", 0) == 0);
    }
    SUBCASE("the target comes from the info, not the request") {
      std::string out =
          upstream(makeRequest("DELETE", "/api/v1/item", {{"Host", "a"}}), defaultInfo("/item"));
      CHECK(out.rfind("DELETE /item HTTP/1.1\r\n", 0) == 0);
    }
  }

  TEST_CASE("upstream request: Host override and X-Forwarded-Host") {
    SUBCASE("no Host (HTTP/1.0): the override is the only Host") {
      RequestHead r = makeRequest("GET", "/", {{"Accept", "*/*"}});
      r.versionMinor = 0;
      UpstreamRequestInfo info = defaultInfo("/");
      info.hostOverride = "10.0.0.5:8080";
      std::string out = upstream(r, info);
      CHECK(countLinesStartingWith(out, "host:") == 1);
      CHECK(out.find("\r\nHost: 10.0.0.5:8080\r\n") != std::string::npos);
      CHECK(countLinesStartingWith(out, "x-forwarded-host:") == 0);
    }
    SUBCASE("absolute-form authority replaces the client's Host") {
      RequestHead r = makeRequest("GET", "http://auth.example/x", {{"host", "other.example"}});
      UpstreamRequestInfo info = defaultInfo("/x");
      info.hostOverride = "auth.example";
      info.forwardedHost = "auth.example";
      std::string out = upstream(r, info);
      CHECK(countLinesStartingWith(out, "host:") == 1);
      CHECK(out.find("\r\nHost: auth.example\r\n") != std::string::npos);
      CHECK(out.find("other.example") == std::string::npos);
      CHECK(out.find("\r\nX-Forwarded-Host: auth.example\r\n") != std::string::npos);
    }
    SUBCASE("without an override the client's Host is kept as sent") {
      RequestHead r = makeRequest("GET", "/", {{"HOST", "Mixed.Case:81"}});
      UpstreamRequestInfo info = defaultInfo("/");
      std::string out = upstream(r, info);
      CHECK(countLinesStartingWith(out, "host:") == 1);
      CHECK(out.find("\r\nHOST: Mixed.Case:81\r\n") != std::string::npos);
    }
    SUBCASE("a client X-Forwarded-Host is never passed through") {
      RequestHead r = makeRequest("GET", "/", {{"Host", "a"}, {"X-Forwarded-Host", "evil"}});
      std::string out = upstream(r, defaultInfo("/"));
      CHECK(countLinesStartingWith(out, "x-forwarded-host:") == 0);
      UpstreamRequestInfo info = defaultInfo("/");
      info.forwardedHost = "a";
      out = upstream(r, info);
      CHECK(countLinesStartingWith(out, "x-forwarded-host:") == 1);
      CHECK(out.find("\r\nX-Forwarded-Host: a\r\n") != std::string::npos);
      CHECK(out.find("evil") == std::string::npos);
    }
  }

  TEST_CASE("upstream request: websocket upgrade") {
    RequestHead r = makeRequest("GET", "/ws",
                                {{"Host", "a"},
                                 {"Connection", "keep-alive, Upgrade"},
                                 {"Upgrade", "websocket"},
                                 {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                                 {"Sec-WebSocket-Version", "13"}});
    r.upgrade = true;
    UpstreamRequestInfo info = defaultInfo("/ws");
    info.websocket = true;
    std::string out = upstream(r, info);
    CHECK(countLinesStartingWith(out, "connection:") == 1);
    CHECK(countLinesStartingWith(out, "upgrade:") == 1);
    CHECK(out.find("\r\nConnection: upgrade\r\n") != std::string::npos);
    CHECK(out.find("\r\nUpgrade: websocket\r\n") != std::string::npos);
    CHECK(out.find("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") != std::string::npos);
    CHECK(out.find("\r\nSec-WebSocket-Version: 13\r\n") != std::string::npos);
    CHECK(out.size() >= 4);
    CHECK(out.substr(out.size() - 4) == "\r\n\r\n");

    // Without websocket the upgrade headers are dropped.
    info.websocket = false;
    std::string plain = upstream(r, info);
    CHECK(countLinesStartingWith(plain, "connection:") == 0);
    CHECK(countLinesStartingWith(plain, "upgrade:") == 0);
  }

  TEST_CASE("upstream request: appends to the output") {
    std::string out = "previous";
    serializeUpstreamRequest(makeRequest("GET", "/", {{"Host", "a"}}), defaultInfo("/"), out);
    CHECK(out.rfind("previousGET / HTTP/1.1\r\n", 0) == 0);
  }

  TEST_CASE("client response: framing variants") {
    ResponseHead r = makeResponse(200, "OK",
                                  {{"Content-Type", "text/plain"},
                                   {"Content-Length", "99"},
                                   {"Transfer-Encoding", "chunked"},
                                   {"Server", "up"}});
    ClientResponseInfo info;
    info.requestId = "rid-9";

    info.framing = BodyFraming::ContentLength;
    info.contentLength = 5;
    CHECK(client(r, info) ==
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: up\r\nX-Request-Id: rid-9\r\n"
          "Content-Length: 5\r\n\r\n");

    info.framing = BodyFraming::Chunked;
    CHECK(client(r, info) ==
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: up\r\nX-Request-Id: rid-9\r\n"
          "Transfer-Encoding: chunked\r\n\r\n");

    info.framing = BodyFraming::None;
    CHECK(
        client(r, info) ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: up\r\nX-Request-Id: rid-9\r\n\r\n");

    info.framing = BodyFraming::Close;
    info.keepAlive = false;
    CHECK(client(r, info) ==
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: up\r\nX-Request-Id: rid-9\r\n"
          "Connection: close\r\n\r\n");
  }

  TEST_CASE("client response: Connection handling") {
    ResponseHead r = makeResponse(200, "OK",
                                  {{"Connection", "keep-alive, X-Internal"},
                                   {"Keep-Alive", "timeout=5"},
                                   {"X-Internal", "secret"},
                                   {"Upgrade", "h2c"},
                                   {"Trailer", "X-T"},
                                   {"X-Public", "yes"}});
    ClientResponseInfo info;
    info.requestId = "r";
    info.framing = BodyFraming::ContentLength;
    info.contentLength = 0;

    SUBCASE("HTTP/1.1 keep-alive: no Connection header") {
      CHECK(client(r, info) ==
            "HTTP/1.1 200 OK\r\nX-Public: yes\r\nX-Request-Id: r\r\nContent-Length: 0\r\n\r\n");
    }
    SUBCASE("close") {
      info.keepAlive = false;
      CHECK(client(r, info) ==
            "HTTP/1.1 200 OK\r\nX-Public: yes\r\nX-Request-Id: r\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n");
    }
    SUBCASE("HTTP/1.0 client keep-alive is explicit") {
      info.http10Client = true;
      CHECK(client(r, info) ==
            "HTTP/1.1 200 OK\r\nX-Public: yes\r\nX-Request-Id: r\r\nContent-Length: 0\r\n"
            "Connection: keep-alive\r\n\r\n");
    }
    SUBCASE("HTTP/1.0 client, close") {
      info.http10Client = true;
      info.keepAlive = false;
      std::string out = client(r, info);
      CHECK(out.find("\r\nConnection: close\r\n") != std::string::npos);
      CHECK(countLinesStartingWith(out, "connection:") == 1);
    }
  }

  TEST_CASE("client response: X-Request-Id replaced, reason phrase") {
    ResponseHead r =
        makeResponse(404, "", {{"X-Request-Id", "from-backend"}, {"x-request-id", "again"}});
    ClientResponseInfo info;
    info.requestId = "ours";
    info.framing = BodyFraming::ContentLength;
    info.contentLength = 0;
    std::string out = client(r, info);
    CHECK(out.rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
    CHECK(countLinesStartingWith(out, "x-request-id:") == 1);
    CHECK(out.find("\r\nX-Request-Id: ours\r\n") != std::string::npos);
    CHECK(out.find("from-backend") == std::string::npos);

    // The backend's reason is kept when present; unknown codes get a generic phrase.
    CHECK(client(makeResponse(200, "Fine", {}), info).rfind("HTTP/1.1 200 Fine\r\n", 0) == 0);
    CHECK(client(makeResponse(299, "", {}), info).rfind("HTTP/1.1 299 Unknown\r\n", 0) == 0);
  }

  TEST_CASE("client response: 101 upgrade") {
    ResponseHead r = makeResponse(101, "Switching Protocols",
                                  {{"Upgrade", "websocket"},
                                   {"Connection", "Upgrade"},
                                   {"Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}});
    ClientResponseInfo info;
    info.requestId = "r";
    info.upgrade = true;
    info.framing = BodyFraming::None;
    CHECK(client(r, info) ==
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Request-Id: r\r\n"
          "Connection: upgrade\r\n\r\n");
    // Connection: upgrade wins over keepAlive=false.
    info.keepAlive = false;
    std::string out = client(r, info);
    CHECK(countLinesStartingWith(out, "connection:") == 1);
    CHECK(out.find("Connection: close") == std::string::npos);
  }

  TEST_CASE("interim response: end-to-end headers only, no framing or request id") {
    ResponseHead r = makeResponse(103, "Early Hints",
                                  {{"Link", "</a.css>; rel=preload"},
                                   {"Connection", "X-Hop"},
                                   {"X-Hop", "1"},
                                   {"Content-Length", "0"},
                                   {"X-Request-Id", "backend"},
                                   {"Link", "</b.js>; rel=preload"}});
    std::string out = "x";
    serializeInterimResponse(r, out);
    CHECK(out ==
          "xHTTP/1.1 103 Early Hints\r\n"
          "Link: </a.css>; rel=preload\r\n"
          "Link: </b.js>; rel=preload\r\n\r\n");
  }

  TEST_CASE("local reply: exact JSON body and matching Content-Length") {
    struct Case {
      int status;
      const char* code;
      const char* id;
      const char* statusLine;
    } cases[] = {
        {404, "no_route", "0123456789abcdef0123456789abcdef", "HTTP/1.1 404 Not Found"},
        {400, "bad_request", "x", "HTTP/1.1 400 Bad Request"},
        {503, "no_healthy_backend", "req-1", "HTTP/1.1 503 Service Unavailable"},
        {431, "headers_too_large", "a.b:c-d_e", "HTTP/1.1 431 Request Header Fields Too Large"},
    };
    for (const Case& c : cases) {
      CAPTURE(c.code);
      std::string out;
      serializeLocalReply(c.status, c.code, c.id, true, false, out);
      size_t end = out.find("\r\n\r\n");
      REQUIRE(end != std::string::npos);
      std::string head = out.substr(0, end + 4);
      std::string body = out.substr(end + 4);
      CHECK(body == std::string("{\"error\":\"") + c.code + "\",\"request_id\":\"" + c.id + "\"}");
      CHECK(head == std::string(c.statusLine) +
                        "\r\nContent-Type: application/json\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\nX-Request-Id: " + c.id + "\r\n\r\n");
    }
  }

  TEST_CASE("local reply: HEAD, close and extra headers") {
    std::string get, head;
    serializeLocalReply(429, "rate_limited", "id1", false, false, get, "Retry-After: 3\r\n");
    serializeLocalReply(429, "rate_limited", "id1", false, true, head, "Retry-After: 3\r\n");
    size_t end = get.find("\r\n\r\n");
    REQUIRE(end != std::string::npos);
    // HEAD: the same head, no body.
    CHECK(head == get.substr(0, end + 4));
    CHECK(head.rfind("HTTP/1.1 429 Too Many Requests\r\n", 0) == 0);
    CHECK(head.find("\r\nRetry-After: 3\r\n") != std::string::npos);
    CHECK(head.find("\r\nConnection: close\r\n") != std::string::npos);
    CHECK(head.find("\r\nX-Request-Id: id1\r\n") != std::string::npos);
    CHECK(get.substr(end + 4) == "{\"error\":\"rate_limited\",\"request_id\":\"id1\"}");
  }

  TEST_CASE("reasonPhrase") {
    CHECK(reasonPhrase(200) == "OK");
    CHECK(reasonPhrase(502) == "Bad Gateway");
    CHECK(reasonPhrase(504) == "Gateway Timeout");
    CHECK(reasonPhrase(413) == "Payload Too Large");
    CHECK(reasonPhrase(799) == "Unknown");
  }

  TEST_CASE("appendChunkHeader") {
    std::string out;
    appendChunkHeader(0, out);
    CHECK(out == "0\r\n");
    out.clear();
    appendChunkHeader(255, out);
    CHECK(out == "ff\r\n");
    out.clear();
    appendChunkHeader(4096, out);
    CHECK(out == "1000\r\n");
    out = "x";
    appendChunkHeader(10, out);
    CHECK(out == "xa\r\n");
    out.clear();
    appendChunkHeader(size_t(0xffffffffffffffffull), out);
    CHECK(out == "ffffffffffffffff\r\n");
  }
}
