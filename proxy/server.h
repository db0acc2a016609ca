// Server: the main thread. It loads and validates the config, builds snapshots, binds the
// listening sockets (one SO_REUSEPORT socket per listener per worker) and hands them to the
// workers, runs the admin listener, and handles signals: reload (HUP), graceful stop
// (TERM/QUIT), fast stop (INT) and log reopen (USR1).
#pragma once

#include <uv.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/schema.h"
#include "middleware/local_store.h"
#include "proxy/admin/admin_server.h"
#include "proxy/release_store.h"
#include "proxy/router/drain.h"
#include "proxy/snapshot.h"
#include "proxy/tracing/exporter.h"
#include "proxy/upstream/health.h"
#include "proxy/upstream/resolver.h"
#include "proxy/worker.h"

namespace sluice {

// server.max_connections = "auto": half of the descriptors left after kFdReserve (listeners,
// loops, logs, health checks, idle upstream connections; a proxied connection holds two, the
// client's and the upstream one), at least kMinAutoConnections.
constexpr uint64_t kFdReserve = 64;
constexpr uint64_t kMinAutoConnections = 16;
// The soft open-file limit is raised to the hard one at startup, up to this.
constexpr uint64_t kFdLimitCeiling = 1 << 20;
uint64_t autoMaxConnections(uint64_t fdLimit);

class Server {
 public:
  explicit Server(std::string configPath);
  ~Server();
  // Runs until shutdown. Returns the process exit code.
  int run();

  // For the admin server (main thread).
  const SnapshotPtr& snapshot() const { return current_; }
  std::vector<std::unique_ptr<Worker>>& workers() { return workers_; }
  uint64_t reloadsOk() const { return reloadsOk_; }
  uint64_t reloadsError() const { return reloadsError_; }
  // The last reload's outcome (for /admin/status and the status page); atUnixMs = 0: none yet.
  struct ReloadOutcome {
    int64_t atUnixMs = 0;
    bool ok = true;
    std::string reason;               // why it failed
    std::vector<std::string> errors;  // the first configuration errors, FILE:LINE:COL: message
  };
  const ReloadOutcome& lastReload() const { return lastReload_; }
  // Admin drain/undrain of `address` (a configured address, a backend name "address@ip" or a
  // resolved "ip:port") in `pool`. Returns how many backends matched.
  size_t setDraining(const std::string& pool, const std::string& address, bool draining);
  // [tracing] export counters; null when tracing was never configured.
  const tracing::Exporter* tracer() const { return tracer_.get(); }
  // An admin action changed a release: persist it now.
  void releaseChanged() {
    if (releaseStore_) releaseStore_->flush();
  }

 private:
  bool start();
  void reload();
  // Creates sockets for listener keys not bound yet; on failure closes what it made.
  bool bindListeners(const config::Config& cfg, std::map<std::string, std::vector<int>>& made,
                     std::string& err);
  bool applyLogSettings(const config::Config& cfg, std::string& err);
  // Resolves server.max_connections = "auto" from the open-file limit (start and reload).
  void resolveLimits(config::Config& cfg) const;
  void beginShutdown(bool graceful);
  void onWorkerExit();
  void writePidFile();
  // Hands a built snapshot and the new listening sockets to every worker (reload).
  void publish(const SnapshotPtr& snap, std::map<std::string, std::vector<int>>& fds);
  void startSignals();
  // [tracing]: starts the exporter the first time a config has it (handing each worker its
  // ring: directly before the workers start, else through post() ahead of the snapshot that
  // enables it), or passes it the new settings.
  void applyTracing(const config::Config& cfg, bool workersRunning);
  // Backend sets and health: publish a snapshot rebuilt from the running config (DNS change),
  // and the periodic state monitor (logs/counts state changes, drops idle connections to
  // backends that went down).
  void initBackendHandles();
  void scheduleRebuild();
  void rebuildBackends();
  void monitorBackends();
  // drain_timeout: on the monitor timer, drains the pools of splits that have taken no new
  // traffic for that long (router::DrainTracker decides, workers close).
  void monitorSplits();
  // Once a second: which worker loops have not answered a poke for kStallMs
  // (admin::liveness()), then a poke to each one that has no poke pending.
  void heartbeat();
  uint64_t nextBeatMs_ = 0;
  std::vector<uint64_t> pokedAtMs_;  // per worker: when its unanswered poke was sent, 0 = none

  static void onSignal(uv_signal_t* h, int signum);

  std::string configPath_;
  uv_loop_t loop_{};
  uv_signal_t signals_[5]{};
  uv_async_t workerExit_{};
  uv_timer_t shutdownTimer_{};
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<unsigned> workersExited_{0};
  SnapshotPtr current_;
  upstream::BackendRegistry registry_;
  middleware::LocalStoreRegistry stores_;  // local rate-limit buckets, kept across reloads
  router::ReleaseRegistry releases_;       // split routes' releases, kept across reloads
  std::unique_ptr<ReleaseStore> releaseStore_;
  std::unique_ptr<upstream::Resolver> resolver_;
  std::unique_ptr<upstream::HealthChecker> health_;
  uv_timer_t rebuildTimer_{};
  uv_timer_t monitorTimer_{};
  uv_async_t resolveAsync_{};
  bool pendingRebuild_ = false;
  bool backendHandles_ = false;
  router::DrainTracker drains_;  // quiet split pools, by name (survives snapshot swaps)
  std::vector<std::string> boundKeys_;
  std::unique_ptr<admin::AdminServer> admin_;
  std::unique_ptr<tracing::Exporter> tracer_;
  std::vector<std::unique_ptr<admin::AdminServer>> retiredAdmins_;
  std::string pidFile_;
  uint64_t generation_ = 0;
  uint64_t reloadsOk_ = 0;
  uint64_t reloadsError_ = 0;
  ReloadOutcome lastReload_;
  bool shuttingDown_ = false;
  int exitCode_ = 0;
  uint64_t fdLimit_ = 1024;  // soft RLIMIT_NOFILE after startup raised it
};

}  // namespace sluice
