// Head serialization for both directions of the proxy.
#include "proxy/http/rewrite.h"

#include <charconv>

namespace sluice::http {

bool isHopByHop(std::string_view n) { return isHopByHop(classifyHeader(n)); }

// Headers that a Connection header may not strip: they carry framing or routing we handle.
static bool isProtected(Hdr id) {
  return id == Hdr::Host || id == Hdr::ContentLength || id == Hdr::TransferEncoding;
}

// True if header `name` is listed by any Connection header of `h`.
static bool namedByConnection(const HeaderMap& h, std::string_view name) {
  for (size_t i = 0; i < h.size(); ++i) {
    if (h.removedAt(i) || h.idAt(i) != Hdr::Connection) continue;
    if (listContainsToken(h.valueAt(i), name)) return true;
  }
  return false;
}

static void appendHeader(std::string& out, std::string_view n, std::string_view v) {
  out.append(n);
  out.append(": ");
  out.append(v);
  out.append("\r\n");
}

static void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, size_t(r.ptr - buf));
}

void serializeUpstreamRequest(const RequestHead& req, const UpstreamRequestInfo& info,
                              std::string& out) {
  out.append(req.method);
  out.push_back(' ');
  out.append(info.target);
  out.append(" HTTP/1.1\r\n");
  const HeaderMap& h = req.headers;
  const bool connList = h.has(Hdr::Connection);
  bool xffSeen = false;
  for (size_t i = 0; i < h.size(); ++i) {
    if (h.removedAt(i)) continue;
    const Hdr id = h.idAt(i);
    switch (id) {
      case Hdr::XForwardedFor:
        xffSeen = true;
        continue;
      case Hdr::XForwardedProto:
      case Hdr::XForwardedHost:
      case Hdr::XRequestId:
      case Hdr::Traceparent:
        continue;
      case Hdr::Host:
        if (!info.hostOverride.empty()) continue;
        break;
      default:
        if (isHopByHop(id)) continue;
    }
    if (connList && !isProtected(id) && namedByConnection(h, h.nameAt(i))) continue;
    appendHeader(out, h.nameAt(i), h.valueAt(i));
  }
  if (!info.hostOverride.empty()) appendHeader(out, "Host", info.hostOverride);
  // Several X-Forwarded-For lines are one list: join them in order, then add the client.
  out.append("X-Forwarded-For: ");
  if (xffSeen) {
    for (size_t i = 0; i < h.size(); ++i) {
      if (h.removedAt(i) || h.idAt(i) != Hdr::XForwardedFor) continue;
      std::string_view v = trimOws(h.valueAt(i));
      if (v.empty()) continue;
      out.append(v);
      out.append(", ");
    }
  }
  out.append(info.clientIp);
  out.append("\r\n");
  appendHeader(out, "X-Forwarded-Proto", info.proto);
  if (!info.forwardedHost.empty()) appendHeader(out, "X-Forwarded-Host", info.forwardedHost);
  appendHeader(out, "X-Request-Id", info.requestId);
  appendHeader(out, "traceparent", info.traceparent);
  if (req.chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (req.hasContentLength) {
    out.append("Content-Length: ");
    appendUint(out, req.contentLength);
    out.append("\r\n");
  }
  if (info.websocket) out.append("Connection: upgrade\r\nUpgrade: websocket\r\n");
  out.append("\r\n");
}

// The status line and the backend's end-to-end headers (hop-by-hop ones, those its
// Connection names, framing and X-Request-Id left out).
static void appendStatusAndHeaders(const ResponseHead& resp, bool upgrade, std::string& out) {
  out.append("HTTP/1.1 ");
  appendUint(out, uint64_t(resp.status));
  out.push_back(' ');
  if (!resp.reason.empty())
    out.append(resp.reason);
  else
    out.append(reasonPhrase(resp.status));
  out.append("\r\n");
  const HeaderMap& h = resp.headers;
  const bool connList = h.has(Hdr::Connection);
  for (size_t i = 0; i < h.size(); ++i) {
    if (h.removedAt(i)) continue;
    const Hdr id = h.idAt(i);
    if (isHopByHop(id)) {
      if (upgrade && id == Hdr::Upgrade) appendHeader(out, h.nameAt(i), h.valueAt(i));
      continue;
    }
    if (id == Hdr::XRequestId) continue;
    if (connList && !isProtected(id) && namedByConnection(h, h.nameAt(i))) continue;
    appendHeader(out, h.nameAt(i), h.valueAt(i));
  }
}

void serializeInterimResponse(const ResponseHead& resp, std::string& out) {
  appendStatusAndHeaders(resp, false, out);
  out.append("\r\n");
}

void serializeClientResponse(const ResponseHead& resp, const ClientResponseInfo& info,
                             std::string& out) {
  appendStatusAndHeaders(resp, info.upgrade, out);
  appendHeader(out, "X-Request-Id", info.requestId);
  out.append(info.extraHeaders);
  out.append(info.extraHeaders2);
  switch (info.framing) {
    case BodyFraming::ContentLength:
      out.append("Content-Length: ");
      appendUint(out, info.contentLength);
      out.append("\r\n");
      break;
    case BodyFraming::Chunked:
      out.append("Transfer-Encoding: chunked\r\n");
      break;
    case BodyFraming::None:
    case BodyFraming::Close:
      break;
  }
  if (info.upgrade)
    out.append("Connection: upgrade\r\n");
  else if (!info.keepAlive)
    out.append("Connection: close\r\n");
  else if (info.http10Client)
    out.append("Connection: keep-alive\r\n");
  out.append("\r\n");
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

void serializeLocalReply(int status, std::string_view code, std::string_view requestId,
                         bool keepAlive, bool headRequest, std::string& out,
                         std::string_view extraHeaders) {
  // {"error":"<code>","request_id":"<id>"}; both are from fixed alphabets, no escaping needed.
  const size_t bodyLen = 28 + code.size() + requestId.size();
  out.append("HTTP/1.1 ");
  appendUint(out, uint64_t(status));
  out.push_back(' ');
  out.append(reasonPhrase(status));
  out.append("\r\nContent-Type: application/json\r\nContent-Length: ");
  appendUint(out, bodyLen);
  out.append("\r\nX-Request-Id: ");
  out.append(requestId);
  out.append("\r\n");
  out.append(extraHeaders);
  out.append(keepAlive ? "" : "Connection: close\r\n");
  out.append("\r\n");
  if (headRequest) return;
  out.append("{\"error\":\"");
  out.append(code);
  out.append("\",\"request_id\":\"");
  out.append(requestId);
  out.append("\"}");
}

void appendChunkHeader(size_t len, std::string& out) {
  char buf[20];
  auto r = std::to_chars(buf, buf + sizeof buf, len, 16);
  out.append(buf, size_t(r.ptr - buf));
  out.append("\r\n");
}

}  // namespace sluice::http
