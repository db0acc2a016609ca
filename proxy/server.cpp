// Main thread: startup, reload, signals, shutdown.
#include "proxy/server.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include "config/loader.h"
#include "config/units.h"
#include "middleware/registry.h"
#include "proxy/admin/health.h"
#include "proxy/observe/log.h"

namespace sluice {

using config::LogLevel;
using observe::logEvent;

constexpr uint64_t kMonitorMs = 50;  // backend state and split drain monitor period

Server::Server(std::string configPath) : configPath_(std::move(configPath)) {
  uv_loop_init(&loop_);
}

Server::~Server() {
  uv_loop_close(&loop_);
}

// An admin listener reachable from other hosts: say what protects it.
static void warnPublicAdmin(const config::Config& cfg) {
  if (!cfg.admin.enabled || admin::isLoopback(cfg.admin.listen)) return;
  logEvent(LogLevel::Warn,
           cfg.admin.token.empty()
               ? "admin listener is not on loopback and has no token: its mutating endpoints "
                 "answer 403 (set admin.token); /metrics, /health* and /admin/status are open"
               : "admin listener is not on loopback: /metrics, /health* are open, /admin/* needs "
                 "the token",
           {{"admin", config::formatHostPort(cfg.admin.listen)}});
}

static unsigned workerCount(const config::Config& cfg) {
  if (cfg.server.workers) return cfg.server.workers;
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

bool Server::bindListeners(const config::Config& cfg, std::map<std::string, std::vector<int>>& made,
                           std::string& err) {
  for (const auto& l : cfg.listeners) {
    std::string key = listenerKey(l.listen);
    if (std::find(boundKeys_.begin(), boundKeys_.end(), key) != boundKeys_.end()) continue;
    std::vector<int> fds;
    for (size_t i = 0; i < workers_.size(); ++i) {
      int fd = net::listenSocket(l.listen, true, 511, err);
      if (fd < 0) {
        for (int f : fds) ::close(f);
        for (auto& [_, v] : made)
          for (int f : v) ::close(f);
        made.clear();
        err = "listener " + l.name + ": " + err;
        return false;
      }
      fds.push_back(fd);
    }
    made[key] = std::move(fds);
  }
  return true;
}

bool Server::applyLogSettings(const config::Config& cfg, std::string& err) {
  auto& w = observe::LogWriter::instance();
  if (!w.setAccessTarget(cfg.log.access, err)) return false;
  w.setFormat(cfg.log.format);
  w.setLevel(cfg.log.level);
  return true;
}

void Server::writePidFile() {
  if (pidFile_.empty()) return;
  std::ofstream f(pidFile_, std::ios::trunc);
  f << ::getpid() << "\n";
  if (!f) logEvent(LogLevel::Warn, "cannot write pid file", {{"path", pidFile_}});
}

namespace {
using FdMap = std::map<std::string, std::vector<int>>;

// Worker i's socket of each listener key.
std::map<std::string, int> fdsOf(const FdMap& fds, size_t i) {
  std::map<std::string, int> mine;
  for (const auto& [key, v] : fds) mine[key] = v[i];
  return mine;
}

void closeFds(const FdMap& fds) {
  for (const auto& [_, v] : fds)
    for (int f : v) ::close(f);
}
}  // namespace

// Raises the soft open-file limit to the hard one (as Go and HAProxy do: the soft limit of
// 1024 exists for select(), which Sluice does not use) and returns the limit in force.
static uint64_t raiseFdLimit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  rlim_t want = rl.rlim_max;
  if (want == RLIM_INFINITY || want > kFdLimitCeiling) want = kFdLimitCeiling;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
    rlimit raised = rl;
    raised.rlim_cur = want;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  return rl.rlim_cur == RLIM_INFINITY ? kFdLimitCeiling : uint64_t(rl.rlim_cur);
}

uint64_t autoMaxConnections(uint64_t fdLimit) {
  const uint64_t spare = fdLimit > kFdReserve ? fdLimit - kFdReserve : 0;
  return std::max<uint64_t>(kMinAutoConnections, spare / 2);
}

// server.max_connections = "auto" becomes a number before a snapshot is built from `cfg`.
void Server::resolveLimits(config::Config& cfg) const {
  const bool isAuto = cfg.server.maxConnections == 0;
  if (isAuto) cfg.server.maxConnections = autoMaxConnections(fdLimit_);
  if (!isAuto && cfg.server.maxConnections > fdLimit_)
    logEvent(LogLevel::Warn,
             "server.max_connections is above the open-file limit: past the limit, accepting "
             "pauses (sluice_connections_refused_total{reason=\"fd_limit\"})",
             {{"max_connections", std::to_string(cfg.server.maxConnections)},
              {"fd_limit", std::to_string(fdLimit_)}});
}

bool Server::start() {
  fdLimit_ = raiseFdLimit();
  auto res = config::loadConfigFile(configPath_, middleware::parsers());
  for (const auto& w : res.warnings) logEvent(LogLevel::Warn, w.str());
  if (!res.config) {
    for (const auto& e : res.errors) std::fprintf(stderr, "sluice: %s\n", e.str().c_str());
    return false;
  }
  config::Config& cfg = *res.config;
  resolveLimits(cfg);
  std::string err;
  if (!applyLogSettings(cfg, err)) {
    std::fprintf(stderr, "sluice: %s\n", err.c_str());
    return false;
  }
  unsigned n = workerCount(cfg);
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>(i, n));
  std::map<std::string, std::vector<int>> fds;
  if (!bindListeners(cfg, fds, err)) {
    std::fprintf(stderr, "sluice: %s\n", err.c_str());
    return false;
  }
  initBackendHandles();
  resolver_->sync(cfg);
  std::vector<std::string> warnings;
  auto snap = buildSnapshot(cfg, registry_, ++generation_, warnings, err, &resolver_->book(),
                            &stores_, &releases_);
  for (const auto& w : warnings) logEvent(LogLevel::Warn, w);
  if (!snap) {
    std::fprintf(stderr, "sluice: %s\n", err.c_str());
    closeFds(fds);
    return false;
  }
  if (cfg.admin.enabled) {
    admin_ = std::make_unique<admin::AdminServer>(&loop_, *this);
    admin_->setToken(cfg.admin.token);
    if (!admin_->listen(cfg.admin.listen, err)) {
      std::fprintf(stderr, "sluice: %s\n", err.c_str());
      closeFds(fds);
      return false;
    }
  }
  current_ = snap;
  pidFile_ = cfg.server.pidFile;
  writePidFile();
  warnPublicAdmin(cfg);
  releaseStore_ = std::make_unique<ReleaseStore>(&loop_, releases_);
  releaseStore_->configure(cfg);
  releaseStore_->restore();

  observe::LogWriter::instance().start();
  uv_async_init(&loop_, &workerExit_,
                [](uv_async_t* h) { static_cast<Server*>(h->data)->onWorkerExit(); });
  workerExit_.data = this;
  uv_timer_init(&loop_, &shutdownTimer_);
  shutdownTimer_.data = this;
  applyTracing(cfg, false);
  for (unsigned i = 0; i < n; ++i) {
    workers_[i]->setExitHook([this] {
      workersExited_.fetch_add(1);
      uv_async_send(&workerExit_);
    });
    workers_[i]->start(current_, fdsOf(fds, i));
  }
  for (auto& [key, _] : fds) boundKeys_.push_back(key);
  health_->sync(current_->pools);
  uv_timer_start(
      &monitorTimer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Server*>(t->data);
        self->monitorBackends();
        self->monitorSplits();
        self->heartbeat();
      },
      kMonitorMs, kMonitorMs);
  startSignals();
  std::string listeners;
  for (const auto& l : current_->listeners) listeners += (listeners.empty() ? "" : ",") + l.key;
  logEvent(LogLevel::Info, "sluice started",
           {{"version", SLUICE_VERSION},
            {"config", configPath_},
            {"workers", std::to_string(n)},
            {"listeners", listeners},
            {"max_connections", std::to_string(cfg.server.maxConnections)},
            {"fd_limit", std::to_string(fdLimit_)},
            {"admin", admin_ ? config::formatHostPort(admin_->address()) : "-"}});
  return true;
}

void Server::applyTracing(const config::Config& cfg, bool workersRunning) {
  if (!cfg.tracing.enabled) return;  // a running exporter stays: the workers stop feeding it
  if (tracer_) {
    if (cfg.tracing.queueSize != tracer_->queueSize())
      logEvent(LogLevel::Warn,
               "tracing.queue_size changes need a restart; keeping the running size");
    tracer_->configure(cfg.tracing);
    return;
  }
  tracer_ = std::make_unique<tracing::Exporter>(workers_.size(), cfg.tracing.queueSize);
  tracer_->configure(cfg.tracing);
  tracer_->start();
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker* w = workers_[i].get();
    tracing::SpanRing* ring = tracer_->ring(i);
    if (workersRunning)
      w->post([w, ring] { w->setSpanRing(ring); });
    else
      w->setSpanRing(ring);
  }
}

void Server::startSignals() {
  const int sigs[5] = {SIGHUP, SIGTERM, SIGQUIT, SIGINT, SIGUSR1};
  for (int i = 0; i < 5; ++i) {
    uv_signal_init(&loop_, &signals_[i]);
    signals_[i].data = this;
    uv_signal_start(&signals_[i], onSignal, sigs[i]);
  }
}

void Server::publish(const SnapshotPtr& snap, FdMap& fds) {
  std::vector<std::string> closeKeys;
  for (const auto& key : boundKeys_)
    if (!snap->listener(key)) closeKeys.push_back(key);
  for (size_t i = 0; i < workers_.size(); ++i)
    workers_[i]->applySnapshot(snap, fdsOf(fds, i), closeKeys);
  for (const auto& key : closeKeys)
    boundKeys_.erase(std::find(boundKeys_.begin(), boundKeys_.end(), key));
  for (auto& [key, _] : fds) boundKeys_.push_back(key);
}

void Server::reload() {
  logEvent(LogLevel::Info, "reloading configuration", {{"config", configPath_}});
  auto res = config::loadConfigFile(configPath_, middleware::parsers());
  for (const auto& w : res.warnings) logEvent(LogLevel::Warn, w.str());
  auto failed = [&](const std::string& why) {
    ++reloadsError_;
    lastReload_ = {observe::nowUnixMs(), false, why, {}};
    constexpr size_t kKeptErrors = 10;
    for (size_t i = 0; i < res.errors.size() && i < kKeptErrors; ++i)
      lastReload_.errors.push_back(res.errors[i].str());
    logEvent(LogLevel::Error, "reload failed, keeping the running configuration",
             {{"reason", why}, {"generation", std::to_string(current_->generation)}});
  };
  if (!res.config) {
    for (const auto& e : res.errors) logEvent(LogLevel::Error, e.str());
    failed(std::to_string(res.errors.size()) + " configuration error(s)");
    return;
  }
  config::Config& cfg = *res.config;
  resolveLimits(cfg);
  if (workerCount(cfg) != workers_.size())
    logEvent(LogLevel::Warn, "server.workers changes need a restart; keeping the running count");
  std::string err;
  std::map<std::string, std::vector<int>> fds;
  if (!bindListeners(cfg, fds, err)) {
    logEvent(LogLevel::Error, err);
    failed(err);
    return;
  }
  // Admin listener: rebind only when the address changed. The new one is bound before the old
  // one closes, so a failed bind keeps the running admin listener.
  std::unique_ptr<admin::AdminServer> newAdmin;
  bool adminChanged =
      cfg.admin.enabled != bool(admin_) || (admin_ && config::formatHostPort(admin_->address()) !=
                                                          config::formatHostPort(cfg.admin.listen));
  auto retire = [&](std::unique_ptr<admin::AdminServer> a) {
    // Its handles close asynchronously: keep the object alive until exit.
    if (!a) return;
    a->close();
    retiredAdmins_.push_back(std::move(a));
  };
  // Any failure from here on undoes what this reload set up and keeps the running config.
  auto abandon = [&](const std::string& why) {
    retire(std::move(newAdmin));
    closeFds(fds);
    logEvent(LogLevel::Error, why);
    failed(why);
  };
  if (adminChanged && cfg.admin.enabled) {
    newAdmin = std::make_unique<admin::AdminServer>(&loop_, *this);
    if (!newAdmin->listen(cfg.admin.listen, err)) return abandon(err);
  }
  resolver_->sync(cfg);
  std::vector<std::string> warnings;
  auto snap = buildSnapshot(cfg, registry_, generation_ + 1, warnings, err, &resolver_->book(),
                            &stores_, &releases_);
  for (const auto& w : warnings) logEvent(LogLevel::Warn, w);
  if (!snap) return abandon(err);
  // Last, because it cannot be undone: the access-log target.
  if (!applyLogSettings(cfg, err)) return abandon(err);
  ++generation_;
  applyTracing(cfg, true);
  publish(snap, fds);
  if (adminChanged) {
    retire(std::move(admin_));
    admin_ = std::move(newAdmin);
  }
  if (admin_) admin_->setToken(cfg.admin.token);
  if (adminChanged) warnPublicAdmin(cfg);
  current_ = snap;
  health_->sync(current_->pools);
  if (cfg.server.pidFile != pidFile_) {
    if (!pidFile_.empty()) ::unlink(pidFile_.c_str());
    pidFile_ = cfg.server.pidFile;
    writePidFile();
  }
  registry_.prune();
  std::vector<std::string> routeNames;
  for (const auto& rc : cfg.routes)
    if (!rc.split.empty()) routeNames.push_back(rc.name);
  releases_.retain(routeNames);
  releaseStore_->configure(cfg);
  releaseStore_->flush();
  ++reloadsOk_;
  lastReload_ = {observe::nowUnixMs(), true, {}, {}};
  logEvent(LogLevel::Info, "configuration reloaded", {{"generation", std::to_string(generation_)}});
}

// ---------------------------------------------------------------- backend sets and health

namespace {
uv_async_t* gResolveAsync = nullptr;  // for the resolve hook (one Server per process)
}  // namespace

void Server::initBackendHandles() {
  if (backendHandles_) return;
  backendHandles_ = true;
  uv_timer_init(&loop_, &rebuildTimer_);
  rebuildTimer_.data = this;
  uv_timer_init(&loop_, &monitorTimer_);
  monitorTimer_.data = this;
  uv_async_init(&loop_, &resolveAsync_, [](uv_async_t* h) {
    auto* self = static_cast<Server*>(h->data);
    if (!self->shuttingDown_ && self->resolver_) self->resolver_->resolveAllSoon();
  });
  resolveAsync_.data = this;
  gResolveAsync = &resolveAsync_;
  // Workers call this after a refused connect: re-resolve host names soon.
  upstream::setResolveHook([] { uv_async_send(gResolveAsync); });
  resolver_ = std::make_unique<upstream::Resolver>(&loop_, [this] { scheduleRebuild(); });
  health_ = std::make_unique<upstream::HealthChecker>(&loop_);
}

void Server::scheduleRebuild() {
  if (pendingRebuild_ || shuttingDown_) return;
  pendingRebuild_ = true;
  // Coalesce the results of one round of lookups into one new snapshot.
  uv_timer_start(
      &rebuildTimer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Server*>(t->data);
        self->pendingRebuild_ = false;
        self->rebuildBackends();
      },
      5, 0);
}

void Server::rebuildBackends() {
  if (shuttingDown_ || !current_) return;
  std::vector<std::string> warnings;
  std::string err;
  auto snap = buildSnapshot(current_->config, registry_, current_->generation, warnings, err,
                            &resolver_->book(), &stores_, &releases_);
  for (const auto& w : warnings) logEvent(LogLevel::Warn, w);
  if (!snap) {
    logEvent(LogLevel::Error, "cannot update backend addresses", {{"reason", err}});
    return;
  }
  snap->revision = current_->revision + 1;
  // Same generation: this is not a config reload (sluice_config_reloads_total is unchanged).
  for (auto& w : workers_) w->applySnapshot(snap, {}, {});
  current_ = snap;
  health_->sync(current_->pools);
  registry_.prune();
  size_t n = 0;
  for (const auto& p : current_->pools) n += p->backends.size();
  logEvent(LogLevel::Info, "backend set updated",
           {{"generation", std::to_string(current_->generation)},
            {"revision", std::to_string(current_->revision)},
            {"backends", std::to_string(n)}});
}

size_t Server::setDraining(const std::string& pool, const std::string& address, bool draining) {
  size_t n = 0;
  const upstream::Pool* p = current_ ? current_->pool(pool) : nullptr;
  if (!p) return 0;
  for (const auto& b : p->backends) {
    std::string ipPort = b->ip.find(':') != std::string::npos ? "[" + b->ip + "]" : b->ip;
    uint16_t port = ntohs(b->addr.ss_family == AF_INET6
                              ? reinterpret_cast<const sockaddr_in6*>(&b->addr)->sin6_port
                              : reinterpret_cast<const sockaddr_in*>(&b->addr)->sin_port);
    ipPort += ":" + std::to_string(port);
    if (b->address != address && b->name != address && ipPort != address) continue;
    ++n;
    if (b->draining.exchange(draining) != draining)
      b->lastReason = draining ? "admin drain" : "admin undrain";
  }
  if (n) monitorBackends();
  return n;
}

void Server::onSignal(uv_signal_t* h, int signum) {
  auto* self = static_cast<Server*>(h->data);
  switch (signum) {
    case SIGHUP:
      if (!self->shuttingDown_) self->reload();
      break;
    case SIGTERM:
    case SIGQUIT:
      self->beginShutdown(true);
      break;
    case SIGINT:
      self->beginShutdown(false);
      break;
    case SIGUSR1:
      logEvent(LogLevel::Info, "reopening log files");
      observe::LogWriter::instance().reopen();
      break;
  }
}

void Server::beginShutdown(bool graceful) {
  if (shuttingDown_ && graceful) return;
  bool first = !shuttingDown_;
  shuttingDown_ = true;
  logEvent(LogLevel::Info, graceful ? "graceful shutdown" : "fast shutdown");
  if (first) {
    upstream::setResolveHook(nullptr);
    if (resolver_) resolver_->close();
    if (health_) health_->close();
    uv_timer_stop(&monitorTimer_);
    uv_timer_stop(&rebuildTimer_);
    admin::liveness().beat(0, 0);  // no heartbeat while stopping: nothing to call stalled
    if (releaseStore_) {
      releaseStore_->flush();
      releaseStore_->close();
    }
  }
  for (auto& w : workers_) w->shutdown(graceful);
  if (first && admin_) admin_->close();
  if (graceful) {
    uint64_t ms = uint64_t(current_->config.server.shutdownTimeout.count());
    uv_timer_start(
        &shutdownTimer_,
        [](uv_timer_t* t) {
          auto* self = static_cast<Server*>(t->data);
          logEvent(LogLevel::Warn, "shutdown_timeout reached, closing remaining connections");
          for (auto& w : self->workers_) w->shutdown(false);
        },
        ms, 0);
  }
  onWorkerExit();
}

void Server::onWorkerExit() {
  if (workersExited_.load() < workers_.size()) return;
  // Every worker is done: close our handles so uv_run returns.
  uv_timer_stop(&shutdownTimer_);
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
}

int Server::run() {
  signal(SIGPIPE, SIG_IGN);
  if (!start()) return 1;
  uv_run(&loop_, UV_RUN_DEFAULT);
  for (auto& w : workers_) w->join();
  // After the workers: every span is in the rings. The final flush is bounded by
  // tracing.export_timeout.
  if (tracer_) tracer_->stop();
  if (!pidFile_.empty()) ::unlink(pidFile_.c_str());
  logEvent(LogLevel::Info, "sluice stopped");
  observe::LogWriter::instance().stop();
  return exitCode_;
}

}  // namespace sluice
