// AdminServer: the admin listener on the main thread's loop. Serves /health*, /metrics
// (Prometheus text, gathered from every worker through post()), /admin/status, /admin/rates
// (the last minute, from samples of the workers' metrics taken every 2 s) and the status page
// at /. When a token is configured, /admin/* needs "Authorization: Bearer TOKEN"; /health*,
// /metrics and the page itself stay open (the page asks for the token).
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/schema.h"
#include "proxy/net/acceptor.h"
#include "proxy/observe/metrics.h"
#include "proxy/observe/rate_window.h"

namespace sluice {
class Server;
}

namespace sluice::admin {

// 127.0.0.0/8, ::1 or localhost: only the host itself can reach it.
bool isLoopback(const config::HostPort& hp);

class AdminConnection;

// One request as the admin connection read it.
struct AdminRequest {
  std::string method;
  std::string target;
  std::string authorization;
  std::string origin;  // Origin header ("" when absent)
  std::string host;    // Host header
  std::string body;
};

// A browser's cross-site request (a page elsewhere posting to this listener) must not change
// anything: true when the request carries an Origin that is not this listener's own
// (http:// or https:// + the Host it was sent to). Requests without Origin (curl) pass.
bool crossOrigin(std::string_view origin, std::string_view host);

class AdminServer final : private net::Acceptor::Handler {
 public:
  AdminServer(uv_loop_t* loop, Server& server);
  ~AdminServer() override;
  // Binds and listens. Returns false with `err` on failure.
  bool listen(const config::HostPort& addr, std::string& err);
  void setToken(std::string token) { token_ = std::move(token); }
  const config::HostPort& address() const { return addr_; }
  void close();

  // Called by connections.
  void handle(AdminConnection* c, const AdminRequest& req);
  void connectionClosed(AdminConnection* c);

 private:
  struct Scrape;
  // Merges every worker's metrics: for a /metrics answer to `c`, or (c = nullptr) as a sample
  // of the rate window.
  void startScrape(AdminConnection* c);
  static void onSample(uv_timer_t* t);
  void handleDrain(AdminConnection* c, const std::string& method, const std::string& path);
  void finishScrapes();
  // --- net::Acceptor::Handler (accept(2) pauses when descriptors run out, never spins) ---
  void onAccepted(int fd, const sockaddr_storage& peer) override;
  void onAcceptPaused(int err) override;

  uv_loop_t* loop_;
  Server& server_;
  net::Acceptor* acceptor_ = nullptr;  // frees itself once closed
  uint64_t pauseLoggedMs_ = 0;
  config::HostPort addr_;
  std::string token_;
  bool tokenMatches(std::string_view authorization) const;
  std::vector<AdminConnection*> conns_;
  // Metrics gathering: workers merge into `pending_` under a lock and ping `async_`.
  uv_async_t async_{};
  std::mutex mu_;
  std::vector<std::shared_ptr<Scrape>> done_;
  std::vector<std::shared_ptr<Scrape>> inflight_;
  // The last minute for /admin/rates: a sample every window_.intervalMs().
  observe::RateWindow window_;
  uv_timer_t sampleTimer_{};
  bool sampling_ = false;  // a sample is being gathered
};

}  // namespace sluice::admin
