// libFuzzer target: JWT parsing and verification (middleware/jwt), with an HS256 secret and
// an RSA and an EC P-256 key made at start-up. Two kinds of input (the first byte says which):
//   - raw: the bytes are the token. Nothing the fuzzer can write is signed with keys it never
//     saw, so verify() must never say Ok (an "alg":"none", algorithm-confusion or parser
//     confusion bug would);
//   - signed: the harness builds header.payload from the bytes (a fixed
//     {"alg":"HS256"|"ES256"} header, or one from the input), signs it correctly, and
//     verifies: with the fixed header the answer must never be BadSignature or BadAlgorithm
//     (the claims parser and the ES256 r||s conversion see arbitrary, authentic payloads).
// base64url encoding must round-trip on every input.
// Build: scripts/sanitize.sh --build-only (or cmake -DSLUICE_FUZZ=ON with clang++)
// Run:   mkdir -p /tmp/f; build-san/jwt_fuzz -max_total_time=60 /tmp/f \
//          tests/fuzz/corpus-jwt   (new inputs go to /tmp/f; the seeds are only read)
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "middleware/jwt.h"
#include "middleware/jwt_config.h"

using namespace sluice::middleware;

namespace {

constexpr std::string_view kSecret = "fuzz-secret-never-seen-by-the-fuzzer";
constexpr int64_t kNow = 1800000000;

EVP_PKEY* gEc = nullptr;
std::unique_ptr<JwtVerifier> gHs, gRs, gEs;

// Writes `key`'s public half as PEM to a temporary file; returns its path.
std::string writePublicKey(EVP_PKEY* key) {
  char path[] = "/tmp/sluice-jwt-fuzz-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) abort();
  FILE* f = fdopen(fd, "w");
  if (f == nullptr || PEM_write_PUBKEY(f, key) != 1) abort();
  fclose(f);
  return path;
}

std::unique_ptr<JwtVerifier> verifier(std::vector<std::string> algs, const std::string& key,
                                      bool claims) {
  JwtSettings s;
  s.algorithms = std::move(algs);
  s.secret = std::string(kSecret);
  s.publicKey = key;
  if (claims) {
    s.issuer = "https://issuer.example";
    s.audience = "api";
  }
  std::string err;
  auto v = JwtVerifier::create(s, err);
  if (!v) abort();
  return v;
}

std::string hs256(std::string_view input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), kSecret.data(), int(kSecret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

// ES256 as JWS wants it: r||s, 32 bytes each (OpenSSL signs in DER).
std::string es256(std::string_view input) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  size_t derLen = 0;
  if (EVP_DigestSignInit(md, nullptr, EVP_sha256(), nullptr, gEc) != 1 ||
      EVP_DigestSign(md, nullptr, &derLen, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1)
    abort();
  std::string der(derLen, '\0');
  if (EVP_DigestSign(md, reinterpret_cast<unsigned char*>(der.data()), &derLen,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
    abort();
  EVP_MD_CTX_free(md);
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, long(derLen));
  if (sig == nullptr) abort();
  std::string raw(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  ECDSA_SIG_free(sig);
  return raw;
}

void checkBase64(std::string_view bytes) {
  std::string back;
  if (!base64UrlDecode(base64UrlEncode(bytes), back) || back != bytes) abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  EVP_PKEY* rsa = EVP_RSA_gen(2048);
  gEc = EVP_EC_gen("P-256");
  if (rsa == nullptr || gEc == nullptr) abort();
  const std::string rsaPath = writePublicKey(rsa);
  const std::string ecPath = writePublicKey(gEc);
  gHs = verifier({"HS256"}, "", false);
  gRs = verifier({"RS256", "HS256"}, rsaPath, true);
  gEs = verifier({"ES256", "HS256"}, ecPath, true);
  ::unlink(rsaPath.c_str());
  ::unlink(ecPath.c_str());
  EVP_PKEY_free(rsa);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  checkBase64(in);
  Claims claims;

  if ((mode & 1) == 0) {  // raw token
    for (const auto* v : {gHs.get(), gRs.get(), gEs.get()})
      if (v->verify(in, kNow, claims) == JwtResult::Ok) abort();  // a forgery passed
    return 0;
  }

  // Signed: HS256 or ES256; the header fixed, or the first data[1] bytes of the rest.
  const bool ec = (mode & 2) != 0;
  const bool fixedHeader = (mode & 4) == 0;
  std::string header, payload;
  if (fixedHeader) {
    header = ec ? R"({"alg":"ES256","typ":"JWT"})" : R"({"alg":"HS256","typ":"JWT"})";
    payload = std::string(in);
  } else {
    const size_t n = std::min<size_t>(uint8_t(in[0]), in.size() - 1);
    header = std::string(in.substr(1, n));
    payload = std::string(in.substr(1 + n));
  }
  std::string token = base64UrlEncode(header) + "." + base64UrlEncode(payload);
  token += "." + base64UrlEncode(ec ? es256(token) : hs256(token));
  const JwtVerifier& v = ec ? *gEs : ((mode & 8) ? *gRs : *gHs);
  const JwtResult r = v.verify(token, kNow, claims);
  if (fixedHeader && (r == JwtResult::BadSignature || r == JwtResult::BadAlgorithm))
    abort();  // an authentic token with an allowed algorithm must get past the signature
  if (r == JwtResult::Ok && &v != gHs.get() && claims.count("iss") == 0) abort();
  return 0;
}
