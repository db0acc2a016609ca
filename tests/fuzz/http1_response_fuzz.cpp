// libFuzzer target: a backend's response stream (possibly several responses, 1xx first,
// Content-Length, chunked with extensions and trailers, or close-delimited) through the
// response parser as the upstream connection drives it, and then through the proxy's own
// re-framing for the client (head serializer + chunk encoder, as the HTTP/1 server codec
// writes it). Invariants checked, any violation aborts:
//   - the parse does not depend on how the bytes arrive: fed whole and fed in small pieces
//     (sizes chosen by the input) give the same heads, bodies and outcome;
//   - what the proxy would send the client parses again, completely, as one response with the
//     same status and exactly the same body bytes (no desync, no response splitting).
// Build: scripts/sanitize.sh --build-only (or cmake -DSLUICE_FUZZ=ON with clang++)
// Run:   mkdir -p /tmp/f; build-san/http1_response_fuzz -max_total_time=60 /tmp/f \
//          tests/fuzz/corpus-response   (new inputs go to /tmp/f; the seeds are only read)
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "proxy/http/http1_parser.h"
#include "proxy/http/rewrite.h"

namespace {

using sluice::http::BodyFraming;
using sluice::http::Http1Parser;

struct Message {
  int status = 0;
  bool chunked = false;
  bool hasContentLength = false;
  uint64_t contentLength = 0;
  std::string body;
  bool complete = false;
};

struct Outcome {
  std::vector<Message> messages;
  bool error = false;
  bool upgrade = false;
};

// Mirrors UpstreamConn: interim responses are read and skipped, the final one is the answer.
struct Reader : Http1Parser::Handler {
  Http1Parser parser;
  Outcome out;
  bool headRequest = false;
  int onHeadersComplete() override {
    const auto& h = parser.response();
    Message m;
    m.status = h.status;
    m.chunked = h.chunked;
    m.hasContentLength = h.hasContentLength;
    m.contentLength = h.contentLength;
    out.messages.push_back(std::move(m));
    if (h.status >= 100 && h.status < 200 && h.status != 101) return kNoBody;
    return kBody;
  }
  bool onBody(const char* data, size_t len) override {
    if (out.messages.empty()) abort();  // a body before any head
    out.messages.back().body.append(data, len);
    return true;
  }
  void onMessageComplete() override {
    if (out.messages.empty()) abort();
    out.messages.back().complete = true;
  }

  // Feeds `data` in pieces of the sizes in `cuts` (cycled; 0 = the rest at once). Returns
  // true when a final response completed.
  bool run(const char* data, size_t size, const std::vector<size_t>& cuts) {
    parser.init(Http1Parser::Kind::Response, this, 64 * 1024, 200);
    parser.setExpectNoBody(headRequest);
    size_t off = 0, piece = 0;
    while (off < size) {
      size_t len = size - off;
      if (!cuts.empty() && cuts[piece % cuts.size()] != 0)
        len = std::min(len, cuts[piece % cuts.size()]);
      ++piece;
      const char* cur = data + off;
      while (len > 0) {
        auto r = parser.execute(cur, len);
        if (r.consumed > len) abort();
        cur += r.consumed;
        len -= r.consumed;
        off += r.consumed;
        switch (r.status) {
          case Http1Parser::Status::NeedMore:
          case Http1Parser::Status::HeadComplete:
            if (r.status == Http1Parser::Status::HeadComplete) parser.resume();
            break;
          case Http1Parser::Status::Complete: {
            const int st = parser.response().status;
            if (st >= 100 && st < 200) {
              parser.next();
              parser.setExpectNoBody(false);
              continue;
            }
            return true;
          }
          case Http1Parser::Status::Upgrade:
            out.upgrade = true;
            return true;
          case Http1Parser::Status::Error:
            out.error = true;
            return false;
        }
      }
    }
    const auto st = parser.finish();
    if (st == Http1Parser::Status::Error) out.error = true;
    return st == Http1Parser::Status::Complete;
  }
};

bool same(const Outcome& a, const Outcome& b) {
  if (a.error != b.error || a.upgrade != b.upgrade) return false;
  if (a.messages.size() != b.messages.size()) return false;
  for (size_t i = 0; i < a.messages.size(); ++i) {
    const Message& x = a.messages[i];
    const Message& y = b.messages[i];
    if (x.status != y.status || x.chunked != y.chunked || x.body != y.body ||
        x.complete != y.complete || x.hasContentLength != y.hasContentLength ||
        x.contentLength != y.contentLength)
      return false;
  }
  return true;
}

// What the HTTP/1 server codec sends an HTTP/1.1 client for the final response of `r`.
std::string toClient(Reader& r, const std::string& body) {
  const auto& head = r.parser.response();
  sluice::http::ClientResponseInfo ci;
  ci.requestId = "fuzz-id";
  if (r.headRequest)
    ci.framing = head.hasContentLength && head.status != 204 ? BodyFraming::ContentLength
                                                             : BodyFraming::None;
  else
    ci.framing = head.hasContentLength ? BodyFraming::ContentLength : BodyFraming::Chunked;
  ci.contentLength = head.contentLength;
  std::string out;
  sluice::http::serializeClientResponse(head, ci, out);
  if (r.headRequest) return out;
  if (ci.framing == BodyFraming::Chunked) {
    // encodeData: one chunk per piece the parser handed over (here: 1 KiB pieces).
    for (size_t off = 0; off < body.size(); off += 1024) {
      const size_t n = std::min<size_t>(1024, body.size() - off);
      sluice::http::appendChunkHeader(n, out);
      out.append(body, off, n);
      out.append("\r\n");
    }
    out.append("0\r\n\r\n");
  } else {
    out.append(body);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const char* in = reinterpret_cast<const char*>(data + 1);
  const size_t len = size - 1;

  Reader whole;
  whole.headRequest = (mode & 1) != 0;
  const bool done = whole.run(in, len, {});

  // The same bytes in pieces of 1..8 bytes (the pattern from the mode byte).
  std::vector<size_t> cuts;
  for (int i = 0; i < 4; ++i) cuts.push_back(size_t(((mode >> (1 + i)) & 7) + 1));
  Reader pieces;
  pieces.headRequest = whole.headRequest;
  const bool done2 = pieces.run(in, len, cuts);
  if (done != done2 || !same(whole.out, pieces.out)) abort();

  if (!done || whole.out.upgrade || whole.out.messages.empty()) return 0;
  const Message& final = whole.out.messages.back();
  if (final.status == 101) return 0;  // only an upgrade is forwarded as a 101
  if (!final.complete) abort();       // run() said a final response completed
  if (final.hasContentLength && !whole.headRequest && final.status != 204 && final.status != 304 &&
      final.body.size() != final.contentLength && !final.chunked)
    abort();  // a Content-Length body of another length

  // Re-framed for the client, it parses again to the same status and body.
  const std::string wire = toClient(whole, final.body);
  Reader client;
  client.headRequest = whole.headRequest;
  if (!client.run(wire.data(), wire.size(), {})) abort();
  if (client.out.error || client.out.upgrade || client.out.messages.size() != 1) abort();
  const Message& again = client.out.messages.back();
  if (again.status != final.status) abort();
  if (!whole.headRequest && final.status != 204 && final.status != 304 && again.body != final.body)
    abort();
  return 0;
}
