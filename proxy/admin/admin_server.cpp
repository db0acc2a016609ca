// Admin listener: a small keep-alive HTTP/1.1 server on the main loop.
#include "proxy/admin/admin_server.h"

#include <openssl/crypto.h>
#include <unistd.h>

#include <cstring>

#include "config/units.h"
#include "proxy/admin/health.h"
#include "proxy/admin/release_api.h"
#include "proxy/admin/status_page.h"
#include "proxy/http/http1_parser.h"
#include "proxy/http/rewrite.h"
#include "proxy/net/out_queue.h"
#include "proxy/observe/log.h"
#include "proxy/server.h"

namespace sluice::admin {

class AdminConnection final : private http::Http1Parser::Handler {
 public:
  AdminConnection(uv_loop_t* loop, AdminServer& server) : server_(server) {
    uv_tcp_init(loop, &tcp_);
    tcp_.data = this;
    parser_.init(http::Http1Parser::Kind::Request, this, 16 * 1024);
    out_.bind(reinterpret_cast<uv_stream_t*>(&tcp_), this, onWriteDone);
  }
  // Takes the accepted socket `fd` (closed by the handle from then on, also on failure).
  bool open(int fd) {
    if (uv_tcp_open(&tcp_, fd) != 0) {
      ::close(fd);
      return false;
    }
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc, onRead);
    return true;
  }
  // `headers`: more header lines, each ending in CRLF.
  void respond(int status, std::string_view contentType, std::string_view body,
               std::string_view headers = {}) {
    if (closed_) return;
    std::string& s = out_.beginScratch();
    s.append("HTTP/1.1 ");
    s.append(std::to_string(status));
    s.push_back(' ');
    s.append(http::reasonPhrase(status));
    s.append("\r\nContent-Type: ");
    s.append(contentType);
    s.append("\r\n");
    s.append(headers);
    s.append("Cache-Control: no-store\r\nContent-Length: ");
    s.append(std::to_string(body.size()));
    s.append(keepAlive_ ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n");
    if (!headRequest_) s.append(body);
    out_.endScratch();
    if (out_.flush() < 0) {
      close();
      return;
    }
    busy_ = false;
    if (!keepAlive_) {
      closeAfterWrite_ = true;
      if (out_.queuedBytes() == 0) close();
      return;
    }
    parser_.next();
    std::string rest;
    rest.swap(stash_);
    if (!rest.empty()) feed(rest.data(), rest.size());
    if (!busy_ && !closed_) uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc, onRead);
  }
  void close() {
    if (closed_) return;
    closed_ = true;
    server_.connectionClosed(this);
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_),
             [](uv_handle_t* h) { delete static_cast<AdminConnection*>(h->data); });
  }

 private:
  int onHeadersComplete() override { return kBody; }
  bool onBody(const char* data, size_t len) override {
    bodyBytes_ += len;
    if (bodyBytes_ > 64 * 1024) return false;
    body_.append(data, len);  // small JSON documents (PUT /admin/routes/.../split)
    return true;
  }
  void onMessageComplete() override {}

  void feed(const char* data, size_t len) {
    while (len > 0 && !closed_ && !busy_) {
      auto r = parser_.execute(data, len);
      data += r.consumed;
      len -= r.consumed;
      if (r.status == http::Http1Parser::Status::Error) {
        keepAlive_ = false;
        busy_ = true;
        respond(400, "application/json", "{\"error\":\"bad_request\"}");
        return;
      }
      if (r.status == http::Http1Parser::Status::Complete ||
          r.status == http::Http1Parser::Status::Upgrade) {
        stash_.append(data, len);
        busy_ = true;
        uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
        http::RequestHead& req = parser_.request();
        keepAlive_ = req.keepAlive && r.status != http::Http1Parser::Status::Upgrade;
        headRequest_ = req.method == "HEAD";
        bodyBytes_ = 0;
        AdminRequest ar;
        ar.method = req.method;
        ar.target = req.target;
        ar.authorization = req.headers.get("authorization");
        ar.origin = req.headers.get(http::Hdr::Origin);
        ar.host = req.headers.get(http::Hdr::Host);
        ar.body.swap(body_);
        server_.handle(this, ar);
        return;
      }
    }
  }
  static void onAlloc(uv_handle_t*, size_t, uv_buf_t* buf) {
    static thread_local char b[16 * 1024];
    *buf = uv_buf_init(b, sizeof b);
  }
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    auto* self = static_cast<AdminConnection*>(s->data);
    if (nread < 0) {
      self->close();
      return;
    }
    self->feed(buf->base, size_t(nread));
  }
  static void onWriteDone(void* p, int status) {
    auto* self = static_cast<AdminConnection*>(p);
    if (status < 0 || (self->closeAfterWrite_ && self->out_.queuedBytes() == 0)) self->close();
  }

  AdminServer& server_;
  uv_tcp_t tcp_{};
  http::Http1Parser parser_;
  net::OutQueue out_;
  std::string stash_;
  std::string body_;
  size_t bodyBytes_ = 0;
  bool keepAlive_ = true;
  bool headRequest_ = false;
  bool busy_ = false;
  bool closed_ = false;
  bool closeAfterWrite_ = false;
};

struct AdminServer::Scrape {
  AdminConnection* conn;  // nullptr: a sample for the rate window
  bool sample = false;
  observe::WorkerMetrics merged;
  size_t waiting = 0;
};

AdminServer::AdminServer(uv_loop_t* loop, Server& server) : loop_(loop), server_(server) {
  uv_async_init(loop_, &async_,
                [](uv_async_t* h) { static_cast<AdminServer*>(h->data)->finishScrapes(); });
  async_.data = this;
  uv_timer_init(loop_, &sampleTimer_);
  sampleTimer_.data = this;
}

AdminServer::~AdminServer() = default;

bool AdminServer::listen(const config::HostPort& addr, std::string& err) {
  int fd = net::listenSocket(addr, false, 128, err);
  if (fd >= 0) acceptor_ = net::Acceptor::open(loop_, fd, this, err);
  if (acceptor_ == nullptr) {
    err = "admin: " + err;
    return false;
  }
  addr_ = addr;
  // The rate window's samples: the first one now, so the page has a base to count from.
  uv_timer_start(&sampleTimer_, onSample, 0, window_.intervalMs());
  return true;
}

void AdminServer::onSample(uv_timer_t* t) {
  auto* self = static_cast<AdminServer*>(t->data);
  if (self->sampling_) return;  // the last one is still being merged (a busy worker)
  self->sampling_ = true;
  self->startScrape(nullptr);
}

void AdminServer::close() {
  if (acceptor_ != nullptr) {
    acceptor_->close();
    acceptor_ = nullptr;
  }
  auto conns = conns_;
  for (AdminConnection* c : conns) c->close();
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&async_)))
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&sampleTimer_)))
    uv_close(reinterpret_cast<uv_handle_t*>(&sampleTimer_), nullptr);
}

void AdminServer::onAccepted(int fd, const sockaddr_storage& /*peer*/) {
  auto* c = new AdminConnection(loop_, *this);
  if (!c->open(fd)) {
    c->close();
    return;
  }
  conns_.push_back(c);
}

void AdminServer::onAcceptPaused(int err) {
  const uint64_t now = uv_now(loop_);
  if (pauseLoggedMs_ != 0 && now - pauseLoggedMs_ < 10000) return;
  pauseLoggedMs_ = now;
  observe::logEvent(
      config::LogLevel::Warn, "admin accept paused",
      {{"error", std::strerror(err)}, {"pause_ms", std::to_string(net::Acceptor::kPauseMs)}});
}

void AdminServer::connectionClosed(AdminConnection* c) {
  conns_.erase(std::remove(conns_.begin(), conns_.end(), c), conns_.end());
  for (auto& s : inflight_)
    if (s->conn == c) s->conn = nullptr;
}

static void appendStatusJson(Server& server, std::string& out) {
  const Snapshot& snap = *server.snapshot();
  out.append("{\"version\":\"" SLUICE_VERSION "\",\"generation\":");
  out.append(std::to_string(snap.generation));
  out.append(",\"backend_revision\":");
  out.append(std::to_string(snap.revision));
  out.append(",\"ready\":");
  out.append(snap.ready() ? "true" : "false");
  out.append(",\"workers\":");
  out.append(std::to_string(server.workers().size()));
  out.append(",\"reloads\":{\"success\":");
  out.append(std::to_string(server.reloadsOk()));
  out.append(",\"error\":");
  out.append(std::to_string(server.reloadsError()));
  out.append("},\"last_reload\":");
  const Server::ReloadOutcome& last = server.lastReload();
  if (last.atUnixMs == 0) {
    out.append("null");
  } else {
    out.append("{\"at\":\"");
    observe::appendRfc3339Ms(out, last.atUnixMs);
    out.append(last.ok ? "\",\"result\":\"success\"" : "\",\"result\":\"error\"");
    if (!last.ok) {
      out.append(",\"reason\":\"");
      observe::appendJsonEscaped(out, last.reason);
      out.append("\",\"errors\":[");
      for (size_t i = 0; i < last.errors.size(); ++i) {
        if (i) out.push_back(',');
        out.push_back('"');
        observe::appendJsonEscaped(out, last.errors[i]);
        out.push_back('"');
      }
      out.push_back(']');
    }
    out.push_back('}');
  }
  out.append(",\"listeners\":[");
  for (size_t i = 0; i < snap.listeners.size(); ++i) {
    if (i) out.push_back(',');
    out.append("{\"name\":\"");
    observe::appendJsonEscaped(out, snap.listeners[i].cfg.name);
    out.append("\",\"listen\":\"");
    observe::appendJsonEscaped(out, snap.listeners[i].key);
    out.append("\"}");
  }
  out.append("],\"pools\":");
  appendPoolsJson(snap, out);
  out.append(",\"routes\":[");
  const auto& routes = snap.config.routes;
  for (size_t i = 0; i < routes.size(); ++i) {
    if (i) out.push_back(',');
    out.append("{\"name\":\"");
    observe::appendJsonEscaped(out, routes[i].name);
    out.append("\",\"host\":\"");
    observe::appendJsonEscaped(out, routes[i].host);
    out.append("\",\"path\":\"");
    observe::appendJsonEscaped(out, !routes[i].pathExact.empty()   ? routes[i].pathExact
                                    : !routes[i].pathRegex.empty() ? routes[i].pathRegex
                                                                   : routes[i].path);
    out.append("\",\"exact\":");
    out.append(routes[i].pathExact.empty() ? "false" : "true");
    if (!routes[i].pathRegex.empty()) out.append(",\"regex\":true");
    if (routes[i].ret.enabled) {
      out.append(",\"return\":");
      out.append(std::to_string(routes[i].ret.status));
      out.append("}");
      continue;
    }
    if (routes[i].split.empty()) {
      out.append(",\"pool\":\"");
      observe::appendJsonEscaped(out, routes[i].pool);
      out.append("\"}");
      continue;
    }
    // A split: its pools and weights as in the file (the baseline first).
    out.append(",\"split\":[");
    for (size_t k = 0; k < routes[i].split.size(); ++k) {
      if (k) out.push_back(',');
      out.append("{\"pool\":\"");
      observe::appendJsonEscaped(out, routes[i].split[k].pool);
      out.append("\",\"weight\":");
      out.append(std::to_string(routes[i].split[k].weight));
      out.push_back('}');
    }
    out.append("]");
    // The live weights (admin API), from the running generation's route of that name.
    for (const auto& r : snap.routes.routes())
      if (r.name == routes[i].name && r.split) {
        out.append(",\"live_weights\":");
        appendLiveWeightsJson(*r.split, out);
        out.append(",\"release\":");
        r.split->release->appendStatusJson(out, upstream::monotonicMs());
      }
    out.push_back('}');
  }
  out.append("]}");
}

static std::string percentDecode(std::string_view s);

bool AdminServer::tokenMatches(std::string_view authorization) const {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() != kBearer.size() + token_.size() ||
      authorization.substr(0, kBearer.size()) != kBearer)
    return false;
  // Constant time over the token: no timing oracle on how much of it matched.
  return CRYPTO_memcmp(authorization.data() + kBearer.size(), token_.data(), token_.size()) == 0;
}

bool crossOrigin(std::string_view origin, std::string_view host) {
  if (origin.empty()) return false;
  for (std::string_view scheme : {"http://", "https://"})
    if (origin.size() == scheme.size() + host.size() && origin.substr(0, scheme.size()) == scheme &&
        http::iequals(origin.substr(scheme.size()), host))
      return false;
  return true;
}

bool isLoopback(const config::HostPort& hp) {
  const std::string& h = hp.host;
  return h == "::1" || h == "localhost" || h.rfind("127.", 0) == 0;
}

void AdminServer::handle(AdminConnection* c, const AdminRequest& req) {
  const std::string& method = req.method;
  const std::string& target = req.target;
  const std::string& body = req.body;
  std::string path = target.substr(0, target.find('?'));
  const bool read = method == "GET" || method == "HEAD";
  int status;
  std::string health;
  if (healthResponse(path, *server_.snapshot(), status, health)) {
    c->respond(read ? status : 405, "application/json",
               read ? health : "{\"error\":\"method_not_allowed\"}");
    return;
  }
  if (path == "/metrics") {
    if (!read) {
      c->respond(405, "application/json", "{\"error\":\"method_not_allowed\"}");
      return;
    }
    startScrape(c);
    return;
  }
  if (path == "/") {
    if (!read) {
      c->respond(405, "application/json", "{\"error\":\"method_not_allowed\"}");
      return;
    }
    const StatusPage& page = statusPage(!token_.empty());
    const std::string headers = "Content-Security-Policy: " + page.csp +
                                "\r\nX-Content-Type-Options: nosniff\r\n"
                                "X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n";
    c->respond(200, "text/html; charset=utf-8", page.html, headers);
    return;
  }
  if (path.rfind("/admin/", 0) == 0) {
    if (!token_.empty() && !tokenMatches(req.authorization)) {
      c->respond(401, "application/json", "{\"error\":\"unauthorized\"}");
      return;
    }
    // A page on another site may make a browser send simple POSTs here (no token on a
    // loopback listener): the browser says where the request comes from, refuse it.
    if (!read && crossOrigin(req.origin, req.host)) {
      c->respond(403, "application/json",
                 "{\"error\":\"cross_origin\",\"detail\":\"the Origin of this request is not "
                 "the admin listener itself\"}");
      return;
    }
    // Without a token, only a loopback listener may change anything: a public admin port must
    // not let anyone drain pools or flip releases.
    if (token_.empty() && !read && !isLoopback(addr_)) {
      c->respond(403, "application/json",
                 "{\"error\":\"admin_token_required\",\"detail\":\"this admin listener is not on "
                 "loopback: set admin.token to use the mutating endpoints\"}");
      return;
    }
    // POST /admin/pools/{pool}/backends/{address}/drain | /undrain
    if (path.rfind("/admin/pools/", 0) == 0) {
      handleDrain(c, method, path);
      return;
    }
    // PUT /admin/routes/{route}/split, POST /admin/routes/{route}/promote|rollback|pause|resume
    if (path.rfind("/admin/routes/", 0) == 0) {
      const size_t from = std::strlen("/admin/routes/");
      const size_t slash = path.rfind('/');
      if (slash < from + 1) {
        c->respond(404, "application/json", "{\"error\":\"not_found\"}");
        return;
      }
      const std::string route = percentDecode(std::string_view(path).substr(from, slash - from));
      const std::string_view action = std::string_view(path).substr(slash + 1);
      const std::string_view query =
          target.size() > path.size() ? std::string_view(target).substr(path.size() + 1) : "";
      const bool force = query == "force=1" || query.find("force=1&") == 0 ||
                         query.find("&force=1") != std::string_view::npos;
      std::string out;
      const int st =
          handleRouteAction(*server_.snapshot(), method, route, action, body, force, out);
      if (st == 200) server_.releaseChanged();  // saved before the answer goes out
      c->respond(st, "application/json", out);
      return;
    }
    if (path == "/admin/status") {
      if (!read) {
        c->respond(405, "application/json", "{\"error\":\"method_not_allowed\"}");
        return;
      }
      std::string out;
      appendStatusJson(server_, out);
      c->respond(200, "application/json", out);
      return;
    }
    if (path == "/admin/rates") {
      if (!read) {
        c->respond(405, "application/json", "{\"error\":\"method_not_allowed\"}");
        return;
      }
      std::string out;
      window_.appendJson(out);
      c->respond(200, "application/json", out);
      return;
    }
  }
  c->respond(404, "application/json", "{\"error\":\"not_found\"}");
}

static std::string percentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto hex = [](char ch) -> int {
      if (ch >= '0' && ch <= '9') return ch - '0';
      if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
      if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
      return -1;
    };
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(char(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

void AdminServer::handleDrain(AdminConnection* c, const std::string& method,
                              const std::string& path) {
  // /admin/pools/{pool}/backends/{address}/{drain|undrain}; the address may contain '/'-free
  // IPv6 brackets and ':' (percent-encoded or not).
  std::string_view rest = std::string_view(path).substr(std::strlen("/admin/pools/"));
  size_t slash = rest.find('/');
  std::string_view poolPart = slash == std::string_view::npos ? rest : rest.substr(0, slash);
  std::string_view after = slash == std::string_view::npos ? "" : rest.substr(slash);
  constexpr std::string_view kBackends = "/backends/";
  size_t last = after.rfind('/');
  if (after.rfind(kBackends, 0) != 0 || last == std::string_view::npos || last < kBackends.size()) {
    c->respond(404, "application/json", "{\"error\":\"not_found\"}");
    return;
  }
  std::string_view action = after.substr(last + 1);
  std::string address = percentDecode(after.substr(kBackends.size(), last - kBackends.size()));
  std::string pool = percentDecode(poolPart);
  if (action != "drain" && action != "undrain") {
    c->respond(404, "application/json", "{\"error\":\"not_found\"}");
    return;
  }
  if (method != "POST") {
    c->respond(405, "application/json", "{\"error\":\"method_not_allowed\"}");
    return;
  }
  if (!server_.snapshot()->pool(pool)) {
    c->respond(404, "application/json", "{\"error\":\"no_such_pool\"}");
    return;
  }
  bool drain = action == "drain";
  size_t n = server_.setDraining(pool, address, drain);
  if (n == 0) {
    c->respond(404, "application/json", "{\"error\":\"no_such_backend\"}");
    return;
  }
  observe::logEvent(config::LogLevel::Info, drain ? "backend drained" : "backend undrained",
                    {{"pool", pool}, {"backend", address}, {"matched", std::to_string(n)}});
  std::string body = "{\"pool\":\"";
  observe::appendJsonEscaped(body, pool);
  body.append("\",\"backend\":\"");
  observe::appendJsonEscaped(body, address);
  body.append("\",\"draining\":");
  body.append(drain ? "true" : "false");
  body.append(",\"matched\":");
  body.append(std::to_string(n));
  body.append("}");
  c->respond(200, "application/json", body);
}

void AdminServer::startScrape(AdminConnection* c) {
  auto scrape = std::make_shared<Scrape>();
  scrape->conn = c;
  scrape->sample = c == nullptr;
  inflight_.push_back(scrape);
  auto& workers = server_.workers();
  {
    std::lock_guard<std::mutex> lock(mu_);
    // +1 holds the scrape open until every post() has been attempted below.
    scrape->waiting = workers.size() + 1;
  }
  size_t posted = 0;
  for (auto& w : workers) {
    Worker* wp = w.get();
    bool ok = wp->post([this, scrape, wp]() {
      std::lock_guard<std::mutex> lock(mu_);
      scrape->merged.merge(wp->metrics());
      if (--scrape->waiting == 0) {
        done_.push_back(scrape);
        uv_async_send(&async_);
      }
    });
    if (ok) ++posted;
  }
  std::lock_guard<std::mutex> lock(mu_);
  scrape->waiting -= workers.size() - posted + 1;
  if (scrape->waiting == 0) {
    done_.push_back(scrape);
    uv_async_send(&async_);
  }
}

void AdminServer::finishScrapes() {
  std::vector<std::shared_ptr<Scrape>> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done.swap(done_);
  }
  for (auto& s : done) {
    inflight_.erase(std::remove(inflight_.begin(), inflight_.end(), s), inflight_.end());
    if (s->sample) {
      window_.add(uv_now(loop_), s->merged);
      sampling_ = false;
      continue;
    }
    if (!s->conn) continue;
    observe::ProcessMetrics p;
    const Snapshot& snap = *server_.snapshot();
    p.generation = snap.generation;
    p.reloadsOk = server_.reloadsOk();
    p.reloadsError = server_.reloadsError();
    p.lastReloadOk = server_.lastReload().ok;
    for (const auto& pool : snap.pools)
      for (const auto& b : pool->backends)
        p.backends.push_back({pool->name, b->name,
                              b->resolved && b->usable(upstream::monotonicMs()),
                              b->draining.load(std::memory_order_relaxed),
                              b->stateChanges.load(std::memory_order_relaxed)});
    for (const auto& r : snap.routes.routes())
      if (r.split)
        for (size_t i = 0; i < r.split->arms.size(); ++i)
          p.splitWeights.push_back({r.name, r.split->arms[i].pool->name, r.split->liveWeight(i),
                                    r.split->release->rollbacks(i)});
    for (const auto& r : snap.routes.routes())
      if (r.split && r.split->release->promoteRules().enabled)
        p.releaseSteps.push_back({r.name, r.split->release->state().step});
    if (const tracing::Exporter* tr = server_.tracer()) {
      const tracing::ExportStats st = tr->stats();
      p.tracing = {true, st.exported, st.droppedQueueFull, st.droppedExportFailed, st.exportErrors};
    }
    std::string text;
    observe::renderPrometheus(s->merged, p, text);
    s->conn->respond(200, "text/plain; version=0.0.4; charset=utf-8", text);
  }
}

}  // namespace sluice::admin
