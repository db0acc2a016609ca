// The HTTP/1 server codec (proxy/http1/server_codec) between a fake transport and a fake
// decoder: requests fed in one piece and one byte at a time, body flow control, pipelining,
// 100-continue, parse errors, and the response framing / keep-alive decision.
#include "proxy/http1/server_codec.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

using namespace sluice;

namespace {

// The connection under the codec. Its OutQueue writes to one end of a socketpair (a uv_pipe
// on a private loop); flush() reads the other end into `written`, so tests see the exact
// bytes the client would.
class FakeTransport final : public http1::Transport {
 public:
  std::string written;
  std::vector<std::string> events;  // "closeAfterFlush", "linger", "close", "waitIdle"
  config::ServerSettings cfg;
  bool reading = true;
  bool isClosed = false;
  bool isClosing = false;  // graceful shutdown
  uint64_t timerMs = 0;    // armed deadline (0: none)

  FakeTransport() {
    uv_loop_init(&loop_);
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds_) == 0);
    uv_pipe_init(&loop_, &pipe_, 0);
    REQUIRE(uv_pipe_open(&pipe_, fds_[0]) == 0);
    out_.bind(reinterpret_cast<uv_stream_t*>(&pipe_), this, nullptr);
  }
  ~FakeTransport() override {
    uv_close(reinterpret_cast<uv_handle_t*>(&pipe_), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    uv_loop_close(&loop_);
    ::close(fds_[1]);
  }

  net::OutQueue& out() override { return out_; }
  void startReading() override { reading = true; }
  void stopReading() override { reading = false; }
  void flush() override {
    REQUIRE(out_.flush() == 0);
    REQUIRE(out_.queuedBytes() == 0);  // all taken by the socket (tests write little)
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fds_[1], buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      written.append(buf, size_t(n));
    }
  }
  void closeAfterFlush() override { end("closeAfterFlush"); }
  void lingerClose() override { end("linger"); }
  void close() override { end("close"); }
  bool closed() const override { return isClosed; }
  void armTimer(uint64_t ms) override { timerMs = ms; }
  void disarmTimer() override { timerMs = 0; }
  void waitIdle(uint64_t ms) override {
    events.push_back("waitIdle");
    timerMs = ms;
  }
  bool closing() const override { return isClosing; }
  void safePoint() override {}  // the fake has no stream to give back
  const config::ServerSettings& settings() const override { return cfg; }

  // Everything written since the last call.
  std::string take() {
    std::string s;
    s.swap(written);
    return s;
  }

 private:
  void end(const char* how) {
    flush();
    events.push_back(how);
    isClosed = true;
  }
  uv_loop_t loop_{};
  uv_pipe_t pipe_{};
  int fds_[2] = {-1, -1};
  net::OutQueue out_;
};

// What the exchange would be: records what the codec delivers. Optionally answers like one:
// reads the body as soon as it has the head (a pooled upstream connection makes that
// synchronous), or answers a complete request at once (a local reply inside decodeHeaders).
class FakeDecoder final : public RequestDecoder {
 public:
  struct Request {
    std::string method, target, body;
    bool endWithHeaders = false;  // decodeHeaders(endOfRequest=true)
    bool ended = false;           // decodeEnd
    size_t dataCalls = 0;
  };
  std::vector<Request> requests;
  std::vector<std::string> events;  // "headers", "end", "error:431 headers_too_large", "reset"
  http1::ServerCodec* codec = nullptr;
  bool readBodyAtOnce = false;
  bool answerAtOnce = false;  // 200 "ok:<target>" when the request is complete
  bool started = false;

  void decodeHeaders(http::RequestHead& head, bool endOfRequest) override {
    events.push_back("headers");
    requests.push_back({head.method, head.target, "", endOfRequest, false, 0});
    started = false;
    if (endOfRequest && answerAtOnce) answer();
    if (!endOfRequest && readBodyAtOnce) codec->readBody();
  }
  bool decodeData(const char* data, size_t len) override {
    REQUIRE(!requests.empty());
    requests.back().body.append(data, len);
    ++requests.back().dataCalls;
    return true;
  }
  void decodeEnd() override {
    events.push_back("end");
    requests.back().ended = true;
    if (answerAtOnce) answer();
  }
  void flushRequest() override {}
  void decodeTunnelData(const char*, size_t) override {}
  void decodeTunnelEnd() override {}
  void onTimeout() override { events.push_back("timeout"); }
  void onClientDrained() override {}
  // Like the exchange: a local reply that closes the connection.
  void decodeError(int status, std::string_view code) override {
    events.push_back("error:" + std::to_string(status) + " " + std::string(code));
    http::ResponseHead h;
    h.status = status;
    h.hasContentLength = true;
    ResponseInfo info;
    info.requestId = "rid";
    info.local = info.close = true;
    respond(h, info, {});
  }
  void abandon() override { events.push_back("abandon"); }
  void reset() override { events.push_back("reset"); }
  bool responseStarted() const override { return started; }
  bool holdsResources() const override { return false; }

  // A whole response through the codec (what the exchange does): head, body pieces, end.
  void respond(const http::ResponseHead& head, const ResponseInfo& info,
               const std::vector<std::string>& pieces) {
    started = true;
    codec->encodeHeaders(head, info);
    for (const std::string& p : pieces) codec->encodeData(p.data(), p.size());
    codec->encodeEnd();
  }

 private:
  void answer() {
    body_ = "ok:" + requests.back().target;
    http::ResponseHead h;
    h.status = 200;
    h.hasContentLength = true;
    h.contentLength = body_.size();
    ResponseInfo info;
    info.requestId = "rid";
    respond(h, info, {body_});
  }
  std::string body_;
};

struct Harness {
  FakeTransport t;
  FakeDecoder d;
  http1::ServerCodec codec;

  Harness() {
    d.codec = &codec;
    codec.bind(&t, &d, false);
  }
  // Delivers `bytes` as the connection would: in pieces of `step` bytes (0: one piece).
  void feed(std::string_view bytes, size_t step = 0) {
    if (step == 0) step = bytes.size();
    for (size_t i = 0; i < bytes.size() && !t.isClosed; i += step) {
      const std::string piece(bytes.substr(i, step));  // the read buffer is reused
      codec.onData(piece.data(), piece.size());
    }
  }
};

// Events as one string, for readable failure messages.
std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& e : v) s += (s.empty() ? "" : ", ") + e;
  return s;
}

// Both ways of reading a request: one read, and one byte per read.
constexpr size_t kSteps[] = {0, 1};

http::ResponseHead response(int status, long contentLength = -1) {
  http::ResponseHead h;
  h.status = status;
  if (contentLength >= 0) {
    h.hasContentLength = true;
    h.contentLength = uint64_t(contentLength);
  }
  return h;
}

const std::string kPost =
    "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
const std::string kChunked =
    "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5\r\nhello\r\n1\r\n \r\n5;ext=1\r\nworld\r\n0\r\n\r\n";

}  // namespace

TEST_SUITE("http1_server_codec") {
  TEST_CASE("GET without a body: one decodeHeaders with endOfRequest") {
    for (size_t step : kSteps) {
      CAPTURE(step);
      Harness h;
      h.feed("GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n", step);
      CHECK(join(h.d.events) == join({"headers"}));
      REQUIRE(h.d.requests.size() == 1);
      CHECK(h.d.requests[0].method == "GET");
      CHECK(h.d.requests[0].target == "/a?b=1");
      CHECK(h.d.requests[0].endWithHeaders);
      CHECK(h.codec.inRequest());
      CHECK(h.t.timerMs == 0);  // the header timer is done with
    }
  }

  TEST_CASE("a body (Content-Length or chunked) waits for readBody, then arrives whole") {
    // readBody later (the upstream connects), or from inside decodeHeaders (a pooled upstream
    // connection is ready at once): the body bytes read with the head are stashed meanwhile.
    for (const std::string& request : {kPost, kChunked}) {
      for (bool atOnce : {false, true}) {
        for (size_t step : kSteps) {
          CAPTURE(request);
          CAPTURE(atOnce);
          CAPTURE(step);
          Harness h;
          h.d.readBodyAtOnce = atOnce;
          h.feed(request, step);
          REQUIRE(h.d.requests.size() == 1);
          CHECK_FALSE(h.d.requests[0].endWithHeaders);
          if (!atOnce) {
            CHECK(h.d.requests[0].body.empty());  // paused after the head
            CHECK(join(h.d.events) == "headers");
            h.codec.readBody();
          }
          CHECK(h.d.requests[0].body == "hello world");  // de-chunked
          CHECK(h.d.requests[0].ended);
          CHECK(join(h.d.events) == "headers, end");
          CHECK(h.t.written.empty());  // no 100 Continue unasked
        }
      }
    }
  }

  TEST_CASE("body bytes read after readBody flow straight through (with the client timer)") {
    Harness h;
    const size_t headLen = kPost.find("\r\n\r\n") + 4;
    h.feed(kPost.substr(0, headLen), 1);
    CHECK_FALSE(h.t.reading);  // stopped at the head
    h.codec.readBody();
    CHECK(h.t.reading);
    CHECK(h.t.timerMs == uint64_t(h.t.cfg.clientIdleTimeout.count()));
    h.feed(kPost.substr(headLen), 1);
    CHECK(h.d.requests[0].body == "hello world");
    CHECK(h.d.requests[0].dataCalls == 11);
    CHECK(h.d.requests[0].ended);
    CHECK(h.t.timerMs == 0);
  }

  TEST_CASE("pipelined requests: the second is delivered only after the first's encodeEnd") {
    const std::string two = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" + kPost;
    for (size_t step : kSteps) {
      CAPTURE(step);
      Harness h;
      h.feed(two, step);
      REQUIRE(h.d.requests.size() == 1);
      CHECK(h.d.requests[0].target == "/1");
      h.d.respond(response(200, 2), {}, {"hi"});
      CHECK(join(h.d.events) == join({"headers", "reset", "headers"}));
      REQUIRE(h.d.requests.size() == 2);
      CHECK(h.d.requests[1].target == "/upload");
      CHECK(h.d.requests[1].body.empty());
      h.codec.readBody();
      CHECK(h.d.requests[1].body == "hello world");
      CHECK(h.d.requests[1].ended);
      h.d.respond(response(200, 0), {}, {});
      CHECK(join(h.t.events) == join({"waitIdle", "waitIdle"}));
      CHECK_FALSE(h.t.isClosed);
      CHECK(h.codec.idle());
    }
  }

  TEST_CASE("pipelined requests answered synchronously come out in order") {
    const std::string three = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" + kPost +
                              "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
    for (size_t step : kSteps) {
      CAPTURE(step);
      Harness h;
      h.d.answerAtOnce = true;
      h.d.readBodyAtOnce = true;
      h.feed(three, step);
      REQUIRE(h.d.requests.size() == 3);
      CHECK(h.d.requests[1].body == "hello world");
      const std::string w = h.t.take();
      const size_t a = w.find("ok:/1"), b = w.find("ok:/upload"), c = w.find("ok:/3");
      CHECK(a != std::string::npos);
      CHECK(b != std::string::npos);
      CHECK(c != std::string::npos);
      CHECK(a < b);
      CHECK(b < c);
      CHECK(h.codec.idle());
    }
  }

  TEST_CASE("Expect: 100-continue is answered on readBody only if no body byte arrived") {
    const std::string head =
        "PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    struct Case {
      const char* what;
      std::string bytes;
      bool expectContinue;
    } cases[] = {{"head alone", head, true}, {"body came with the head", head + "abc", false}};
    for (const Case& c : cases) {
      for (size_t step : kSteps) {
        CAPTURE(std::string(c.what));
        CAPTURE(step);
        Harness h;
        h.feed(c.bytes, step);
        CHECK(h.t.written.empty());  // not before the exchange asks for the body
        h.codec.readBody();
        CHECK((h.t.take() == "HTTP/1.1 100 Continue\r\n\r\n") == c.expectContinue);
        h.feed("abc");
        CHECK(h.d.requests[0].body == "abc");
        CHECK(h.d.requests[0].ended);
      }
    }
  }

  TEST_CASE("parse errors go to decodeError with 400, 431 or 501") {
    struct Case {
      const char* what;
      std::string bytes;
      const char* event;
    } cases[] = {
        {"garbage", "GARBAGE\r\n\r\n", "error:400 bad_request"},
        {"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", "error:400 bad_request"},
        {"two Content-Lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                                "Content-Length: 2\r\n\r\n", "error:400 bad_request"},
        {"head too large", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(600, 'x') +
                               "\r\n\r\n", "error:431 headers_too_large"},
        {"gzip transfer coding", "POST / HTTP/1.1\r\nHost: a\r\n"
                                 "Transfer-Encoding: gzip, chunked\r\n\r\n",
         "error:501 not_implemented"},
    };
    for (const Case& c : cases) {
      for (size_t step : kSteps) {
        CAPTURE(std::string(c.what));
        CAPTURE(step);
        Harness h;
        h.t.cfg.maxHeaderSize = 512;
        h.codec.bind(&h.t, &h.d, false);
        h.feed(c.bytes, step);
        CHECK(join(h.d.events) == join({c.event}));
        const std::string status = std::string(c.event).substr(6, 3);
        CHECK(h.t.take().starts_with("HTTP/1.1 " + status + " "));
        CHECK(join(h.t.events) == "linger");
      }
    }
  }

  TEST_CASE("too many headers is a 431") {
    std::string req = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < 120; ++i) req += "X-H" + std::to_string(i) + ": v\r\n";
    req += "\r\n";
    Harness h;
    h.feed(req);
    CHECK(join(h.d.events) == join({"error:431 headers_too_large"}));
    CHECK(join(h.t.events) == "linger");
  }

  TEST_CASE("bad chunk framing mid-body after the response started closes without a reply") {
    Harness h;
    h.feed("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    h.codec.readBody();
    h.d.started = true;
    h.feed("zz\r\n");
    CHECK(join(h.t.events) == join({"close"}));
    CHECK(join(h.d.events) == join({"headers"}));
  }

  TEST_CASE("response framing and the keep-alive decision") {
    struct Case {
      const char* what;
      std::string request;
      http::ResponseHead head;
      ResponseInfo info;
      std::vector<std::string> pieces;
      std::string expected;     // the bytes the client gets
      const char* endEvent;     // what ends the response on the transport
    };
    ResponseInfo plain;
    plain.requestId = "r";
    ResponseInfo noBody = plain;
    noBody.noBody = true;
    ResponseInfo closing = plain;
    closing.close = true;
    ResponseInfo localClose = closing;
    localClose.local = true;
    ResponseInfo extra = plain;
    extra.extraHeaders = "Strict-Transport-Security: max-age=1\r\n";
    const std::string get11 = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string get10 = "GET / HTTP/1.0\r\n\r\n";
    const std::string get10ka = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    const std::string head11 = "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string close11 = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    const std::string kChunk26(26, 'z');

    const Case cases[] = {
        {"Content-Length passes through", get11, response(200, 5), plain, {"he", "llo"},
         "HTTP/1.1 200 OK\r\nX-Request-Id: r\r\nContent-Length: 5\r\n\r\nhello", "waitIdle"},
        {"HTTP/1.1 without a length is chunked", get11, response(200), plain,
         {"hello", kChunk26},
         "HTTP/1.1 200 OK\r\nX-Request-Id: r\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5\r\nhello\r\n1a\r\n" + kChunk26 + "\r\n0\r\n\r\n",
         "waitIdle"},
        {"HTTP/1.0 without a length is close-delimited", get10, response(200), plain,
         {"hello"}, "HTTP/1.1 200 OK\r\nX-Request-Id: r\r\nConnection: close\r\n\r\nhello",
         "closeAfterFlush"},
        {"HTTP/1.0 keep-alive with a length says so", get10ka, response(200, 2), plain, {"ok"},
         "HTTP/1.1 200 OK\r\nX-Request-Id: r\r\nContent-Length: 2\r\n"
         "Connection: keep-alive\r\n\r\nok",
         "waitIdle"},
        {"HEAD keeps the Content-Length, sends no body", head11, response(200, 5), noBody, {},
         "HTTP/1.1 200 OK\r\nX-Request-Id: r\r\nContent-Length: 5\r\n\r\n", "waitIdle"},
        {"204 has neither length nor body", get11, response(204, 0), noBody, {},
         "HTTP/1.1 204 No Content\r\nX-Request-Id: r\r\n\r\n", "waitIdle"},
        {"304 without a length has no body and is not chunked", get11, response(304), noBody,
         {}, "HTTP/1.1 304 Not Modified\r\nX-Request-Id: r\r\n\r\n", "waitIdle"},
        {"Connection: close from the client", close11, response(200, 2), plain, {"ok"},
         "HTTP/1.1 200 OK\r\nX-Request-Id: r\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
         "closeAfterFlush"},
        {"the exchange asks to close", get11, response(200, 2), closing, {"ok"},
         "HTTP/1.1 200 OK\r\nX-Request-Id: r\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
         "closeAfterFlush"},
        {"a local reply that closes lingers", get11, response(400, 2), localClose, {"no"},
         "HTTP/1.1 400 Bad Request\r\nX-Request-Id: r\r\nContent-Length: 2\r\n"
         "Connection: close\r\n\r\nno",
         "linger"},
        {"listener headers follow X-Request-Id", get11, response(200, 0), extra, {},
         "HTTP/1.1 200 OK\r\nX-Request-Id: r\r\nStrict-Transport-Security: max-age=1\r\n"
         "Content-Length: 0\r\n\r\n",
         "waitIdle"},
    };
    for (const Case& c : cases) {
      CAPTURE(std::string(c.what));
      Harness h;
      h.feed(c.request);
      REQUIRE(h.d.requests.size() == 1);
      h.d.respond(c.head, c.info, c.pieces);
      CHECK(h.t.take() == c.expected);
      CHECK(join(h.t.events) == join({c.endEvent}));
    }
  }

  TEST_CASE("no keep-alive when the body was not read, or during graceful shutdown") {
    struct Case {
      const char* what;
      std::string request;
      bool shuttingDown;
    } cases[] = {
        {"answered before the body was read",
         "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", false},
        {"graceful shutdown", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
    };
    for (const Case& c : cases) {
      CAPTURE(std::string(c.what));
      Harness h;
      h.t.isClosing = c.shuttingDown;
      h.feed(c.request);
      ResponseInfo info;
      info.requestId = "r";
      h.d.respond(response(200, 0), info, {});
      CHECK(h.t.take().find("Connection: close\r\n") != std::string::npos);
      CHECK(join(h.t.events) == "closeAfterFlush");
    }
  }

  TEST_CASE("an empty body piece writes nothing (a chunked body is not ended early)") {
    Harness h;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ResponseInfo info;
    info.requestId = "r";
    h.d.respond(response(200), info, {"ab", "", "c"});
    CHECK(h.t.take() ==
          "HTTP/1.1 200 OK\r\nX-Request-Id: r\r\nTransfer-Encoding: chunked\r\n\r\n"
          "2\r\nab\r\n1\r\nc\r\n0\r\n\r\n");
  }

  TEST_CASE("header timeout: 408 once a request started, silent close when idle") {
    Harness idle;
    idle.codec.onTimeout();
    CHECK(join(idle.t.events) == join({"close"}));
    CHECK(idle.d.events.empty());

    Harness partial;
    partial.feed("GET / HT");
    CHECK(partial.t.timerMs == uint64_t(partial.t.cfg.clientHeaderTimeout.count()));
    partial.codec.onTimeout();
    CHECK(join(partial.d.events) == join({"error:408 request_timeout"}));
  }
}
