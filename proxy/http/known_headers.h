// Header names the proxy acts on, classified once when a header is parsed so that rewriting
// and lookups compare a byte instead of case-folding strings for every header.
#pragma once

#include <cstdint>
#include <string_view>

namespace sluice::http {

enum class Hdr : uint8_t {
  Other = 0,
  Host,
  Connection,
  ContentLength,
  TransferEncoding,
  Te,
  Trailer,
  Upgrade,
  KeepAlive,
  ProxyConnection,
  Expect,
  XForwardedFor,
  XForwardedProto,
  XForwardedHost,
  XRequestId,
  Traceparent,
  UserAgent,
  Referer,
  Cookie,
  Authorization,
  Origin,
  Vary,
};

Hdr classifyHeader(std::string_view name);

// Hop-by-hop (RFC 9110 7.6.1) plus the framing headers the proxy regenerates.
inline bool isHopByHop(Hdr h) {
  switch (h) {
    case Hdr::Connection:
    case Hdr::ContentLength:
    case Hdr::TransferEncoding:
    case Hdr::Te:
    case Hdr::Trailer:
    case Hdr::Upgrade:
    case Hdr::KeepAlive:
    case Hdr::ProxyConnection:
    case Hdr::Expect:
      return true;
    default:
      return false;
  }
}

}  // namespace sluice::http
