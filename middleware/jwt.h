// JWT identity: verifies "Authorization: Bearer <JWT>" (compact JWS) with OpenSSL 3.
//   HS256 (HMAC-SHA256 with `secret`), RS256 (RSASSA-PKCS1-v1_5 SHA-256 with an RSA
//   public_key), ES256 (ECDSA P-256 SHA-256, raw r||s signature, with an EC public_key).
// The token's `alg` must be one of the configured algorithms AND match the key it is checked
// with: HS256 only ever uses `secret` (never the public key's bytes, which is the classic
// algorithm-confusion attack), RS256 only an RSA key, ES256 only an EC P-256 key. "none" is
// never accepted, nor a header with "crit". exp / nbf are checked with 30 s of leeway, iss
// and aud (a string or an array of strings) when configured.
// Verified top-level string and number claims land in RequestContext::attributes under "jwt" (numbers as
// written), so a later rate_limit can key on "jwt:sub".
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "middleware/filter.h"

namespace sluice::middleware {

struct JwtSettings;  // middleware/jwt_config.h

enum class PublicKeyKind { None, Rsa, EcP256, Other };

// Reads a PEM public key ("BEGIN PUBLIC KEY", or a certificate) and tells its kind. False with
// a message in `err` when the file cannot be read or parsed. Used by parseJwt.
bool inspectPublicKeyFile(const std::string& path, PublicKeyKind& kind, std::string& err);

// RFC 4648 §5 without padding (padding is tolerated when decoding).
bool base64UrlDecode(std::string_view in, std::string& out);
std::string base64UrlEncode(std::string_view in);

using Claims = std::map<std::string, std::string, std::less<>>;

enum class JwtResult {
  Ok,
  Malformed,     // not three base64url parts of JSON objects
  BadAlgorithm,  // alg not allowed, "none", or no key for it
  BadSignature,
  Expired,
  NotYetValid,
  BadIssuer,
  BadAudience,
};

class JwtVerifier {
 public:
  static constexpr int64_t kLeewaySeconds = 30;

  // Loads the public key (if any); nullptr with `err` when it cannot.
  static std::unique_ptr<JwtVerifier> create(const JwtSettings& cfg, std::string& err);
  ~JwtVerifier();
  JwtVerifier(const JwtVerifier&) = delete;
  JwtVerifier& operator=(const JwtVerifier&) = delete;

  // Verifies `token` at `nowSeconds` (Unix time). On Ok, `claims` receives the top-level
  // string and number claims (it is not touched otherwise).
  JwtResult verify(std::string_view token, int64_t nowSeconds, Claims& claims) const;

 private:
  JwtVerifier() = default;
  bool hs256_ = false, rs256_ = false, es256_ = false;
  std::string secret_;
  std::string issuer_, audience_;
  EVP_PKEY* key_ = nullptr;
  PublicKeyKind keyKind_ = PublicKeyKind::None;
};

// [middleware.NAME] type = "jwt": 401 `unauthorized` (with WWW-Authenticate: Bearer) when the
// token is missing (required = true) or invalid (always).
class JwtFactory final : public FilterFactory {
 public:
  // nullptr with `err` when the key cannot be loaded.
  static std::shared_ptr<const JwtFactory> create(const std::string& name, const JwtSettings& cfg,
                                                  std::string& err);
  Filter* create(FilterArena& arena, FilterCallbacks& callbacks) const override;
  std::string_view name() const override { return name_; }

  const JwtVerifier& verifier() const { return *verifier_; }
  bool required() const { return required_; }

 private:
  JwtFactory() = default;
  std::string name_;
  bool required_ = true;
  std::unique_ptr<JwtVerifier> verifier_;
};

}  // namespace sluice::middleware
