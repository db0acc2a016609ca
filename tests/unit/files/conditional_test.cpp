// Unit tests for proxy/files: HTTP-dates, nginx-style ETags, conditional-request evaluation in
// RFC 9110 order, single byte ranges, Accept-Encoding with q-values, the request path as the
// files see it (alias prefix, percent-decoding, refused dot segments and NULs) and MIME types.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "proxy/files/conditional.h"
#include "proxy/files/site.h"

using namespace sluice::files;

TEST_CASE("HTTP-date formatting and the three parsed forms") {
  std::string s;
  appendHttpDate(784111777, s);
  CHECK(s == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777);
  CHECK(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777);
  CHECK(parseHttpDate("Sun Nov  6 08:49:37 1994") == 784111777);
  CHECK(parseHttpDate("") == -1);
  CHECK(parseHttpDate("yesterday") == -1);
  CHECK(parseHttpDate("Sun, 06 Foo 1994 08:49:37 GMT") == -1);
  CHECK(parseHttpDate("Sun, 06 Nov 1994 25:49:37 GMT") == -1);
}

TEST_CASE("ETag in nginx's format") {
  std::string e;
  appendEtag(0x5f5e100, 0x1234, e);
  CHECK(e == "\"5f5e100-1234\"");
}

TEST_CASE("entity-tag lists: strong and weak comparison") {
  CHECK(etagListMatches("\"a\", \"b\"", "\"b\"", false));
  CHECK(etagListMatches("*", "\"b\"", false));
  CHECK_FALSE(etagListMatches("W/\"b\"", "\"b\"", false));
  CHECK(etagListMatches("W/\"b\"", "\"b\"", true));
  CHECK_FALSE(etagListMatches("\"c\"", "\"b\"", true));
  CHECK_FALSE(etagListMatches("", "\"b\"", true));
}

TEST_CASE("conditions in RFC 9110 order, then the range") {
  const std::string etag = "\"x-10\"";
  const std::time_t mtime = 1000000;
  const std::string before = "Sun, 11 Jan 1970 13:46:39 GMT";  // mtime - 1
  const std::string at = "Mon, 12 Jan 1970 13:46:40 GMT";      // mtime
  Conditions c;
  CHECK(evaluate(c, etag, mtime, 16).status == 200);
  c.ifMatch = "\"other\"";
  CHECK(evaluate(c, etag, mtime, 16).status == 412);
  c = {};
  c.ifUnmodifiedSince = before;
  CHECK(evaluate(c, etag, mtime, 16).status == 412);
  c.ifUnmodifiedSince = at;
  CHECK(evaluate(c, etag, mtime, 16).status == 200);
  c = {};
  c.ifNoneMatch = etag;
  c.ifModifiedSince = before;  // ignored: If-None-Match is there
  CHECK(evaluate(c, etag, mtime, 16).status == 304);
  c.ifNoneMatch = "\"other\"";
  CHECK(evaluate(c, etag, mtime, 16).status == 200);
  c = {};
  c.ifModifiedSince = at;
  CHECK(evaluate(c, etag, mtime, 16).status == 304);
  c.ifModifiedSince = before;
  CHECK(evaluate(c, etag, mtime, 16).status == 200);
  c.ifModifiedSince = "garbage";
  CHECK(evaluate(c, etag, mtime, 16).status == 200);
}

TEST_CASE("single byte ranges") {
  auto range = [](const char* r, uint64_t size, const char* ifRange = "") {
    Conditions c;
    c.range = r;
    c.ifRange = ifRange;
    return evaluate(c, "\"e\"", 5, size);
  };
  Decision d = range("bytes=0-9", 100);
  CHECK(d.status == 206);
  CHECK(d.offset == 0);
  CHECK(d.length == 10);
  d = range("bytes=90-", 100);
  CHECK(d.offset == 90);
  CHECK(d.length == 10);
  d = range("bytes=-30", 100);
  CHECK(d.offset == 70);
  CHECK(d.length == 30);
  d = range("bytes=-300", 100);
  CHECK(d.offset == 0);
  CHECK(d.length == 100);
  d = range("bytes=50-500", 100);
  CHECK(d.length == 50);
  CHECK(range("bytes=100-", 100).status == 416);
  CHECK(range("bytes=-0", 100).status == 416);
  CHECK(range("bytes=0-", 0).status == 416);
  // ignored: the whole file
  for (const char* r :
       {"bytes=1-2,4-5", "bytes=5-1", "items=0-1", "bytes=a-b", "bytes=", "bytes=-"}) {
    INFO(r);
    d = range(r, 100);
    CHECK(d.status == 200);
    CHECK(d.length == 100);
  }
  CHECK(range("bytes=0-1", 100, "\"e\"").status == 206);
  CHECK(range("bytes=0-1", 100, "\"f\"").status == 200);
  CHECK(range("bytes=0-1", 100, "W/\"e\"").status == 200);  // If-Range is strong
  CHECK(range("bytes=0-1", 100, "Thu, 01 Jan 1970 00:00:05 GMT").status == 206);
  CHECK(range("bytes=0-1", 100, "Thu, 01 Jan 1970 00:00:04 GMT").status == 200);
}

TEST_CASE("Accept-Encoding") {
  CHECK(acceptsEncoding("gzip, deflate, br", "br"));
  CHECK(acceptsEncoding("gzip, deflate, br", "gzip"));
  CHECK_FALSE(acceptsEncoding("gzip;q=0, br", "gzip"));
  CHECK_FALSE(acceptsEncoding("gzip; q=0.000", "gzip"));
  CHECK(acceptsEncoding("gzip;q=0.001", "gzip"));
  CHECK(acceptsEncoding("x-gzip", "gzip"));
  CHECK(acceptsEncoding("*", "br"));
  CHECK_FALSE(acceptsEncoding("*, br;q=0", "br"));
  CHECK_FALSE(acceptsEncoding("*;q=0", "gzip"));
  CHECK_FALSE(acceptsEncoding("", "gzip"));
  CHECK_FALSE(acceptsEncoding("identity", "gzip"));
  CHECK_FALSE(acceptsEncoding("brotli", "br"));
}

TEST_CASE("the request path below the files") {
  Site root;
  std::string out;
  CHECK(filePath(root, "/a/b%20c.txt", out));
  CHECK(out == "/a/b c.txt");
  CHECK(filePath(root, "/a%2Fb", out));  // an encoded slash is a slash (no escape: see below)
  CHECK(out == "/a/b");
  CHECK_FALSE(filePath(root, "/%2e%2e/x", out));
  CHECK_FALSE(filePath(root, "/a/%2E", out));
  CHECK_FALSE(filePath(root, "/a%2f..%2fb", out));
  CHECK_FALSE(filePath(root, "/a%00b", out));
  CHECK_FALSE(filePath(root, "/a%2", out));
  CHECK_FALSE(filePath(root, "/a%zz", out));
  CHECK(filePath(root, "/..a/b..", out));  // dots inside a name are fine
  Site alias;
  alias.alias = true;
  alias.prefixLength = 8;  // "/static/"
  CHECK(filePath(alias, "/static/app.js", out));
  CHECK(out == "/app.js");
  CHECK(filePath(alias, "/static/", out));
  CHECK(out == "/");
  alias.prefixLength = 7;  // "/static" (no slash): "/staticx" maps below it, not beside it
  CHECK(filePath(alias, "/staticx", out));
  CHECK(out == "/x");
}

TEST_CASE("MIME types from a mime.types file, built-ins as the fallback") {
  const std::string path = "/tmp/sluice-unit-mime.types";
  {
    std::ofstream f(path);
    f << "# comment\ntext/x-first\tfoo FOO2\napplication/x-second foo\n\ntype/without-ext\n";
  }
  auto m = MimeTypes::load(path);
  CHECK(m->forFile("/a/b.foo") == "text/x-first");  // the first mention wins
  CHECK(m->forFile("b.Foo2") == "text/x-first");
  CHECK(m->forFile("x.css") == "text/css");  // built in
  CHECK(m->forFile("x.unknown") == "application/octet-stream");
  CHECK(m->forFile("noext") == "application/octet-stream");
  CHECK(m->forFile("dir.d/noext") == "application/octet-stream");
  CHECK(m->forFile("x.") == "application/octet-stream");
  auto missing = MimeTypes::load("/nonexistent/mime.types");
  CHECK(missing->forFile("a.wasm") == "application/wasm");
  std::remove(path.c_str());
}
