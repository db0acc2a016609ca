// JWT verification: HS256 / RS256 / ES256, time claims, iss / aud, and the classic attacks
// (alg none, HS256 signed with the RSA public key). Keys are generated here.
#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <string>

#include "middleware/jwt.h"
#include "middleware/jwt_config.h"

using namespace sluice::middleware;

namespace {

std::string b64(std::string_view s) {
  return base64UrlEncode(s);
}

std::string hs256(const std::string& input, const std::string& secret) {
  unsigned char mac[64];
  unsigned len = 0;
  HMAC(EVP_sha256(), secret.data(), int(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

std::string signWith(EVP_PKEY* key, const std::string& input) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  size_t len = 0;
  REQUIRE(EVP_DigestSignInit(md, nullptr, EVP_sha256(), nullptr, key) == 1);
  REQUIRE(EVP_DigestSign(md, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                         input.size()) == 1);
  std::string sig(len, '\0');
  REQUIRE(EVP_DigestSign(md, reinterpret_cast<unsigned char*>(sig.data()), &len,
                         reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1);
  sig.resize(len);
  EVP_MD_CTX_free(md);
  return sig;
}

// DER ECDSA -> JWS r||s.
std::string derToRaw(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* s = d2i_ECDSA_SIG(nullptr, &p, long(der.size()));
  REQUIRE(s != nullptr);
  unsigned char out[64];
  BN_bn2binpad(ECDSA_SIG_get0_r(s), out, 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(s), out + 32, 32);
  ECDSA_SIG_free(s);
  return std::string(reinterpret_cast<char*>(out), 64);
}

std::string token(const std::string& header, const std::string& payload, const std::string& sig) {
  return b64(header) + "." + b64(payload) + "." + b64(sig);
}

std::string hsToken(const std::string& payload, const std::string& secret,
                    const std::string& alg = "HS256") {
  std::string input = b64("{\"alg\":\"" + alg + "\",\"typ\":\"JWT\"}") + "." + b64(payload);
  return input + "." + b64(hs256(input, secret));
}

std::string pkToken(EVP_PKEY* key, const std::string& alg, const std::string& payload) {
  std::string input = b64("{\"alg\":\"" + alg + "\",\"typ\":\"JWT\"}") + "." + b64(payload);
  std::string sig = signWith(key, input);
  if (alg == "ES256") sig = derToRaw(sig);
  return input + "." + b64(sig);
}

std::string pemOf(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string s(data, size_t(n));
  BIO_free(bio);
  return s;
}

std::string writeTemp(const std::string& content) {
  char path[] = "/tmp/sluice-jwttest-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, content.data(), content.size()) == ssize_t(content.size()));
  close(fd);
  return path;
}

sluice::middleware::JwtSettings cfgWith(std::vector<std::string> algs) {
  sluice::middleware::JwtSettings c;
  c.algorithms = std::move(algs);
  return c;
}

}  // namespace

TEST_CASE("base64url") {
  std::string out;
  CHECK(base64UrlEncode("hello?>") == "aGVsbG8_Pg");
  REQUIRE(base64UrlDecode("aGVsbG8_Pg", out));
  CHECK(out == "hello?>");
  REQUIRE(base64UrlDecode("aGVsbG8_Pg==", out));
  CHECK(out == "hello?>");
  CHECK_FALSE(base64UrlDecode("a+b/", out));
  CHECK_FALSE(base64UrlDecode("abcde", out));
}

TEST_CASE("HS256: valid, expired, not yet valid, wrong signature, iss, aud") {
  auto c = cfgWith({"HS256"});
  c.secret = "s3cret";
  c.issuer = "https://auth";
  c.audience = "api";
  std::string err;
  auto v = JwtVerifier::create(c, err);
  REQUIRE(v);
  const int64_t now = 1'800'000'000;
  Claims claims;
  std::string good = R"({"sub":"user-1","n":42,"iss":"https://auth","aud":["x","api"],"exp":)" +
                     std::to_string(now + 60) + "}";
  CHECK(v->verify(hsToken(good, "s3cret"), now, claims) == JwtResult::Ok);
  CHECK(claims["sub"] == "user-1");
  CHECK(claims["n"] == "42");
  CHECK(claims.count("aud") == 0);  // arrays are not claims strings

  CHECK(v->verify(hsToken(good, "other"), now, claims) == JwtResult::BadSignature);
  // Within the 30 s leeway, then past it.
  CHECK(v->verify(hsToken(good, "s3cret"), now + 60 + 29, claims) == JwtResult::Ok);
  CHECK(v->verify(hsToken(good, "s3cret"), now + 60 + 31, claims) == JwtResult::Expired);
  std::string later =
      R"({"iss":"https://auth","aud":"api","nbf":)" + std::to_string(now + 100) + "}";
  CHECK(v->verify(hsToken(later, "s3cret"), now, claims) == JwtResult::NotYetValid);
  CHECK(v->verify(hsToken(later, "s3cret"), now + 80, claims) == JwtResult::Ok);
  CHECK(v->verify(hsToken(R"({"iss":"https://evil","aud":"api"})", "s3cret"), now, claims) ==
        JwtResult::BadIssuer);
  CHECK(v->verify(hsToken(R"({"iss":"https://auth","aud":"web"})", "s3cret"), now, claims) ==
        JwtResult::BadAudience);
  CHECK(v->verify(hsToken(R"({"iss":"https://auth"})", "s3cret"), now, claims) ==
        JwtResult::BadAudience);
  // A tampered payload with the old signature.
  std::string t = hsToken(good, "s3cret");
  size_t d1 = t.find('.'), d2 = t.rfind('.');
  std::string forged = t.substr(0, d1 + 1) +
                       b64(R"({"sub":"admin","iss":"https://auth","aud":"api"})") + t.substr(d2);
  CHECK(v->verify(forged, now, claims) == JwtResult::BadSignature);
  // Garbage.
  CHECK(v->verify("abc", now, claims) == JwtResult::Malformed);
  CHECK(v->verify("a.b.c.d", now, claims) == JwtResult::Malformed);
  CHECK(v->verify(token("not json", "{}", "x"), now, claims) == JwtResult::Malformed);
}

TEST_CASE("alg none and algorithms not configured are rejected") {
  auto c = cfgWith({"HS256"});
  c.secret = "k";
  std::string err;
  auto v = JwtVerifier::create(c, err);
  REQUIRE(v);
  Claims claims;
  CHECK(v->verify(token(R"({"alg":"none"})", R"({"sub":"x"})", ""), 0, claims) ==
        JwtResult::BadAlgorithm);
  CHECK(v->verify(b64(R"({"alg":"none"})") + "." + b64(R"({"sub":"x"})") + ".", 0, claims) ==
        JwtResult::BadAlgorithm);
  CHECK(v->verify(hsToken("{}", "k", "HS512"), 0, claims) == JwtResult::BadAlgorithm);
  CHECK(v->verify(token(R"({"alg":"HS256","crit":["x"]})", "{}", "x"), 0, claims) ==
        JwtResult::BadAlgorithm);
  CHECK(claims.empty());
}

TEST_CASE("RS256 and ES256, and HS256-with-the-RSA-key confusion") {
  EVP_PKEY* rsa = EVP_RSA_gen(2048);
  EVP_PKEY* ec = EVP_EC_gen("P-256");
  REQUIRE(rsa);
  REQUIRE(ec);
  std::string rsaPem = pemOf(rsa);
  std::string rsaPath = writeTemp(rsaPem), ecPath = writeTemp(pemOf(ec));
  Claims claims;
  std::string err;

  auto rc = cfgWith({"RS256", "HS256"});
  rc.publicKey = rsaPath;
  rc.secret = "real-hmac-secret";
  auto rv = JwtVerifier::create(rc, err);
  REQUIRE(rv);
  CHECK(rv->verify(pkToken(rsa, "RS256", R"({"sub":"r"})"), 0, claims) == JwtResult::Ok);
  CHECK(claims["sub"] == "r");
  // The attack: HS256 "signed" with the public key's PEM as the HMAC secret.
  CHECK(rv->verify(hsToken(R"({"sub":"admin"})", rsaPem), 0, claims) == JwtResult::BadSignature);
  // Signed with another RSA key.
  EVP_PKEY* other = EVP_RSA_gen(2048);
  CHECK(rv->verify(pkToken(other, "RS256", R"({"sub":"r"})"), 0, claims) ==
        JwtResult::BadSignature);
  // ES256 is not configured here.
  CHECK(rv->verify(pkToken(ec, "ES256", "{}"), 0, claims) == JwtResult::BadAlgorithm);

  // RS256 only (no secret): HS256 tokens are refused outright, whatever they are signed with.
  auto ronly = cfgWith({"RS256"});
  ronly.publicKey = rsaPath;
  auto rv2 = JwtVerifier::create(ronly, err);
  REQUIRE(rv2);
  CHECK(rv2->verify(hsToken(R"({"sub":"admin"})", rsaPem), 0, claims) == JwtResult::BadAlgorithm);

  auto ecfg = cfgWith({"ES256", "RS256"});
  ecfg.publicKey = ecPath;
  auto ev = JwtVerifier::create(ecfg, err);
  REQUIRE(ev);
  CHECK(ev->verify(pkToken(ec, "ES256", R"({"sub":"e"})"), 0, claims) == JwtResult::Ok);
  CHECK(claims["sub"] == "e");
  // RS256 listed but the key is EC: never verifies with the wrong key type.
  CHECK(ev->verify(pkToken(rsa, "RS256", "{}"), 0, claims) == JwtResult::BadAlgorithm);
  // A bad ES256 signature (flip a byte).
  std::string t = pkToken(ec, "ES256", R"({"sub":"e"})");
  std::string sig;
  REQUIRE(base64UrlDecode(t.substr(t.rfind('.') + 1), sig));
  sig[10] ^= 1;
  CHECK(ev->verify(t.substr(0, t.rfind('.') + 1) + b64(sig), 0, claims) == JwtResult::BadSignature);

  unlink(rsaPath.c_str());
  unlink(ecPath.c_str());
  EVP_PKEY_free(rsa);
  EVP_PKEY_free(ec);
  EVP_PKEY_free(other);
}
