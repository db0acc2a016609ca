// AdminServer: the admin listener on the main thread's loop. Serves /health*, /metrics
// (Prometheus text, gathered from every worker through post()), and /admin/status. When a
// token is configured, /admin/* needs "Authorization: Bearer TOKEN"; /health* and /metrics
// stay open.
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

namespace sluice {
class Server;
}

namespace sluice::admin {

// 127.0.0.0/8, ::1 or localhost: only the host itself can reach it.
bool isLoopback(const config::HostPort& hp);

class AdminConnection;

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
  void handle(AdminConnection* c, const std::string& method, const std::string& target,
              const std::string& authorization, const std::string& body);
  void connectionClosed(AdminConnection* c);

 private:
  struct Scrape;
  void startScrape(AdminConnection* c);
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
};

}  // namespace sluice::admin
