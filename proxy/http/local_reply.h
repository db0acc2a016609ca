// LocalReply: every answer the proxy makes itself — JSON errors, redirects, health bodies, the
// plain-HTTP-on-TLS answer, and whatever a filter asks for (a CORS preflight is a 204 with
// headers and no body) — described once, protocol-neutral. buildLocalReply() turns it into a
// ResponseHead plus body; response filters then see that head like an upstream's, and the
// connection's codec encodes it (framing, X-Request-Id, listener headers, keep-alive).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "proxy/http/message.h"

namespace sluice::http {

struct LocalReply {
  static constexpr size_t kMaxHeaders = 8;
  struct Header {
    std::string_view name, value;
  };

  int status = 0;
  // A JSON error body {"error":"<code>","request_id":"<id>"} (Content-Type application/json).
  std::string_view code;
  // Otherwise this body (may be empty), with `contentType` when not empty.
  std::string_view body;
  std::string_view contentType;
  Header headers[kMaxHeaders];
  size_t headerCount = 0;

  LocalReply() = default;
  LocalReply(int s, std::string_view errorCode) : status(s), code(errorCode) {}
  // Adds a header line (ignored past kMaxHeaders: callers pass a handful at most).
  LocalReply& header(std::string_view name, std::string_view value) {
    if (headerCount < kMaxHeaders) headers[headerCount++] = {name, value};
    return *this;
  }
};

// Fills `head` (status, reason, Content-Type, the reply's headers) and `body`. Both are cleared
// first; their capacity is reused.
void buildLocalReply(const LocalReply& reply, std::string_view requestId, ResponseHead& head,
                     std::string& body);

}  // namespace sluice::http
