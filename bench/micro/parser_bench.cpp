// Http1Parser on a typical browser-ish GET (~500 bytes, 10 headers): whole buffer at once,
// and split in two reads (the head straddling a read boundary).
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>

#include "proxy/http/http1_parser.h"

using sluice::http::Http1Parser;

namespace {

const std::string kRequest =
    "GET /api/v1/users/12345/orders?limit=20&offset=40 HTTP/1.1\r\n"
    "Host: app.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36\r\n"
    "Accept: application/json, text/plain, */*\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl\r\n"
    "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n"
    "Referer: https://app.example.com/orders\r\n"
    "X-Request-Id: 4bf92f3577b34da6a3ce929d0e0e4736\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

struct NullHandler : Http1Parser::Handler {
  size_t heads = 0;
  int onHeadersComplete() override {
    ++heads;
    return kBody;
  }
  bool onBody(const char*, size_t) override { return true; }
  void onMessageComplete() override {}
};

void BM_Http1Parser_TypicalGet(benchmark::State& state) {
  NullHandler h;
  Http1Parser p;
  p.init(Http1Parser::Kind::Request, &h, 32 * 1024);
  for (auto _ : state) {
    auto r = p.execute(kRequest.data(), kRequest.size());
    if (r.status != Http1Parser::Status::Complete) {
      state.SkipWithError("parse did not complete");
      break;
    }
    benchmark::DoNotOptimize(p.request().headers.size());
    p.next();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kRequest.size()));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Http1Parser_TypicalGet);

void BM_Http1Parser_TypicalGetSplit(benchmark::State& state) {
  NullHandler h;
  Http1Parser p;
  p.init(Http1Parser::Kind::Request, &h, 32 * 1024);
  const size_t cut = kRequest.size() / 2;
  for (auto _ : state) {
    auto r1 = p.execute(kRequest.data(), cut);
    auto r2 = p.execute(kRequest.data() + cut, kRequest.size() - cut);
    if (r1.status != Http1Parser::Status::NeedMore || r2.status != Http1Parser::Status::Complete) {
      state.SkipWithError("split parse did not complete");
      break;
    }
    benchmark::DoNotOptimize(p.request().headers.size());
    p.next();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Http1Parser_TypicalGetSplit);

// The small-GET benchmark's request as wrk sends it.
void BM_Http1Parser_WrkGet(benchmark::State& state) {
  static const std::string req = "GET /small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
  NullHandler h;
  Http1Parser p;
  p.init(Http1Parser::Kind::Request, &h, 32 * 1024);
  for (auto _ : state) {
    auto r = p.execute(req.data(), req.size());
    if (r.status != Http1Parser::Status::Complete) {
      state.SkipWithError("parse did not complete");
      break;
    }
    p.next();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Http1Parser_WrkGet);

}  // namespace
