// The status page (GET / on the admin listener): one self-contained HTML document whose inline
// style and script (proxy/admin/page/, compiled in) are allowed by their SHA-256 in a strict
// Content-Security-Policy: no 'unsafe-inline', no other origin, no form submission, no
// framing, Trusted Types for every DOM sink.
#pragma once

#include <string>
#include <string_view>

namespace sluice::admin {

struct StatusPage {
  std::string html;
  std::string csp;  // the Content-Security-Policy header value
};

// Built once per variant. `tokenRequired` is written into the page (body data-auth) so that
// it asks for the admin token before its first call instead of after a 401.
const StatusPage& statusPage(bool tokenRequired);

// "'sha256-BASE64'": the CSP source expression that allows an inline block with this text.
std::string cspHash(std::string_view text);

}  // namespace sluice::admin
