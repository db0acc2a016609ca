#include "middleware/jwt.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include "middleware/jwt_config.h"
#include "proxy/http/message.h"

namespace sluice::middleware {

// ---- keys -----------------------------------------------------------------------------

namespace {

EVP_PKEY* readPublicKey(const std::string& path, std::string& err) {
  BIO* bio = BIO_new_file(path.c_str(), "r");
  if (bio == nullptr) {
    err = "cannot read " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  if (key == nullptr) {
    (void)BIO_reset(bio);
    if (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
      key = X509_get_pubkey(cert);
      X509_free(cert);
    }
  }
  BIO_free(bio);
  if (key == nullptr) {
    err = path + " is not a PEM public key (\"-----BEGIN PUBLIC KEY-----\") or certificate";
  }
  return key;
}

PublicKeyKind kindOf(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "RSA")) return PublicKeyKind::Rsa;
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {0};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &len) == 1 &&
        (std::strcmp(group, "prime256v1") == 0 || std::strcmp(group, "P-256") == 0))
      return PublicKeyKind::EcP256;
  }
  return PublicKeyKind::Other;
}

}  // namespace

bool inspectPublicKeyFile(const std::string& path, PublicKeyKind& kind, std::string& err) {
  EVP_PKEY* key = readPublicKey(path, err);
  if (key == nullptr) return false;
  kind = kindOf(key);
  EVP_PKEY_free(key);
  if (kind == PublicKeyKind::Other) {
    err = path + ": unsupported key type (expected an RSA or an EC P-256 public key)";
    return false;
  }
  return true;
}

// ---- base64url ------------------------------------------------------------------------

bool base64UrlDecode(std::string_view in, std::string& out) {
  out.clear();
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '-') {
      v = 62;
    } else if (c == '_') {
      v = 63;
    } else {
      return false;
    }
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xff));
    }
  }
  return true;
}

std::string base64UrlEncode(std::string_view in) {
  static const char* kAlpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlpha[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlpha[(acc << (6 - bits)) & 63]);
  return out;
}

// ---- a small JSON reader for JOSE headers and claim sets -------------------------------

namespace {

struct JsonValue {
  enum Type { Null, Bool, Number, String, Array, Object } type = Null;
  std::string text;              // String: decoded; Number: as written; Bool: "true"/"false"
  std::vector<JsonValue> items;  // Array (objects' members are skipped)
};

class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}

  // Top-level object -> members (later duplicates win... no: duplicates are rejected).
  bool readObject(std::map<std::string, JsonValue, std::less<>>& out) {
    ws();
    if (!parseObject(&out, 0)) return false;
    ws();
    return i_ == s_.size();
  }

 private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  bool lit(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }
  static void putUtf8(std::string& o, uint32_t cp) {
    if (cp < 0x80) {
      o.push_back(char(cp));
    } else if (cp < 0x800) {
      o.push_back(char(0xC0 | (cp >> 6)));
      o.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      o.push_back(char(0xE0 | (cp >> 12)));
      o.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      o.push_back(char(0x80 | (cp & 0x3F)));
    } else {
      o.push_back(char(0xF0 | (cp >> 18)));
      o.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
      o.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      o.push_back(char(0x80 | (cp & 0x3F)));
    }
  }
  bool hex4(uint32_t& v) {
    if (i_ + 4 > s_.size()) return false;
    v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= uint32_t(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= uint32_t(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= uint32_t(c - 'A' + 10);
      } else {
        return false;
      }
    }
    return true;
  }
  bool parseString(std::string& o) {
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    ++i_;
    o.clear();
    while (i_ < s_.size()) {
      unsigned char c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;
      if (c != '\\') {
        o.push_back(char(c));
        continue;
      }
      if (i_ >= s_.size()) return false;
      char e = s_[i_++];
      switch (e) {
        case '"':
          o.push_back('"');
          break;
        case '\\':
          o.push_back('\\');
          break;
        case '/':
          o.push_back('/');
          break;
        case 'b':
          o.push_back('\b');
          break;
        case 'f':
          o.push_back('\f');
          break;
        case 'n':
          o.push_back('\n');
          break;
        case 'r':
          o.push_back('\r');
          break;
        case 't':
          o.push_back('\t');
          break;
        case 'u': {
          uint32_t cp;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (!lit("\\u") || !hex4(lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          putUtf8(o, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool parseNumber(std::string& o) {
    size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    size_t digits = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    if (i_ == digits) return false;
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      size_t f = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (i_ == f) return false;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      size_t e = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (i_ == e) return false;
    }
    o.assign(s_.substr(start, i_ - start));
    return true;
  }
  bool parseValue(JsonValue& v, int depth) {
    if (depth > 16) return false;
    ws();
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '"') {
      v.type = JsonValue::String;
      return parseString(v.text);
    }
    if (c == '{') {
      v.type = JsonValue::Object;
      return parseObject(nullptr, depth + 1);
    }
    if (c == '[') {
      v.type = JsonValue::Array;
      ++i_;
      ws();
      if (i_ < s_.size() && s_[i_] == ']') {
        ++i_;
        return true;
      }
      for (;;) {
        v.items.emplace_back();
        if (!parseValue(v.items.back(), depth + 1)) return false;
        ws();
        if (i_ >= s_.size()) return false;
        if (s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (s_[i_] == ']') {
          ++i_;
          return true;
        }
        return false;
      }
    }
    if (lit("true")) {
      v.type = JsonValue::Bool;
      v.text = "true";
      return true;
    }
    if (lit("false")) {
      v.type = JsonValue::Bool;
      v.text = "false";
      return true;
    }
    if (lit("null")) {
      v.type = JsonValue::Null;
      return true;
    }
    v.type = JsonValue::Number;
    return parseNumber(v.text);
  }
  bool parseObject(std::map<std::string, JsonValue, std::less<>>* out, int depth) {
    if (i_ >= s_.size() || s_[i_] != '{') return false;
    ++i_;
    ws();
    if (i_ < s_.size() && s_[i_] == '}') {
      ++i_;
      return true;
    }
    std::string key;
    for (;;) {
      ws();
      if (!parseString(key)) return false;
      ws();
      if (!lit(":")) return false;
      JsonValue v;
      if (!parseValue(v, depth)) return false;
      if (out != nullptr && !out->emplace(key, std::move(v)).second) return false;  // duplicate
      ws();
      if (i_ >= s_.size()) return false;
      if (s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (s_[i_] == '}') {
        ++i_;
        return true;
      }
      return false;
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

using JsonObject = std::map<std::string, JsonValue, std::less<>>;

bool decodePart(std::string_view b64, JsonObject& out) {
  std::string json;
  if (!base64UrlDecode(b64, json)) return false;
  return JsonReader(json).readObject(out);
}

bool numericDate(const JsonObject& o, std::string_view name, double& out, bool& present) {
  present = false;
  auto it = o.find(name);
  if (it == o.end()) return true;
  if (it->second.type != JsonValue::Number) return false;
  char* end = nullptr;
  out = std::strtod(it->second.text.c_str(), &end);
  present = true;
  return end != nullptr && *end == '\0' && std::isfinite(out);
}

bool verifyDigestSig(EVP_PKEY* key, std::string_view data, const unsigned char* sig,
                     size_t sigLen) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  if (md == nullptr) return false;
  bool ok = EVP_DigestVerifyInit(md, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(md, sig, sigLen, reinterpret_cast<const unsigned char*>(data.data()),
                             data.size()) == 1;
  EVP_MD_CTX_free(md);
  return ok;
}

// JWS ES256 signatures are r||s (32 bytes each); OpenSSL wants DER.
bool verifyEs256(EVP_PKEY* key, std::string_view data, const std::string& sig) {
  if (sig.size() != 64) return false;
  ECDSA_SIG* es = ECDSA_SIG_new();
  if (es == nullptr) return false;
  const auto* raw = reinterpret_cast<const unsigned char*>(sig.data());
  BIGNUM* r = BN_bin2bn(raw, 32, nullptr);
  BIGNUM* s = BN_bin2bn(raw + 32, 32, nullptr);
  if (r == nullptr || s == nullptr || ECDSA_SIG_set0(es, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return false;
  }
  unsigned char* der = nullptr;
  int derLen = i2d_ECDSA_SIG(es, &der);
  ECDSA_SIG_free(es);
  if (derLen <= 0) return false;
  bool ok = verifyDigestSig(key, data, der, size_t(derLen));
  OPENSSL_free(der);
  return ok;
}

}  // namespace

std::unique_ptr<JwtVerifier> JwtVerifier::create(const JwtSettings& cfg, std::string& err) {
  std::unique_ptr<JwtVerifier> v(new JwtVerifier());
  v->secret_ = cfg.secret;
  v->issuer_ = cfg.issuer;
  v->audience_ = cfg.audience;
  if (!cfg.publicKey.empty()) {
    v->key_ = readPublicKey(cfg.publicKey, err);
    if (v->key_ == nullptr) return nullptr;
    v->keyKind_ = kindOf(v->key_);
  }
  for (const auto& a : cfg.algorithms) {
    if (a == "HS256") v->hs256_ = !v->secret_.empty();
    if (a == "RS256") v->rs256_ = v->keyKind_ == PublicKeyKind::Rsa;
    if (a == "ES256") v->es256_ = v->keyKind_ == PublicKeyKind::EcP256;
  }
  if (!v->hs256_ && !v->rs256_ && !v->es256_) {
    err = "no configured algorithm has a usable key";
    return nullptr;
  }
  return v;
}

JwtVerifier::~JwtVerifier() {
  if (key_ != nullptr) EVP_PKEY_free(key_);
}

JwtResult JwtVerifier::verify(std::string_view token, int64_t now, Claims& claims) const {
  if (token.size() > 16384) return JwtResult::Malformed;
  size_t d1 = token.find('.');
  if (d1 == std::string_view::npos) return JwtResult::Malformed;
  size_t d2 = token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
    return JwtResult::Malformed;
  std::string_view signingInput = token.substr(0, d2);
  JsonObject header, payload;
  if (!decodePart(token.substr(0, d1), header)) return JwtResult::Malformed;
  auto alg = header.find("alg");
  if (alg == header.end() || alg->second.type != JsonValue::String) return JwtResult::Malformed;
  // Critical extensions we do not understand must make the token invalid (RFC 7515 §4.1.11).
  if (header.count("crit") != 0) return JwtResult::BadAlgorithm;
  std::string sig;
  if (!base64UrlDecode(token.substr(d2 + 1), sig)) return JwtResult::Malformed;
  const std::string& a = alg->second.text;
  bool ok;
  if (a == "HS256" && hs256_) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int macLen = 0;
    if (HMAC(EVP_sha256(), secret_.data(), int(secret_.size()),
             reinterpret_cast<const unsigned char*>(signingInput.data()), signingInput.size(), mac,
             &macLen) == nullptr)
      return JwtResult::BadSignature;
    ok = sig.size() == macLen && CRYPTO_memcmp(sig.data(), mac, macLen) == 0;
  } else if (a == "RS256" && rs256_) {
    ok = !sig.empty() &&
         verifyDigestSig(key_, signingInput, reinterpret_cast<const unsigned char*>(sig.data()),
                         sig.size());
  } else if (a == "ES256" && es256_) {
    ok = verifyEs256(key_, signingInput, sig);
  } else {
    return JwtResult::BadAlgorithm;  // includes "none" and anything not configured
  }
  if (!ok) return JwtResult::BadSignature;
  // Only now, with an authentic payload, look at the claims.
  if (!decodePart(token.substr(d1 + 1, d2 - d1 - 1), payload)) return JwtResult::Malformed;
  double exp = 0, nbf = 0;
  bool hasExp = false, hasNbf = false;
  if (!numericDate(payload, "exp", exp, hasExp) || !numericDate(payload, "nbf", nbf, hasNbf))
    return JwtResult::Malformed;
  if (hasExp && double(now) >= exp + double(kLeewaySeconds)) return JwtResult::Expired;
  if (hasNbf && double(now) + double(kLeewaySeconds) < nbf) return JwtResult::NotYetValid;
  if (!issuer_.empty()) {
    auto it = payload.find("iss");
    if (it == payload.end() || it->second.type != JsonValue::String || it->second.text != issuer_)
      return JwtResult::BadIssuer;
  }
  if (!audience_.empty()) {
    auto it = payload.find("aud");
    bool match = false;
    if (it != payload.end()) {
      if (it->second.type == JsonValue::String) {
        match = it->second.text == audience_;
      } else if (it->second.type == JsonValue::Array) {
        for (const auto& v : it->second.items)
          match = match || (v.type == JsonValue::String && v.text == audience_);
      }
    }
    if (!match) return JwtResult::BadAudience;
  }
  claims.clear();
  for (auto& [k, v] : payload) {
    if (v.type == JsonValue::String || v.type == JsonValue::Number) claims.emplace(k, v.text);
  }
  return JwtResult::Ok;
}

// ---- the filter -------------------------------------------------------------------------

namespace {

class JwtFilter final : public Filter {
 public:
  JwtFilter(const JwtFactory& f, FilterCallbacks& cb) : f_(f), cb_(cb) {}

  Status onRequestHeaders(RequestContext& ctx) override {
    std::string_view auth;
    bool found = false;
    if (ctx.request != nullptr) auth = ctx.request->headers.get(http::Hdr::Authorization, &found);
    auth = http::trimOws(auth);
    std::string_view token;
    if (found && auth.size() > 7 && http::iequals(auth.substr(0, 7), "bearer ")) {
      token = http::trimOws(auth.substr(7));
    }
    if (token.empty()) {
      if (!f_.required()) return Status::Continue;
      // The filter may be destroyed inside sendLocalReply: nothing after it touches `this`.
      cb_.sendLocalReply(http::LocalReply(401, "unauthorized").header("WWW-Authenticate", "Bearer"));
      return Status::Stop;
    }
    thread_local Claims claims;
    JwtResult r = f_.verifier().verify(token, int64_t(std::time(nullptr)), claims);
    if (r == JwtResult::Ok) {
      // Published for later filters (rate-limit and sticky keys "jwt:CLAIM").
      for (const auto& [k, v] : claims) ctx.attributes.set("jwt", k, v);
      return Status::Continue;
    }
    cb_.sendLocalReply(http::LocalReply(401, "unauthorized")
                           .header("WWW-Authenticate", "Bearer error=\"invalid_token\""));
    return Status::Stop;
  }

 private:
  const JwtFactory& f_;
  FilterCallbacks& cb_;
};

}  // namespace

std::shared_ptr<const JwtFactory> JwtFactory::create(const std::string& name,
                                                     const JwtSettings& cfg, std::string& err) {
  std::shared_ptr<JwtFactory> f(new JwtFactory());
  f->name_ = name;
  f->required_ = cfg.required;
  f->verifier_ = JwtVerifier::create(cfg, err);
  if (!f->verifier_) return nullptr;
  return f;
}

Filter* JwtFactory::create(FilterArena& arena, FilterCallbacks& callbacks) const {
  return arena.make<JwtFilter>(*this, callbacks);
}

}  // namespace sluice::middleware
