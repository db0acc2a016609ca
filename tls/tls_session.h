// TlsSession: one SSL object driven entirely in memory, for both downstream (server) and
// upstream (client) connections. Ciphertext comes in through feed() from the socket's read
// callback and goes out through pendingOut(), which the connection's OutQueue writes to the
// socket; plaintext comes out of feed() through a callback and goes in through write(). The
// BIO is our own: it reads straight from the caller's buffer (no intermediate copy) and
// appends records to one per-session string that is emptied on every flush.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <string>

namespace sluice::tls {

class TlsSession {
 public:
  enum class Result { Ok, Closed, Error };

  TlsSession(SSL_CTX* ctx, bool server);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Client side: SNI and (when verifying) the name the certificate must carry.
  void setServerName(const std::string& name, bool verifyName);
  // Client side: produce the ClientHello (into pendingOut()).
  Result startHandshake();

  // Processes ciphertext. Every plaintext piece is passed to onPlain(const char*, size_t) while
  // it sits in `plainBuf` (overwritten by the next piece). Stops early when onPlain returns
  // false. Handshake records to send are left in pendingOut().
  template <class F>
  Result feed(const char* data, size_t len, char* plainBuf, size_t plainSize, F&& onPlain);

  // Encrypts plaintext into pendingOut(). False on a fatal error.
  bool write(const char* data, size_t len);

  std::string& pendingOut() { return out_; }
  // Gives back the output buffer's memory when it is empty (an idle keep-alive connection
  // keeps only the SSL object; OpenSSL frees its record buffers, SSL_MODE_RELEASE_BUFFERS).
  void trim();
  // Queues close_notify (once). Also keeps the session resumable from the server cache:
  // OpenSSL drops sessions of connections freed without having sent it.
  void shutdown();

  bool handshakeDone() const { return handshakeDone_; }
  // True once after the handshake completed (for metrics and logs).
  bool takeHandshakeEvent() {
    bool e = handshakeEvent_;
    handshakeEvent_ = false;
    return e;
  }
  const char* version() const { return SSL_get_version(ssl_); }
  bool resumed() const { return SSL_session_reused(ssl_) == 1; }
  SSL* ssl() { return ssl_; }
  // After Error: short reason for metrics ("http_request", "wrong_version_number", ...).
  const std::string& errorReason() const { return errorReason_; }

 private:
  friend struct SessionBio;
  Result handshakeStep();
  Result fail();

  SSL* ssl_ = nullptr;
  const char* in_ = nullptr;
  size_t inLen_ = 0;
  std::string out_;
  std::string errorReason_;
  bool handshakeDone_ = false;
  bool handshakeEvent_ = false;
};

template <class F>
TlsSession::Result TlsSession::feed(const char* data, size_t len, char* plainBuf, size_t plainSize,
                                    F&& onPlain) {
  in_ = data;
  inLen_ = len;
  Result r = Result::Ok;
  if (!handshakeDone_) {
    r = handshakeStep();
    if (r != Result::Ok || !handshakeDone_) {
      in_ = nullptr;
      inLen_ = 0;
      return r;
    }
  }
  for (;;) {
    size_t got = 0;
    if (SSL_read_ex(ssl_, plainBuf, plainSize, &got) == 1) {
      if (!onPlain(static_cast<const char*>(plainBuf), got)) break;
      continue;
    }
    int e = SSL_get_error(ssl_, 0);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    r = e == SSL_ERROR_ZERO_RETURN ? Result::Closed : fail();
    break;
  }
  in_ = nullptr;
  inLen_ = 0;
  return r;
}

}  // namespace sluice::tls
