// SSL_CTX construction: certificates, SNI, ALPN, versions, ciphers, tickets, OCSP.
#include "tls/tls_context.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>

#include "tls/session_store.h"

namespace sluice::tls {

namespace {

// TLS 1.2 suites: forward-secret AEAD only (no CBC, RC4, 3DES); TLS 1.3 uses OpenSSL's defaults.
constexpr const char* kCiphers12 =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

std::string opensslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// Process-wide session-ticket keys: the current key encrypts, the previous ones still decrypt,
// so tickets survive key rotation, reloads and the choice of worker.
class TicketKeys {
 public:
  static TicketKeys& instance() {
    static TicketKeys k;
    return k;
  }
  struct Key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
  };
  // enc: fills `out` with the current key. dec: finds the key named `name`; returns 1 if it is
  // current, 2 if it is older (the ticket should be renewed), 0 if unknown.
  int get(bool enc, const unsigned char* name, Key& out) {
    std::lock_guard<std::mutex> lock(mu_);
    auto now = std::chrono::steady_clock::now();
    if (keys_.empty() || now >= rotateAt_) {
      Key k;
      RAND_bytes(k.name, sizeof k.name);
      RAND_bytes(k.aes, sizeof k.aes);
      RAND_bytes(k.hmac, sizeof k.hmac);
      keys_.insert(keys_.begin(), k);
      if (keys_.size() > 3) keys_.resize(3);
      rotateAt_ = now + std::chrono::hours(12);
    }
    if (enc) {
      out = keys_.front();
      return 1;
    }
    for (size_t i = 0; i < keys_.size(); ++i) {
      if (std::memcmp(keys_[i].name, name, 16) == 0) {
        out = keys_[i];
        return i == 0 ? 1 : 2;
      }
    }
    return 0;
  }

 private:
  std::mutex mu_;
  std::vector<Key> keys_;
  std::chrono::steady_clock::time_point rotateAt_;
};

int onNewSession(SSL*, SSL_SESSION* sess) {
  SessionStore::process().put(sess);
  return 0;  // we did not keep a reference
}

SSL_SESSION* onGetSession(SSL*, const unsigned char* id, int len, int* copy) {
  *copy = 0;  // the returned session is OpenSSL's to free
  return SessionStore::process().get(id, size_t(len));
}

void onRemoveSession(SSL_CTX*, SSL_SESSION* sess) {
  SessionStore::process().remove(sess);
}

int ticketCallback(SSL*, unsigned char keyName[16], unsigned char* iv, EVP_CIPHER_CTX* ctx,
                   EVP_MAC_CTX* hctx, int enc) {
  TicketKeys::Key k;
  int rc = TicketKeys::instance().get(enc != 0, keyName, k);
  if (rc == 0) return 0;
  OSSL_PARAM params[2] = {
      OSSL_PARAM_construct_utf8_string("digest", const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end()};
  if (enc) {
    std::memcpy(keyName, k.name, 16);
    if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) <= 0) return -1;
    if (!EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), nullptr, k.aes, iv)) return -1;
  } else {
    if (!EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), nullptr, k.aes, iv)) return -1;
  }
  if (!EVP_MAC_CTX_set_params(hctx, params)) return -1;
  if (!EVP_MAC_init(hctx, k.hmac, sizeof k.hmac, params)) return -1;
  return rc;
}

bool readFile(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  out.assign(std::istreambuf_iterator<char>(f), {});
  return true;
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = char(c + 32);
  return s;
}

std::vector<std::string> certNames(X509* x) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS) continue;
      const unsigned char* p = ASN1_STRING_get0_data(gn->d.dNSName);
      names.push_back(lower(std::string(reinterpret_cast<const char*>(p),
                                        size_t(ASN1_STRING_length(gn->d.dNSName)))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) > 0)
      names.push_back(lower(cn));
  }
  return names;
}

bool nameMatches(const std::string& pattern, const std::string& host) {
  if (pattern == host) return true;
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    // "*.example.com" covers exactly one more label: "a.example.com", not "a.b.example.com".
    std::string_view suffix(pattern.data() + 1, pattern.size() - 1);
    if (host.size() <= suffix.size()) return false;
    if (host.compare(host.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
    return host.find('.') == host.size() - suffix.size();
  }
  return false;
}

bool loadCertAndKey(SSL_CTX* ctx, const std::string& cert, const std::string& key,
                    std::string& err) {
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    err = "cannot load certificate " + cert + ": " + opensslError();
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    err = "cannot load private key " + key + ": " + opensslError();
    return false;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    err = "private key " + key + " does not match certificate " + cert;
    ERR_clear_error();
    return false;
  }
  return true;
}

}  // namespace

bool checkCertificatePair(const std::string& certFile, const std::string& keyFile,
                          std::string& err) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    err = opensslError();
    return false;
  }
  return loadCertAndKey(ctx.get(), certFile, keyFile, err);
}

std::string lastErrorReason() {
  unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e == 0) return "other";
  const char* r = ERR_reason_error_string(e);
  if (!r) return "other";
  std::string s;
  for (const char* p = r; *p; ++p) s.push_back(*p == ' ' ? '_' : char(std::tolower(*p)));
  return s;
}

ServerTlsContext::~ServerTlsContext() = default;

std::shared_ptr<ServerTlsContext> ServerTlsContext::build(const config::ListenerTls& cfg,
                                                          std::string& err) {
  auto tc = std::make_shared<ServerTlsContext>();
  tc->hsts_ = cfg.hsts;
  for (const auto& p : cfg.alpn) {
    tc->alpnWire_.push_back(char(p.size()));
    tc->alpnWire_.append(p);
  }
  for (const auto& c : cfg.certificates) {
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) {
      err = opensslError();
      return nullptr;
    }
    SSL_CTX* x = ctx.get();
    SSL_CTX_set_min_proto_version(x, cfg.minVersion == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(x, kCiphers12);
    SSL_CTX_set_options(
        x, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    // Idle connections give their record buffers back; a proxy keeps many of them.
    SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!loadCertAndKey(x, c.cert, c.key, err)) return nullptr;
    static const unsigned char kSidCtx[] = "sluice";
    SSL_CTX_set_session_id_context(x, kSidCtx, sizeof kSidCtx - 1);
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    // The lifetime of new sessions, cached or in tickets (also the TLS 1.3 ticket_lifetime).
    SSL_CTX_set_timeout(
        x, long(std::chrono::duration_cast<std::chrono::seconds>(cfg.sessionTimeout).count()));
    SSL_CTX_sess_set_new_cb(x, onNewSession);
    SSL_CTX_sess_set_get_cb(x, onGetSession);
    SSL_CTX_sess_set_remove_cb(x, onRemoveSession);
    if (cfg.sessionTickets) {
      SSL_CTX_set_tlsext_ticket_key_evp_cb(x, ticketCallback);
    } else {
      // No stateless tickets. TLS 1.3 still gets OpenSSL's stateful tickets (a reference into
      // the session cache, as nginx and HAProxy send): resumption keeps working, and the
      // client gets a server flight right after the handshake, so a client without
      // TCP_NODELAY does not wait a delayed ACK (~40 ms) before its first request goes out.
      SSL_CTX_set_options(x, SSL_OP_NO_TICKET);
    }
    SSL_CTX_set_alpn_select_cb(x, onAlpn, tc.get());
    SSL_CTX_set_tlsext_servername_callback(x, onServerName);
    SSL_CTX_set_tlsext_servername_arg(x, tc.get());
    Cert cert;
    cert.names = certNames(SSL_CTX_get0_certificate(x));
    if (!c.ocsp.empty()) {
      if (!readFile(c.ocsp, cert.ocsp) || cert.ocsp.empty()) {
        err = "cannot read OCSP response " + c.ocsp;
        return nullptr;
      }
      SSL_CTX_set_tlsext_status_cb(x, onStatus);
      SSL_CTX_set_tlsext_status_arg(x, tc.get());
    }
    cert.ctx = std::move(ctx);
    tc->certs_.push_back(std::move(cert));
  }
  if (tc->certs_.empty()) {
    err = "no certificates";
    return nullptr;
  }
  return tc;
}

SSL_CTX* ServerTlsContext::pick(const char* serverName) const {
  if (!serverName) return nullptr;
  std::string host = lower(serverName);
  for (const auto& c : certs_)
    for (const auto& n : c.names)
      if (n == host) return c.ctx.get();
  for (const auto& c : certs_)
    for (const auto& n : c.names)
      if (nameMatches(n, host)) return c.ctx.get();
  return nullptr;
}

int ServerTlsContext::onServerName(SSL* ssl, int*, void* arg) {
  auto* self = static_cast<ServerTlsContext*>(arg);
  SSL_CTX* ctx = self->pick(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
  // Unknown or absent name: stay on the default certificate (like nginx's default_server).
  if (ctx && ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
  return SSL_TLSEXT_ERR_OK;
}

int ServerTlsContext::onAlpn(SSL*, const unsigned char** out, unsigned char* outlen,
                             const unsigned char* in, unsigned int inlen, void* arg) {
  auto* self = static_cast<ServerTlsContext*>(arg);
  unsigned char* o = nullptr;
  if (SSL_select_next_proto(
          &o, outlen, reinterpret_cast<const unsigned char*>(self->alpnWire_.data()),
          unsigned(self->alpnWire_.size()), in, inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = o;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;  // no common protocol: go on without ALPN
}

int ServerTlsContext::onStatus(SSL* ssl, void* arg) {
  auto* self = static_cast<ServerTlsContext*>(arg);
  SSL_CTX* cur = SSL_get_SSL_CTX(ssl);
  for (const auto& c : self->certs_) {
    if (c.ctx.get() != cur || c.ocsp.empty()) continue;
    auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(c.ocsp.size()));
    if (!copy) return SSL_TLSEXT_ERR_NOACK;
    std::copy(c.ocsp.begin(), c.ocsp.end(), copy);  // DER bytes, not a C string
    SSL_set_tlsext_status_ocsp_resp(ssl, copy, long(c.ocsp.size()));
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

std::shared_ptr<ClientTlsContext> ClientTlsContext::build(const config::PoolConfig& cfg,
                                                          std::string& err) {
  auto tc = std::make_shared<ClientTlsContext>();
  tc->ctx_.reset(SSL_CTX_new(TLS_client_method()));
  SSL_CTX* x = tc->ctx_.get();
  if (!x) {
    err = opensslError();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION);
  SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
  tc->verify_ = cfg.tlsVerify;
  if (cfg.tlsVerify) {
    SSL_CTX_set_verify(x, SSL_VERIFY_PEER, nullptr);
    int ok = cfg.tlsCa.empty() ? SSL_CTX_set_default_verify_paths(x)
                               : SSL_CTX_load_verify_locations(x, cfg.tlsCa.c_str(), nullptr);
    if (ok != 1) {
      err = "cannot load CA " + (cfg.tlsCa.empty() ? std::string("store") : cfg.tlsCa) + ": " +
            opensslError();
      return nullptr;
    }
  }
  static const unsigned char kAlpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(x, kAlpn, sizeof kAlpn - 1);
  return tc;
}

}  // namespace sluice::tls
