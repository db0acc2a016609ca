// Unit tests for proxy/http/http1_parser: requests, responses, limits and the request-smuggling
// defences. Every message is also parsed with the input split at every byte position (two
// pieces) and one byte at a time, and must give the same heads, bodies and statuses.
#include "proxy/http/http1_parser.h"

#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace sluice::http;
using Status = Http1Parser::Status;
using Kind = Http1Parser::Kind;

namespace {

const char* statusName(Status s) {
  switch (s) {
    case Status::NeedMore:
      return "NeedMore";
    case Status::HeadComplete:
      return "HeadComplete";
    case Status::Complete:
      return "Complete";
    case Status::Upgrade:
      return "Upgrade";
    case Status::Error:
      return "Error";
  }
  return "?";
}

const char* errorName(ParseError e) {
  switch (e) {
    case ParseError::None:
      return "None";
    case ParseError::Malformed:
      return "Malformed";
    case ParseError::HeadTooLarge:
      return "HeadTooLarge";
    case ParseError::TooManyHeaders:
      return "TooManyHeaders";
    case ParseError::Unsupported:
      return "Unsupported";
    case ParseError::Aborted:
      return "Aborted";
  }
  return "?";
}

using Headers = std::vector<std::pair<std::string, std::string>>;

Headers snapshot(const HeaderMap& h) {
  Headers out;
  for (size_t i = 0; i < h.size(); ++i)
    if (!h.removedAt(i)) out.emplace_back(std::string(h.nameAt(i)), std::string(h.valueAt(i)));
  return out;
}

// What the handler saw of one message.
struct Msg {
  std::string method, target;
  int status = 0;
  std::string reason;
  int major = 0, minor = 0;
  Headers headers;
  bool keepAlive = false, chunked = false, hasContentLength = false, upgrade = false;
  uint64_t contentLength = 0;
  std::string body;
  bool complete = false;
  bool operator==(const Msg&) const = default;
};

struct Options {
  size_t maxHead = 8192;
  size_t maxHeaders = 100;
  bool pauseAtHead = false;   // the handler returns kPause
  bool expectNoBody = false;  // response to a HEAD request
  bool callFinish = false;    // the peer closes after the input
};

struct Outcome {
  std::vector<Msg> msgs;
  std::vector<Status> events;  // every status other than NeedMore, in order
  ParseError error = ParseError::None;
  Status finishStatus = Status::NeedMore;
  std::string rest;  // bytes after an Upgrade
  bool operator==(const Outcome&) const = default;
};

std::string describe(const Outcome& o) {
  std::ostringstream s;
  s << "events=[";
  for (Status e : o.events) s << statusName(e) << ' ';
  s << "] error=" << errorName(o.error) << " finish=" << statusName(o.finishStatus)
    << " rest=" << o.rest.size() << " msgs=" << o.msgs.size();
  for (const Msg& m : o.msgs) {
    s << "\n  {" << m.method << ' ' << m.target << ' ' << m.status << ' ' << m.reason << " HTTP/"
      << m.major << '.' << m.minor << " ka=" << m.keepAlive << " chunked=" << m.chunked
      << " cl=" << m.hasContentLength << '/' << m.contentLength << " upgrade=" << m.upgrade
      << " complete=" << m.complete << " body=[" << m.body << "] headers=";
    for (auto& [n, v] : m.headers) s << '[' << n << ": " << v << ']';
    s << '}';
  }
  return s.str();
}

class Recorder : public Http1Parser::Handler {
 public:
  Recorder(Http1Parser& p, Kind kind, const Options& opts, Outcome& out)
      : p_(p), kind_(kind), opts_(opts), out_(out) {}

  int onHeadersComplete() override {
    Msg m;
    if (kind_ == Kind::Request) {
      const RequestHead& r = p_.request();
      m.method = r.method;
      m.target = r.target;
      m.major = r.versionMajor;
      m.minor = r.versionMinor;
      m.headers = snapshot(r.headers);
      m.keepAlive = r.keepAlive;
      m.chunked = r.chunked;
      m.hasContentLength = r.hasContentLength;
      m.contentLength = r.contentLength;
      m.upgrade = r.upgrade;
    } else {
      const ResponseHead& r = p_.response();
      m.status = r.status;
      m.reason = r.reason;
      m.major = r.versionMajor;
      m.minor = r.versionMinor;
      m.headers = snapshot(r.headers);
      m.keepAlive = r.keepAlive;
      m.chunked = r.chunked;
      m.hasContentLength = r.hasContentLength;
      m.contentLength = r.contentLength;
      m.upgrade = r.upgrade;
    }
    out_.msgs.push_back(std::move(m));
    // Like UpstreamConn: an interim response has no body.
    if (kind_ == Kind::Response && out_.msgs.back().status >= 100 &&
        out_.msgs.back().status < 200 && out_.msgs.back().status != 101)
      return kNoBody;
    return opts_.pauseAtHead ? kPause : kBody;
  }
  bool onBody(const char* data, size_t len) override {
    REQUIRE(!out_.msgs.empty());
    out_.msgs.back().body.append(data, len);
    return true;
  }
  void onMessageComplete() override {
    REQUIRE(!out_.msgs.empty());
    out_.msgs.back().complete = true;
  }

 private:
  Http1Parser& p_;
  Kind kind_;
  const Options& opts_;
  Outcome& out_;
};

// Feeds `pieces` in order to one parser, driving it the way the connections do.
Outcome run(Kind kind, const std::vector<std::string_view>& pieces, const Options& opts) {
  Outcome out;
  Http1Parser p;
  Recorder rec(p, kind, opts, out);
  p.init(kind, &rec, opts.maxHead, opts.maxHeaders);
  p.setExpectNoBody(opts.expectNoBody);
  bool stopped = false, upgraded = false;
  int guard = 0;
  for (std::string_view piece : pieces) {
    if (upgraded) {
      out.rest.append(piece);
      continue;
    }
    size_t off = 0;
    bool resumed = false;  // after resume() a message with no body completes on the next call
    while (!stopped && (off < piece.size() || resumed)) {
      REQUIRE(++guard < 1000000);
      resumed = false;
      auto r = p.execute(piece.data() + off, piece.size() - off);
      REQUIRE(r.consumed <= piece.size() - off);
      off += r.consumed;
      if (r.status != Status::NeedMore) out.events.push_back(r.status);
      switch (r.status) {
        case Status::NeedMore:
          REQUIRE(off == piece.size());
          break;
        case Status::HeadComplete:
          p.resume();
          resumed = true;
          break;
        case Status::Complete:
          p.next();
          p.setExpectNoBody(opts.expectNoBody);
          break;
        case Status::Upgrade:
          out.rest.append(piece.substr(off));
          stopped = upgraded = true;
          break;
        case Status::Error:
          stopped = true;
          break;
      }
    }
    if (stopped) break;
  }
  if (opts.callFinish && !stopped) out.finishStatus = p.finish();
  out.error = p.error();
  return out;
}

// Parses `in` whole, then split in two at every position, then one byte at a time: all must
// agree. Returns the whole-buffer outcome.
Outcome parseAllWays(Kind kind, std::string_view in, const Options& opts = {}) {
  Outcome whole = run(kind, {in}, opts);
  for (size_t i = 1; i < in.size(); ++i) {
    Outcome two = run(kind, {in.substr(0, i), in.substr(i)}, opts);
    if (!(two == whole)) {
      FAIL_CHECK("split at " << i << " differs\nwhole: " << describe(whole)
                             << "\nsplit: " << describe(two));
      break;
    }
  }
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < in.size(); ++i) bytes.push_back(in.substr(i, 1));
  Outcome one = run(kind, bytes, opts);
  CHECK_MESSAGE(one == whole, "byte at a time differs\nwhole: " << describe(whole)
                                                                << "\nbytes: " << describe(one));
  return whole;
}

Outcome parseRequest(std::string_view in, const Options& opts = {}) {
  return parseAllWays(Kind::Request, in, opts);
}
Outcome parseResponse(std::string_view in, const Options& opts = {}) {
  return parseAllWays(Kind::Response, in, opts);
}

// A request that must be refused: Error with `want`, and the handler never saw a head.
void expectRefused(std::string_view in, ParseError want, bool headSeen = false) {
  Outcome o = parseRequest(in);
  INFO(describe(o));
  REQUIRE(!o.events.empty());
  CHECK(o.events.back() == Status::Error);
  CHECK(o.error == want);
  for (const Msg& m : o.msgs) CHECK_FALSE(m.complete);
  if (!headSeen) CHECK(o.msgs.empty());
}

std::string headerValue(const Msg& m, std::string_view name) {
  for (auto& [n, v] : m.headers)
    if (iequals(n, name)) return v;
  return "<absent>";
}

// A handler for direct single-buffer tests.
struct Sink : Http1Parser::Handler {
  int headRc = kBody;
  int heads = 0, completes = 0;
  std::string body;
  int onHeadersComplete() override {
    ++heads;
    return headRc;
  }
  bool onBody(const char* d, size_t n) override {
    body.append(d, n);
    return true;
  }
  void onMessageComplete() override { ++completes; }
};

}  // namespace

TEST_SUITE("http1_parser") {
  TEST_CASE("GET with headers: names, values, trimming") {
    const std::string in =
        "GET /a/b?x=1 HTTP/1.1\r\n"
        "Host: example.com\r\n"
        "User-Agent:   curl/8.0  \r\n"
        "X-Empty:\r\n"
        "X-Tab:\tv\t\r\n"
        "Accept: */*\r\n"
        "\r\n";
    Outcome o = parseRequest(in);
    INFO(describe(o));
    REQUIRE(o.msgs.size() == 1);
    CHECK(o.events == std::vector<Status>{Status::Complete});
    CHECK(o.error == ParseError::None);
    const Msg& m = o.msgs[0];
    CHECK(m.method == "GET");
    CHECK(m.target == "/a/b?x=1");
    CHECK(m.major == 1);
    CHECK(m.minor == 1);
    CHECK(m.complete);
    CHECK(m.body.empty());
    CHECK_FALSE(m.chunked);
    CHECK_FALSE(m.hasContentLength);
    CHECK(m.headers == Headers{{"Host", "example.com"},
                               {"User-Agent", "curl/8.0"},
                               {"X-Empty", ""},
                               {"X-Tab", "v"},
                               {"Accept", "*/*"}});

    // Case-insensitive lookups on the parser's head.
    Sink sink;
    Http1Parser p;
    p.init(Kind::Request, &sink, 8192);
    auto r = p.execute(in.data(), in.size());
    CHECK(r.status == Status::Complete);
    CHECK(r.consumed == in.size());
    const HeaderMap& h = p.request().headers;
    CHECK(h.get("host") == "example.com");
    CHECK(h.get("HOST") == "example.com");
    CHECK(h.get("user-agent") == "curl/8.0");
    bool found = false;
    CHECK(h.get("x-empty", &found).empty());
    CHECK(found);
    CHECK(h.get("x-missing", &found).empty());
    CHECK_FALSE(found);
    CHECK(h.has("ACCEPT"));
    CHECK(h.count("host") == 1);
    CHECK(p.headComplete());
  }

  TEST_CASE("keep-alive rules for HTTP/1.0 and 1.1") {
    struct Case {
      const char* in;
      bool keepAlive;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nHost: a\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
    };
    for (const Case& c : cases) {
      CAPTURE(c.in);
      Outcome o = parseRequest(c.in);
      INFO(describe(o));
      REQUIRE(o.msgs.size() == 1);
      CHECK(o.msgs[0].complete);
      CHECK(o.msgs[0].keepAlive == c.keepAlive);
    }
  }

  TEST_CASE("Content-Length body") {
    Outcome o =
        parseRequest("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world");
    INFO(describe(o));
    REQUIRE(o.msgs.size() == 1);
    CHECK(o.events == std::vector<Status>{Status::Complete});
    const Msg& m = o.msgs[0];
    CHECK(m.method == "POST");
    CHECK(m.hasContentLength);
    CHECK(m.contentLength == 11);
    CHECK_FALSE(m.chunked);
    CHECK(m.body == "hello world");
    CHECK(m.complete);
  }

  TEST_CASE("Content-Length: 0 completes at the head") {
    Outcome o = parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    REQUIRE(o.msgs.size() == 1);
    CHECK(o.msgs[0].complete);
    CHECK(o.msgs[0].hasContentLength);
    CHECK(o.msgs[0].contentLength == 0);
    CHECK(o.msgs[0].body.empty());
  }

  TEST_CASE("Content-Length body not yet complete") {
    Outcome o = parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello");
    REQUIRE(o.msgs.size() == 1);
    CHECK(o.events.empty());
    CHECK(o.msgs[0].body == "hello");
    CHECK_FALSE(o.msgs[0].complete);
  }

  TEST_CASE("chunked body with chunk extensions and trailers") {
    const std::string in =
        "POST /c HTTP/1.1\r\n"
        "Host: a\r\n"
        "Transfer-Encoding: chunked\r\n"
        "\r\n"
        "5;name=value\r\nhello\r\n"
        "1;ext\r\n \r\n"
        "A\r\n0123456789\r\n"
        "0\r\n"
        "X-Checksum: abc\r\n"
        "\r\n";
    Outcome o = parseRequest(in);
    INFO(describe(o));
    REQUIRE(o.msgs.size() == 1);
    CHECK(o.events == std::vector<Status>{Status::Complete});
    const Msg& m = o.msgs[0];
    CHECK(m.chunked);
    CHECK_FALSE(m.hasContentLength);
    CHECK(m.body == "hello 0123456789");
    CHECK(m.complete);
    CHECK(headerValue(m, "transfer-encoding") == "chunked");
    CHECK(headerValue(m, "x-checksum") == "<absent>");  // the head was seen before the trailer

    // Without trailers, and with upper-case hex.
    Outcome o2 = parseRequest(
        "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
        "1F\r\n0123456789abcdefghijklmnopqrstu\r\n0\r\n\r\n");
    REQUIRE(o2.msgs.size() == 1);
    CHECK(o2.msgs[0].body == "0123456789abcdefghijklmnopqrstu");
    CHECK(o2.msgs[0].complete);
  }

  // Regression: the head limit used to count trailer bytes from the start of the message, so a
  // chunked body longer than max_header_size followed by a trailer was refused as HeadTooLarge.
  TEST_CASE("trailers after a chunked body larger than the head limit are not a too-large head") {
    Options opts;
    opts.maxHead = 128;
    std::string body(300, 'x');
    std::string in = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n12C\r\n" +
                     body + "\r\n0\r\nX-T: 1\r\n\r\n";
    Outcome o = parseRequest(in, opts);
    INFO(describe(o));
    CHECK(o.error == ParseError::None);
    REQUIRE(o.msgs.size() == 1);
    CHECK(o.msgs[0].complete);
    CHECK(o.msgs[0].body == body);

    Outcome r = parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n12C\r\n" +
                                  body + "\r\n0\r\nX-T: 1\r\n\r\n",
                              opts);
    INFO(describe(r));
    CHECK(r.error == ParseError::None);
    REQUIRE(r.msgs.size() == 1);
    CHECK(r.msgs[0].complete);
  }

  TEST_CASE("trailers are bounded by the head limit") {
    Options opts;
    opts.maxHead = 128;
    std::string in =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n";
    for (int i = 0; i < 20; ++i) in += "X-Trailer-" + std::to_string(i) + ": value\r\n";
    in += "\r\n";
    Outcome o = parseRequest(in, opts);
    INFO(describe(o));
    CHECK(o.events == std::vector<Status>{Status::Error});
    CHECK(o.error == ParseError::HeadTooLarge);
    REQUIRE(o.msgs.size() == 1);
    CHECK_FALSE(o.msgs[0].complete);
  }

  TEST_CASE("pipelined requests in one buffer") {
    const std::string a = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string b = "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    const std::string c = "GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    const std::string in = a + b + c;

    Outcome o = parseRequest(in);
    INFO(describe(o));
    REQUIRE(o.msgs.size() == 3);
    CHECK(o.events == std::vector<Status>{Status::Complete, Status::Complete, Status::Complete});
    CHECK(o.msgs[0].target == "/one");
    CHECK(o.msgs[1].target == "/two");
    CHECK(o.msgs[1].body == "abc");
    CHECK(o.msgs[2].target == "/three");
    CHECK_FALSE(o.msgs[2].keepAlive);
    for (const Msg& m : o.msgs) CHECK(m.complete);

    // Consumed offsets, driven by hand.
    Sink sink;
    Http1Parser p;
    p.init(Kind::Request, &sink, 8192);
    auto r = p.execute(in.data(), in.size());
    CHECK(r.status == Status::Complete);
    CHECK(r.consumed == a.size());
    CHECK(p.request().target == "/one");
    CHECK(sink.completes == 1);
    // Until next() the parser stays paused and the rest is not parsed.
    p.next();
    CHECK_FALSE(p.messageStarted());
    r = p.execute(in.data() + a.size(), in.size() - a.size());
    CHECK(r.status == Status::Complete);
    CHECK(r.consumed == b.size());
    CHECK(p.request().target == "/two");
    CHECK(sink.body == "abc");
    p.next();
    r = p.execute(in.data() + a.size() + b.size(), c.size());
    CHECK(r.status == Status::Complete);
    CHECK(r.consumed == c.size());
    CHECK(p.request().target == "/three");
    CHECK(sink.completes == 3);
    CHECK(sink.heads == 3);
  }

  TEST_CASE("pause at head, then resume") {
    const std::string head = "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n";
    const std::string in = head + "body";
    Options opts;
    opts.pauseAtHead = true;
    Outcome o = parseRequest(in, opts);
    INFO(describe(o));
    CHECK(o.events == std::vector<Status>{Status::HeadComplete, Status::Complete});
    REQUIRE(o.msgs.size() == 1);
    CHECK(o.msgs[0].body == "body");
    CHECK(o.msgs[0].complete);

    Sink sink;
    sink.headRc = Http1Parser::Handler::kPause;
    Http1Parser p;
    p.init(Kind::Request, &sink, 8192);
    auto r = p.execute(in.data(), in.size());
    CHECK(r.status == Status::HeadComplete);
    CHECK(r.consumed == head.size());
    CHECK(p.headComplete());
    CHECK(sink.body.empty());
    CHECK(sink.completes == 0);
    p.resume();
    r = p.execute(in.data() + r.consumed, in.size() - r.consumed);
    CHECK(r.status == Status::Complete);
    CHECK(r.consumed == 4);
    CHECK(sink.body == "body");
    CHECK(sink.completes == 1);

    // A request without a body pauses at the head too; it completes on the next execute() after
    // resume(), even a zero-byte one.
    Outcome g =
        parseRequest("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", opts);
    INFO(describe(g));
    CHECK(g.events == std::vector<Status>{Status::HeadComplete, Status::Complete,
                                          Status::HeadComplete, Status::Complete});
    CHECK(g.msgs.size() == 2);
  }

  TEST_CASE("head-size limit") {
    Options opts;
    opts.maxHead = 64;
    SUBCASE("a long header value") {
      std::string in = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + std::string(100, 'v') + "\r\n\r\n";
      Outcome o = parseRequest(in, opts);
      INFO(describe(o));
      CHECK(o.events == std::vector<Status>{Status::Error});
      CHECK(o.error == ParseError::HeadTooLarge);
      CHECK(o.msgs.empty());
    }
    SUBCASE("a long target") {
      std::string in = "GET /" + std::string(100, 'p') + " HTTP/1.1\r\nHost: a\r\n\r\n";
      Outcome o = parseRequest(in, opts);
      CHECK(o.error == ParseError::HeadTooLarge);
      CHECK(o.msgs.empty());
    }
    SUBCASE("many short headers") {
      std::string in = "GET / HTTP/1.1\r\nHost: a\r\n";
      for (int i = 0; i < 10; ++i) in += "X" + std::to_string(i) + ": y\r\n";
      in += "\r\n";
      Outcome o = parseRequest(in, opts);
      CHECK(o.error == ParseError::HeadTooLarge);
      CHECK(o.msgs.empty());
    }
    SUBCASE("a head under the limit passes") {
      Outcome o = parseRequest("GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n", opts);
      CHECK(o.error == ParseError::None);
      REQUIRE(o.msgs.size() == 1);
      CHECK(o.msgs[0].complete);
    }
    SUBCASE("the limit is per message, not per connection") {
      std::string one = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\r\n\r\n";  // < 64
      std::string in;
      for (int i = 0; i < 5; ++i) in += one;
      Outcome o = parseRequest(in, opts);
      INFO(describe(o));
      CHECK(o.error == ParseError::None);
      CHECK(o.msgs.size() == 5);
    }
    SUBCASE("response head") {
      std::string in = "HTTP/1.1 200 OK\r\nX-Long: " + std::string(100, 'v') + "\r\n\r\n";
      Outcome o = parseResponse(in, opts);
      CHECK(o.error == ParseError::HeadTooLarge);
      CHECK(o.msgs.empty());
    }
  }

  TEST_CASE("head padded with whitespace that produces no callback") {
    Options opts;
    opts.maxHead = 64;
    SUBCASE("still open (value whitespace before the value)") {
      // llhttp skips OWS before a value without a callback; the head is still incomplete.
      std::string in = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad:" + std::string(200, ' ');
      Outcome o = parseRequest(in, opts);
      INFO(describe(o));
      CHECK(o.events == std::vector<Status>{Status::Error});
      CHECK(o.error == ParseError::HeadTooLarge);
      CHECK(o.msgs.empty());
    }
  }

  TEST_CASE("head padded with whitespace, completed in the same buffer") {
    // The same padding, but the head ends in the same buffer: the head is still 200+ bytes.
    Options opts;
    opts.maxHead = 64;
    std::string in = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad:" + std::string(200, ' ') + "\r\n\r\n";
    Outcome o = parseRequest(in, opts);
    INFO(describe(o));
    CHECK(o.events == std::vector<Status>{Status::Error});
    CHECK(o.error == ParseError::HeadTooLarge);
    CHECK(o.msgs.empty());
  }

  TEST_CASE("too many headers") {
    Options opts;
    opts.maxHeaders = 3;
    Outcome ok = parseRequest("GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 2\r\n\r\n", opts);
    CHECK(ok.error == ParseError::None);
    REQUIRE(ok.msgs.size() == 1);
    CHECK(ok.msgs[0].headers.size() == 3);

    Outcome o = parseRequest("GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 2\r\nD: 3\r\n\r\n", opts);
    INFO(describe(o));
    CHECK(o.events == std::vector<Status>{Status::Error});
    CHECK(o.error == ParseError::TooManyHeaders);
    CHECK(o.msgs.empty());
  }

  TEST_CASE("smuggling: Content-Length together with Transfer-Encoding") {
    expectRefused(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\n",
        ParseError::Malformed);
    expectRefused(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        "0\r\n\r\n",
        ParseError::Malformed);
  }

  TEST_CASE("smuggling: two different Content-Lengths") {
    expectRefused(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ParseError::Malformed);
    expectRefused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
                  ParseError::Malformed);
  }

  TEST_CASE("smuggling: Transfer-Encoding gzip alone") {
    expectRefused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nxxxx",
                  ParseError::Malformed);
    expectRefused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxxxx",
                  ParseError::Malformed);
  }

  // FINDING: fails. An empty Transfer-Encoding has no final coding "chunked", yet llhttp leaves
  // F_TRANSFER_ENCODING unset for it, so the request is taken as bodyless and the bytes after
  // the head ("0\r\n\r\n") become the next request. The spec refuses a Transfer-Encoding
  // whose final coding is not chunked with a 400.
  TEST_CASE("smuggling: empty Transfer-Encoding") {
    expectRefused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n0\r\n\r\n",
                  ParseError::Malformed);
    expectRefused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:   \r\n\r\n0\r\n\r\n",
                  ParseError::Malformed);
  }

  TEST_CASE("smuggling: Transfer-Encoding gzip, chunked is unsupported") {
    expectRefused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                  ParseError::Unsupported);
    expectRefused(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
        "\r\n0\r\n\r\n",
        ParseError::Unsupported);
  }

  TEST_CASE("smuggling: Transfer-Encoding chunked, chunked") {
    expectRefused(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        ParseError::Malformed);
    expectRefused(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
        "chunked\r\n\r\n0\r\n\r\n",
        ParseError::Malformed);
  }

  TEST_CASE("smuggling: Transfer-Encoding on HTTP/1.0") {
    expectRefused("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                  ParseError::Malformed);
  }

  TEST_CASE("smuggling: whitespace before the colon") {
    expectRefused("GET / HTTP/1.1\r\nHost : a\r\n\r\n", ParseError::Malformed);
    expectRefused("GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 0\r\n\r\n",
                  ParseError::Malformed);
    expectRefused(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n"
        "abc",
        ParseError::Malformed);
  }

  TEST_CASE("smuggling: invalid chunk size") {
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    expectRefused(head + "zz\r\nhello\r\n0\r\n\r\n", ParseError::Malformed, true);
    expectRefused(head + "0x5\r\nhello\r\n0\r\n\r\n", ParseError::Malformed, true);
    expectRefused(head + "-5\r\nhello\r\n0\r\n\r\n", ParseError::Malformed, true);
    expectRefused(head + "fffffffffffffffff1\r\nhello\r\n0\r\n\r\n", ParseError::Malformed, true);
    expectRefused(head + "5\r\nhelloXX0\r\n\r\n", ParseError::Malformed, true);  // no CRLF
  }

  TEST_CASE("smuggling: bare LF line endings") {
    expectRefused("GET / HTTP/1.1\nHost: a\n\n", ParseError::Malformed);
    expectRefused("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", ParseError::Malformed);
    expectRefused("GET / HTTP/1.1\r\nHost: a\r\n\n", ParseError::Malformed);
    expectRefused(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        ParseError::Malformed, true);
  }

  TEST_CASE("smuggling: obs-fold") {
    expectRefused("GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
                  ParseError::Malformed);
    expectRefused("GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n\ttwo\r\n\r\n",
                  ParseError::Malformed);
    expectRefused(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n0\r\n\r\n",
        ParseError::Malformed);
  }

  TEST_CASE("smuggling: missing Host on HTTP/1.1, two Host headers") {
    expectRefused("GET / HTTP/1.1\r\n\r\n", ParseError::Malformed);
    expectRefused("GET / HTTP/1.1\r\nX: y\r\n\r\n", ParseError::Malformed);
    expectRefused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", ParseError::Malformed);
    expectRefused("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", ParseError::Malformed);
    // HTTP/1.0 may omit Host.
    Outcome o = parseRequest("GET / HTTP/1.0\r\n\r\n");
    REQUIRE(o.msgs.size() == 1);
    CHECK(o.msgs[0].complete);
  }

  TEST_CASE("after an error nothing more is parsed") {
    Sink sink;
    Http1Parser p;
    p.init(Kind::Request, &sink, 8192);
    const std::string bad =
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    auto r = p.execute(bad.data(), bad.size());
    CHECK(r.status == Status::Error);
    CHECK(p.error() == ParseError::Malformed);
    const std::string good = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    r = p.execute(good.data(), good.size());
    CHECK(r.status == Status::Error);
    CHECK(r.consumed == 0);
    p.next();
    r = p.execute(good.data(), good.size());
    CHECK(r.status == Status::Error);
    CHECK(p.finish() == Status::Error);
    CHECK(sink.heads == 0);
    CHECK(sink.completes == 0);
  }

  TEST_CASE("a handler abort is an Aborted error") {
    Sink sink;
    sink.headRc = Http1Parser::Handler::kAbort;
    Http1Parser p;
    p.init(Kind::Request, &sink, 8192);
    const std::string in = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    auto r = p.execute(in.data(), in.size());
    CHECK(r.status == Status::Error);
    CHECK(p.error() == ParseError::Aborted);
  }

  TEST_CASE("response with Content-Length and keep-alive") {
    Outcome o = parseResponse(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
    INFO(describe(o));
    REQUIRE(o.msgs.size() == 1);
    CHECK(o.events == std::vector<Status>{Status::Complete});
    const Msg& m = o.msgs[0];
    CHECK(m.status == 200);
    CHECK(m.reason == "OK");
    CHECK(m.keepAlive);
    CHECK(m.body == "hello");
    CHECK(m.complete);
    CHECK(m.headers == Headers{{"Content-Type", "text/plain"}, {"Content-Length", "5"}});

    Outcome c =
        parseResponse("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    REQUIRE(c.msgs.size() == 1);
    CHECK(c.msgs[0].status == 404);
    CHECK(c.msgs[0].reason == "Not Found");
    CHECK_FALSE(c.msgs[0].keepAlive);
    CHECK(c.msgs[0].complete);
  }

  TEST_CASE("response with a chunked body") {
    Outcome o = parseResponse(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n"
        "Trailer-A: 1\r\n\r\n");
    INFO(describe(o));
    REQUIRE(o.msgs.size() == 1);
    CHECK(o.msgs[0].chunked);
    CHECK(o.msgs[0].body == "abcde");
    CHECK(o.msgs[0].complete);
  }

  TEST_CASE("response with a transfer coding other than chunked is refused") {
    Outcome o = parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxxxx");
    CHECK(o.events == std::vector<Status>{Status::Error});
    CHECK(o.error == ParseError::Malformed);
  }

  TEST_CASE("204 and 304 have no body") {
    Outcome o = parseResponse(
        "HTTP/1.1 204 No Content\r\n\r\n"
        "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 10\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    INFO(describe(o));
    REQUIRE(o.msgs.size() == 3);
    CHECK(o.events == std::vector<Status>{Status::Complete, Status::Complete, Status::Complete});
    CHECK(o.msgs[0].status == 204);
    CHECK(o.msgs[0].body.empty());
    CHECK(o.msgs[1].status == 304);
    CHECK(o.msgs[1].body.empty());
    CHECK(o.msgs[1].contentLength == 10);
    CHECK(o.msgs[2].status == 200);
    CHECK(o.msgs[2].body == "ok");
    for (const Msg& m : o.msgs) CHECK(m.complete);
  }

  TEST_CASE("setExpectNoBody for a HEAD request") {
    Options opts;
    opts.expectNoBody = true;
    const std::string in =
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    Outcome o = parseResponse(in, opts);
    INFO(describe(o));
    REQUIRE(o.msgs.size() == 2);
    CHECK(o.events == std::vector<Status>{Status::Complete, Status::Complete});
    CHECK(o.msgs[0].hasContentLength);
    CHECK(o.msgs[0].contentLength == 5);
    CHECK(o.msgs[0].body.empty());
    CHECK(o.msgs[0].complete);
    CHECK(o.msgs[1].chunked);
    CHECK(o.msgs[1].body.empty());
    CHECK(o.msgs[1].complete);

    // next() clears the flag: the following response has a body again.
    Sink sink;
    Http1Parser p;
    p.init(Kind::Response, &sink, 8192);
    p.setExpectNoBody(true);
    const std::string first = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    auto r = p.execute(first.data(), first.size());
    CHECK(r.status == Status::Complete);
    CHECK(r.consumed == first.size());
    p.next();
    const std::string second = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    r = p.execute(second.data(), second.size());
    CHECK(r.status == Status::Complete);
    CHECK(r.consumed == second.size());
    CHECK(sink.body == "hello");
  }

  TEST_CASE("close-delimited response body is completed by finish()") {
    Options opts;
    opts.callFinish = true;
    Outcome o =
        parseResponse("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello world", opts);
    INFO(describe(o));
    CHECK(o.events.empty());
    CHECK(o.finishStatus == Status::Complete);
    CHECK(o.error == ParseError::None);
    REQUIRE(o.msgs.size() == 1);
    CHECK(o.msgs[0].body == "hello world");
    CHECK(o.msgs[0].complete);
    CHECK_FALSE(o.msgs[0].keepAlive);
    CHECK_FALSE(o.msgs[0].hasContentLength);
    CHECK_FALSE(o.msgs[0].chunked);

    // An HTTP/1.0 response without a length is close-delimited too.
    Outcome o10 = parseResponse("HTTP/1.0 200 OK\r\n\r\nabc", opts);
    CHECK(o10.finishStatus == Status::Complete);
    REQUIRE(o10.msgs.size() == 1);
    CHECK(o10.msgs[0].body == "abc");
  }

  TEST_CASE("truncated response body: finish() is an Error") {
    Options opts;
    opts.callFinish = true;
    SUBCASE("Content-Length") {
      Outcome o = parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", opts);
      INFO(describe(o));
      CHECK(o.finishStatus == Status::Error);
      CHECK(o.error != ParseError::None);
      REQUIRE(o.msgs.size() == 1);
      CHECK_FALSE(o.msgs[0].complete);
    }
    SUBCASE("chunked") {
      Outcome o = parseResponse(
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", opts);
      CHECK(o.finishStatus == Status::Error);
      REQUIRE(o.msgs.size() == 1);
      CHECK_FALSE(o.msgs[0].complete);
    }
    SUBCASE("inside the head") {
      Outcome o = parseResponse("HTTP/1.1 200 OK\r\nContent-Le", opts);
      CHECK(o.finishStatus == Status::Error);
      CHECK(o.msgs.empty());
    }
    SUBCASE("nothing in progress") {
      Outcome o = parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", opts);
      CHECK(o.events == std::vector<Status>{Status::Complete});
      CHECK(o.finishStatus == Status::NeedMore);
      CHECK(o.error == ParseError::None);
    }
  }

  TEST_CASE("1xx followed by the final response") {
    Outcome o = parseResponse(
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi");
    INFO(describe(o));
    REQUIRE(o.msgs.size() == 3);
    CHECK(o.events == std::vector<Status>{Status::Complete, Status::Complete, Status::Complete});
    CHECK(o.msgs[0].status == 100);
    CHECK(o.msgs[0].reason == "Continue");
    CHECK(o.msgs[0].body.empty());
    CHECK(o.msgs[1].status == 103);
    CHECK(headerValue(o.msgs[1], "link") == "</s.css>; rel=preload");
    CHECK(o.msgs[2].status == 201);
    CHECK(o.msgs[2].body == "hi");
    for (const Msg& m : o.msgs) CHECK(m.complete);
  }
}
