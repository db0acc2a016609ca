// libFuzzer target: arbitrary bytes through the request and response parsers, fed whole and
// split at a point chosen by the input, through the proxy's own rewriting of what parsed.
// Build: scripts/sanitize.sh --build-only (or cmake -DSLUICE_FUZZ=ON with clang++)
// Run:   mkdir -p /tmp/f; build-san/http1_parser_fuzz -max_total_time=60 /tmp/f \
//          tests/fuzz/corpus   (new inputs go to /tmp/f; the seeds are only read)
#include <cstddef>
#include <cstdint>
#include <string>

#include "proxy/http/http1_parser.h"
#include "proxy/http/rewrite.h"
#include "proxy/router/route_table.h"

namespace {

using sluice::http::Http1Parser;

struct Sink : Http1Parser::Handler {
  bool pause = false;
  size_t body = 0;
  int onHeadersComplete() override { return pause ? kPause : kBody; }
  bool onBody(const char*, size_t len) override {
    body += len;
    return true;
  }
  void onMessageComplete() override {}
};

void run(Http1Parser::Kind kind, const uint8_t* data, size_t size, size_t split, bool pause) {
  Sink sink;
  sink.pause = pause;
  Http1Parser p;
  p.init(kind, &sink, 4096, 50);
  const char* d = reinterpret_cast<const char*>(data);
  size_t pieces[2] = {split, size - split};
  size_t off = 0;
  for (size_t piece : pieces) {
    const char* cur = d + off;
    size_t len = piece;
    off += piece;
    while (len > 0) {
      auto r = p.execute(cur, len);
      cur += r.consumed;
      len -= r.consumed;
      if (r.status == Http1Parser::Status::Error) return;
      if (r.status == Http1Parser::Status::HeadComplete) {
        if (kind == Http1Parser::Kind::Request) {
          std::string out;
          sluice::http::UpstreamRequestInfo info;
          info.target = p.request().target;
          info.clientIp = "127.0.0.1";
          info.proto = "http";
          info.requestId = "id";
          info.traceparent = "tp";
          sluice::http::serializeUpstreamRequest(p.request(), info, out);
          std::string_view host, path, query;
          sluice::router::splitTarget(p.request().target, host, path, query);
        }
        p.resume();
        continue;
      }
      if (r.status == Http1Parser::Status::Complete || r.status == Http1Parser::Status::Upgrade) {
        if (kind == Http1Parser::Kind::Response) {
          std::string out;
          sluice::http::ClientResponseInfo info;
          info.requestId = "id";
          sluice::http::serializeClientResponse(p.response(), info, out);
        }
        if (r.status == Http1Parser::Status::Upgrade) return;
        p.next();
        continue;
      }
    }
  }
  p.finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  data += 1;
  size -= 1;
  size_t split = size ? (size_t(mode >> 2) * 7919) % (size + 1) : 0;
  run((mode & 1) ? Http1Parser::Kind::Response : Http1Parser::Kind::Request, data, size, split,
      (mode & 2) != 0);
  return 0;
}
