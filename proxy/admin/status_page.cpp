// The status page, assembled from the embedded HTML, CSS and JavaScript.
#include "proxy/admin/status_page.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "proxy/admin/page_assets.h"

namespace sluice::admin {

namespace {

// Replaces the first `placeholder` at or after `from`; returns where the inserted text ends.
size_t replace(std::string& s, size_t from, std::string_view placeholder, std::string_view with) {
  const size_t at = s.find(placeholder, from);
  if (at == std::string::npos) return from;
  s.replace(at, placeholder.size(), with);
  return at + with.size();
}

StatusPage build(bool tokenRequired) {
  StatusPage p;
  p.html = std::string(assets::kStatusHtml);
  // In the order they appear, each searched after the text inserted before it, so nothing
  // inside the style can be taken for a later placeholder.
  size_t at = replace(p.html, 0, "{{STYLE}}", assets::kStatusCss);
  at = replace(p.html, at, "{{AUTH}}", tokenRequired ? "token" : "none");
  replace(p.html, at, "{{SCRIPT}}", assets::kStatusJs);
  p.csp = "default-src 'none'; script-src " + cspHash(assets::kStatusJs) + "; style-src " +
          cspHash(assets::kStatusCss) +
          "; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
          "frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";
  return p;
}

}  // namespace

std::string cspHash(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  unsigned char b64[4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(b64, digest, SHA256_DIGEST_LENGTH);
  return "'sha256-" + std::string(reinterpret_cast<const char*>(b64), size_t(n)) + "'";
}

const StatusPage& statusPage(bool tokenRequired) {
  static const StatusPage open = build(false);
  static const StatusPage guarded = build(true);
  return tokenRequired ? guarded : open;
}

}  // namespace sluice::admin
