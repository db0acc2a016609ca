// TlsSession and its BIO.
#include "tls/tls_session.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cstring>

#include "tls/tls_context.h"

namespace sluice::tls {

struct SessionBio {
  static int write(BIO* b, const char* data, size_t len, size_t* written) {
    auto* s = static_cast<TlsSession*>(BIO_get_data(b));
    s->out_.append(data, len);
    *written = len;
    return 1;
  }
  static int read(BIO* b, char* data, size_t len, size_t* readBytes) {
    auto* s = static_cast<TlsSession*>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    if (s->inLen_ == 0) {
      BIO_set_retry_read(b);
      *readBytes = 0;
      return 0;
    }
    size_t n = len < s->inLen_ ? len : s->inLen_;
    std::memcpy(data, s->in_, n);
    s->in_ += n;
    s->inLen_ -= n;
    *readBytes = n;
    return 1;
  }
  static long ctrl(BIO*, int cmd, long, void*) {
    switch (cmd) {
      case BIO_CTRL_FLUSH:
        return 1;
      default:
        return 0;
    }
  }
  static int create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }
  static BIO_METHOD* method() {
    static BIO_METHOD* m = [] {
      BIO_METHOD* x = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice");
      BIO_meth_set_write_ex(x, write);
      BIO_meth_set_read_ex(x, read);
      BIO_meth_set_ctrl(x, ctrl);
      BIO_meth_set_create(x, create);
      return x;
    }();
    return m;
  }
};

TlsSession::TlsSession(SSL_CTX* ctx, bool server) {
  ssl_ = SSL_new(ctx);
  BIO* bio = BIO_new(SessionBio::method());
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);
  if (server)
    SSL_set_accept_state(ssl_);
  else
    SSL_set_connect_state(ssl_);
}

TlsSession::~TlsSession() {
  SSL_free(ssl_);
}

void TlsSession::setServerName(const std::string& name, bool verifyName) {
  if (!name.empty()) {
    // SNI only for names, never for IP literals (RFC 6066).
    bool isIp = name.find_first_not_of("0123456789.") == std::string::npos ||
                name.find(':') != std::string::npos;
    if (!isIp) SSL_set_tlsext_host_name(ssl_, name.c_str());
    if (verifyName) {
      if (isIp)
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str());
      else
        SSL_set1_host(ssl_, name.c_str());
    }
  }
}

TlsSession::Result TlsSession::startHandshake() {
  return handshakeStep();
}

TlsSession::Result TlsSession::handshakeStep() {
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    handshakeDone_ = true;
    handshakeEvent_ = true;
    return Result::Ok;
  }
  int e = SSL_get_error(ssl_, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Result::Ok;
  return fail();
}

TlsSession::Result TlsSession::fail() {
  errorReason_ = lastErrorReason();
  if (SSL_get_verify_result(ssl_) != X509_V_OK && !SSL_is_server(ssl_))
    errorReason_ = "certificate_verify_failed";
  return Result::Error;
}

bool TlsSession::write(const char* data, size_t len) {
  while (len > 0) {
    size_t written = 0;
    if (SSL_write_ex(ssl_, data, len, &written) != 1) {
      fail();
      return false;
    }
    data += written;
    len -= written;
  }
  return true;
}

void TlsSession::shutdown() {
  if (!handshakeDone_ || (SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN)) return;
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

void TlsSession::trim() {
  if (out_.empty() && out_.capacity() > 0) std::string().swap(out_);
}

}  // namespace sluice::tls
