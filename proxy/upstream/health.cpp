// Active health checks (see health.h).
#include "proxy/upstream/health.h"

#include <random>
#include <string>

#include "proxy/http/http1_parser.h"
#include "tls/tls_session.h"

namespace sluice::upstream {

struct HealthChecker::Probe {
  HealthChecker* owner = nullptr;
  BackendPtr backend;
  config::HealthCheckConfig cfg;
  bool tls = false;
  tls::ClientTlsContextPtr tlsCtx;  // the pool's: checks verify like requests do
  std::string serverName;
  uv_timer_t timer{};
  Attempt* current = nullptr;
  uint32_t okRun = 0, failRun = 0;
  bool first = true;
  bool removed = false;
  bool timerClosed = false;

  void schedule(bool soon);
  void start();
  void result(bool ok, const std::string& why);
  void maybeDelete() {
    if (removed && timerClosed && !current) delete this;
  }
};

struct HealthChecker::Attempt final : private http::Http1Parser::Handler {
  Probe* probe = nullptr;
  uv_tcp_t tcp{};
  uv_connect_t conn{};
  uv_write_t wr{};
  uv_timer_t timer{};
  http::Http1Parser parser;
  std::string request;
  char buf[4096];
  char plain[16 * 1024];
  std::unique_ptr<tls::TlsSession> session;
  bool requestSent = false;
  int closing = 0;
  bool done = false;

  // Writes `bytes` (a copy lives in the request until the write finishes).
  void send(std::string bytes) {
    struct Req {
      uv_write_t w;
      std::string data;
      Attempt* self;
    };
    auto* r = new Req{{}, std::move(bytes), this};
    r->w.data = r;
    uv_buf_t b = uv_buf_init(r->data.data(), unsigned(r->data.size()));
    int rc = uv_write(&r->w, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1, [](uv_write_t* w, int st) {
      auto* req = static_cast<Req*>(w->data);
      Attempt* self = req->self;
      delete req;
      if (st < 0 && st != UV_ECANCELED && !self->done)
        self->finish(false, std::string("write: ") + uv_strerror(st));
    });
    if (rc < 0) {
      delete r;
      finish(false, std::string("write: ") + uv_strerror(rc));
    }
  }
  void sendTlsPending() {
    std::string& out = session->pendingOut();
    if (out.empty()) return;
    std::string copy;
    copy.swap(out);
    send(std::move(copy));
  }
  void onResponseBytes(const char* data, size_t n) {
    auto r = parser.execute(data, n);
    if (r.status == http::Http1Parser::Status::Error)
      finish(false, "invalid response");
    else if (r.status != http::Http1Parser::Status::NeedMore)
      onHead();
  }

  void begin(uv_loop_t* loop) {
    const Backend& b = *probe->backend;
    uv_tcp_init(loop, &tcp);
    uv_timer_init(loop, &timer);
    tcp.data = timer.data = conn.data = wr.data = this;
    parser.init(http::Http1Parser::Kind::Response, this, 16 * 1024);
    std::string hostHeader = b.host;
    if (hostHeader.find(':') != std::string::npos) hostHeader = "[" + hostHeader + "]";
    uint16_t port = ntohs(b.addr.ss_family == AF_INET6
                              ? reinterpret_cast<const sockaddr_in6*>(&b.addr)->sin6_port
                              : reinterpret_cast<const sockaddr_in*>(&b.addr)->sin_port);
    request = "GET " + probe->cfg.path + " HTTP/1.1\r\nHost: " + hostHeader + ":" +
              std::to_string(port) +
              "\r\nUser-Agent: sluice-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
    uv_timer_start(
        &timer, [](uv_timer_t* t) { static_cast<Attempt*>(t->data)->finish(false, "timeout"); },
        uint64_t(probe->cfg.timeout.count()), 0);
    int rc = uv_tcp_connect(&conn, &tcp, reinterpret_cast<const sockaddr*>(&b.addr),
                            [](uv_connect_t* req, int status) {
                              auto* self = static_cast<Attempt*>(req->data);
                              if (self->done) return;
                              if (status < 0) {
                                self->finish(false, std::string("connect: ") + uv_strerror(status));
                                return;
                              }
                              self->onConnected();
                            });
    if (rc < 0) finish(false, std::string("connect: ") + uv_strerror(rc));
  }

  void onConnected() {
    if (probe->tls && probe->tlsCtx) {
      // Same TLS as the pool's requests (verification, SNI): a backend whose certificate would
      // fail requests fails its checks too.
      session = std::make_unique<tls::TlsSession>(probe->tlsCtx->ctx(), false);
      session->setServerName(probe->serverName, probe->tlsCtx->verify());
      if (session->startHandshake() != tls::TlsSession::Result::Ok) {
        finish(false, "tls: " + session->errorReason());
        return;
      }
      sendTlsPending();
    } else {
      send(request);
      requestSent = true;
    }
    if (done) return;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp),
        [](uv_handle_t* h, size_t, uv_buf_t* out) {
          auto* self = static_cast<Attempt*>(h->data);
          *out = uv_buf_init(self->buf, sizeof self->buf);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
          auto* self = static_cast<Attempt*>(s->data);
          if (self->done || n == 0) return;
          if (n < 0) {
            self->finish(false, n == UV_EOF ? "closed before a response"
                                            : std::string("read: ") + uv_strerror(int(n)));
            return;
          }
          if (!self->session) {
            self->onResponseBytes(b->base, size_t(n));
            return;
          }
          auto r = self->session->feed(b->base, size_t(n), self->plain, sizeof self->plain,
                                       [self](const char* p, size_t len) {
                                         self->onResponseBytes(p, len);
                                         return !self->done;
                                       });
          if (self->done) return;
          if (r == tls::TlsSession::Result::Error) {
            self->finish(false, "tls: " + self->session->errorReason());
            return;
          }
          if (self->session->handshakeDone() && !self->requestSent) {
            self->requestSent = true;
            if (!self->session->write(self->request.data(), self->request.size())) {
              self->finish(false, "tls write");
              return;
            }
          }
          self->sendTlsPending();
          if (r == tls::TlsSession::Result::Closed && !self->done)
            self->finish(false, "closed before a response");
        });
  }

  int onHeadersComplete() override { return kPause; }
  bool onBody(const char*, size_t) override { return true; }
  void onMessageComplete() override {}

  void onHead() {
    int st = parser.response().status;
    const auto& c = probe->cfg;
    if (st >= c.expectStatusLo && st <= c.expectStatusHi)
      finish(true, "status " + std::to_string(st));
    else
      finish(false, "status " + std::to_string(st));
  }

  void finish(bool ok, const std::string& why) {
    if (done) return;
    done = true;
    uv_timer_stop(&timer);
    Probe* p = probe;
    p->current = nullptr;
    closing = 2;
    auto onClosed = [](uv_handle_t* h) {
      auto* self = static_cast<Attempt*>(h->data);
      if (--self->closing == 0) delete self;
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), onClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), onClosed);
    if (p->removed) {
      p->maybeDelete();
      return;
    }
    p->result(ok, why);
  }
};

static uint64_t jitter(uint64_t ms) {
  static std::minstd_rand rng(std::random_device{}());
  uint64_t span = ms / 10;  // +-10%
  if (span == 0) return ms;
  return ms - span + rng() % (2 * span + 1);
}

void HealthChecker::Probe::schedule(bool soon) {
  uint64_t iv = uint64_t(cfg.interval.count());
  uint64_t delay = soon ? jitter(std::min<uint64_t>(iv, 50)) : jitter(iv);
  uv_timer_start(
      &timer, [](uv_timer_t* t) { static_cast<Probe*>(t->data)->start(); }, delay, 0);
}

void HealthChecker::Probe::start() {
  if (removed || current) return;
  current = new Attempt;
  current->probe = this;
  current->begin(owner->loop_);
}

void HealthChecker::Probe::result(bool ok, const std::string& why) {
  Backend& b = *backend;
  bool healthy = b.healthy.load(std::memory_order_relaxed);
  if (ok) {
    failRun = 0;
    ++okRun;
    if (!healthy && (first || okRun >= cfg.healthyThreshold)) {
      b.lastReason = "health check passed (" + why + ")";
      b.healthy.store(true, std::memory_order_relaxed);
    }
  } else {
    okRun = 0;
    ++failRun;
    if (healthy && (first || failRun >= cfg.unhealthyThreshold)) {
      b.lastReason = "health check failed (" + why + ")";
      b.healthy.store(false, std::memory_order_relaxed);
    }
  }
  first = false;
  schedule(false);
}

HealthChecker::HealthChecker(uv_loop_t* loop) : loop_(loop) {}

HealthChecker::~HealthChecker() {
  close();
}

void HealthChecker::sync(const std::vector<std::unique_ptr<Pool>>& pools) {
  if (closed_) return;
  std::map<Backend*, std::pair<BackendPtr, const Pool*>> wanted;
  for (const auto& p : pools)
    for (const auto& b : p->backends) {
      if (p->settings.health.enabled) {
        wanted[b.get()] = {b, p.get()};
      } else if (!probes_.count(b.get()) && !b->healthy.load()) {
        b->lastReason = "health checks disabled";
        b->healthy.store(true);
      }
    }
  for (auto it = probes_.begin(); it != probes_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    Probe* p = it->second;
    // Still in a snapshot but without checks now: back to healthy.
    if (!p->backend->healthy.load()) {
      p->backend->lastReason = "health checks disabled";
      p->backend->healthy.store(true);
    }
    p->removed = true;
    uv_timer_stop(&p->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&p->timer), [](uv_handle_t* h) {
      auto* pr = static_cast<Probe*>(h->data);
      pr->timerClosed = true;
      pr->maybeDelete();
    });
    it = probes_.erase(it);
  }
  for (auto& [raw, entry] : wanted) {
    const Pool* pool = entry.second;
    auto it = probes_.find(raw);
    if (it != probes_.end()) {
      it->second->cfg = pool->settings.health;
      it->second->tls = pool->settings.tls;
      it->second->tlsCtx = pool->tls;
      it->second->serverName =
          pool->settings.tlsServerName.empty() ? entry.first->host : pool->settings.tlsServerName;
      continue;
    }
    auto* p = new Probe;
    p->owner = this;
    p->backend = entry.first;
    p->cfg = pool->settings.health;
    p->tls = pool->settings.tls;
    p->tlsCtx = pool->tls;
    p->serverName =
        pool->settings.tlsServerName.empty() ? entry.first->host : pool->settings.tlsServerName;
    uv_timer_init(loop_, &p->timer);
    p->timer.data = p;
    probes_[raw] = p;
    p->schedule(true);
  }
}

void HealthChecker::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& [_, p] : probes_) {
    p->removed = true;
    uv_timer_stop(&p->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&p->timer), [](uv_handle_t* h) {
      auto* pr = static_cast<Probe*>(h->data);
      pr->timerClosed = true;
      pr->maybeDelete();
    });
    if (p->current) p->current->finish(false, "shutdown");
  }
  probes_.clear();
}

}  // namespace sluice::upstream
