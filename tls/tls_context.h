// TLS contexts built from config on the main thread and shared (read-only) by every worker
// through the snapshot. A ServerTlsContext holds one SSL_CTX per certificate: the first is the
// default, SNI picks another by the names in its certificate (SAN DNS names, exact or
// "*.suffix"). Session tickets use one process-wide, rotating key ring, so a ticket issued by
// any worker — or before a reload — resumes on any other.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "config/schema.h"

namespace sluice::tls {

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

// Loads a certificate chain and its key and checks they match. For config validation (-t).
bool checkCertificatePair(const std::string& certFile, const std::string& keyFile,
                          std::string& err);

class ServerTlsContext {
 public:
  // Builds every SSL_CTX. Returns nullptr with `err` on failure.
  static std::shared_ptr<ServerTlsContext> build(const config::ListenerTls& cfg,
                                                 std::string& err);
  ~ServerTlsContext();
  // The context new connections start with (SNI may switch it).
  SSL_CTX* defaultCtx() const { return certs_.front().ctx.get(); }
  const std::string& hsts() const { return hsts_; }

 private:
  struct Cert {
    SslCtxPtr ctx;
    std::vector<std::string> names;  // lower-case SAN DNS names (and CN when no SAN)
    std::string ocsp;                // DER OCSP response to staple, may be empty
  };
  static int onServerName(SSL* ssl, int* alert, void* arg);
  static int onAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                    const unsigned char* in, unsigned int inlen, void* arg);
  static int onStatus(SSL* ssl, void* arg);
  SSL_CTX* pick(const char* serverName) const;

  std::vector<Cert> certs_;
  std::string alpnWire_;  // ALPN protocols in wire format
  std::string hsts_;
};
using ServerTlsContextPtr = std::shared_ptr<const ServerTlsContext>;

// Client side, for pools with tls = true.
class ClientTlsContext {
 public:
  static std::shared_ptr<ClientTlsContext> build(const config::PoolConfig& cfg, std::string& err);
  SSL_CTX* ctx() const { return ctx_.get(); }
  bool verify() const { return verify_; }

 private:
  SslCtxPtr ctx_;
  bool verify_ = true;
};
using ClientTlsContextPtr = std::shared_ptr<const ClientTlsContext>;

// Names the first OpenSSL error on the thread's queue for metrics ("http_request",
// "wrong_version_number", "no_shared_cipher", "unsupported_protocol", ...) and clears it.
std::string lastErrorReason();

}  // namespace sluice::tls
