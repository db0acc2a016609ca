// Header name classification: a switch on length, then one case-insensitive compare.
#include "proxy/http/known_headers.h"

#include "proxy/http/message.h"

namespace sluice::http {

Hdr classifyHeader(std::string_view n) {
  auto is = [&](std::string_view k) { return iequals(n, k); };
  switch (n.size()) {
    case 2:
      return is("te") ? Hdr::Te : Hdr::Other;
    case 4:
      if (is("host")) return Hdr::Host;
      return is("vary") ? Hdr::Vary : Hdr::Other;
    case 6:
      if (is("expect")) return Hdr::Expect;
      if (is("origin")) return Hdr::Origin;
      return is("cookie") ? Hdr::Cookie : Hdr::Other;
    case 7:
      if (is("upgrade")) return Hdr::Upgrade;
      if (is("trailer")) return Hdr::Trailer;
      return is("referer") ? Hdr::Referer : Hdr::Other;
    case 10:
      if (is("connection")) return Hdr::Connection;
      if (is("keep-alive")) return Hdr::KeepAlive;
      return is("user-agent") ? Hdr::UserAgent : Hdr::Other;
    case 11:
      return is("traceparent") ? Hdr::Traceparent : Hdr::Other;
    case 12:
      return is("x-request-id") ? Hdr::XRequestId : Hdr::Other;
    case 13:
      return is("authorization") ? Hdr::Authorization : Hdr::Other;
    case 14:
      return is("content-length") ? Hdr::ContentLength : Hdr::Other;
    case 15:
      return is("x-forwarded-for") ? Hdr::XForwardedFor : Hdr::Other;
    case 16:
      if (is("x-forwarded-host")) return Hdr::XForwardedHost;
      return is("proxy-connection") ? Hdr::ProxyConnection : Hdr::Other;
    case 17:
      if (is("transfer-encoding")) return Hdr::TransferEncoding;
      return is("x-forwarded-proto") ? Hdr::XForwardedProto : Hdr::Other;
    default:
      return Hdr::Other;
  }
}

}  // namespace sluice::http
