// serializeUpstreamRequest for a typical parsed request (10 headers, one hop-by-hop
// Connection header to drop, X-Forwarded-* and traceparent to add), into a reused buffer as
// the proxy does.
#include <benchmark/benchmark.h>

#include <string>

#include "proxy/http/http1_parser.h"
#include "proxy/http/rewrite.h"

using namespace sluice::http;

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
    "X-Forwarded-For: 203.0.113.7\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

struct NullHandler : Http1Parser::Handler {
  int onHeadersComplete() override { return kBody; }
  bool onBody(const char*, size_t) override { return true; }
  void onMessageComplete() override {}
};

void BM_SerializeUpstreamRequest(benchmark::State& state) {
  NullHandler h;
  Http1Parser p;
  p.init(Http1Parser::Kind::Request, &h, 32 * 1024);
  if (p.execute(kRequest.data(), kRequest.size()).status != Http1Parser::Status::Complete) {
    state.SkipWithError("parse failed");
    return;
  }
  const RequestHead& req = p.request();
  UpstreamRequestInfo info;
  info.target = req.target;
  info.clientIp = "198.51.100.23";
  info.proto = "http";
  info.requestId = "4bf92f3577b34da6a3ce929d0e0e4736";
  info.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  std::string out;
  out.reserve(4096);
  for (auto _ : state) {
    out.clear();
    serializeUpstreamRequest(req, info, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(out.size()));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SerializeUpstreamRequest);

void BM_SerializeUpstreamRequest_WrkGet(benchmark::State& state) {
  static const std::string reqText = "GET /small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
  NullHandler h;
  Http1Parser p;
  p.init(Http1Parser::Kind::Request, &h, 32 * 1024);
  if (p.execute(reqText.data(), reqText.size()).status != Http1Parser::Status::Complete) {
    state.SkipWithError("parse failed");
    return;
  }
  const RequestHead& req = p.request();
  UpstreamRequestInfo info;
  info.target = req.target;
  info.clientIp = "127.0.0.1";
  info.proto = "http";
  info.requestId = "4bf92f3577b34da6a3ce929d0e0e4736";
  info.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  std::string out;
  out.reserve(4096);
  for (auto _ : state) {
    out.clear();
    serializeUpstreamRequest(req, info, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SerializeUpstreamRequest_WrkGet);

}  // namespace
