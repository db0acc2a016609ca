// The main thread's periodic watch (every kMonitorMs): backend state changes pushed to the
// workers, split pools drained after drain_timeout, and the workers' liveness heartbeat.
#include <string>

#include "proxy/admin/health.h"
#include "proxy/observe/log.h"
#include "proxy/server.h"

namespace sluice {

using config::LogLevel;
using observe::logEvent;

void Server::heartbeat() {
  // A worker is judged on the pokes it has not answered, not on the age of its last turn: an
  // idle loop only turns when poked, and a main thread that was itself late must not make
  // the workers look stalled.
  const uint64_t now = uv_now(&loop_);  // the workers' uv_now reads the same monotonic clock
  if (now < nextBeatMs_) return;
  nextBeatMs_ = now + 1000;
  pokedAtMs_.resize(workers_.size(), 0);
  uint32_t stalled = 0;
  for (size_t i = 0; i < workers_.size(); ++i) {
    uint64_t& poked = pokedAtMs_[i];
    const uint64_t turn = workers_[i]->lastTurnMs();
    if (turn == 0 || turn >= poked) poked = 0;  // stopped on purpose, or it turned since
    if (poked != 0) {
      if (now > poked + admin::Liveness::kStallMs) ++stalled;
      continue;  // still pending: no second poke
    }
    if (workers_[i]->poke()) poked = now;
  }
  const uint32_t before = admin::liveness().stalledWorkers.load(std::memory_order_relaxed);
  if (stalled != 0 && before == 0)
    logEvent(LogLevel::Error, "worker event loop stalled",
             {{"workers", std::to_string(stalled)},
              {"stalled_for_ms", std::to_string(admin::Liveness::kStallMs)}});
  else if (stalled == 0 && before != 0)
    logEvent(LogLevel::Info, "worker event loops turn again", {});
  admin::liveness().beat(now, stalled);
}

void Server::monitorBackends() {
  if (!current_ || shuttingDown_) return;
  uint64_t now = upstream::monotonicMs();
  for (const auto& p : current_->pools) {
    for (const auto& bp : p->backends) {
      upstream::Backend& b = *bp;
      std::string state = b.stateName(now);
      if (b.reportedState == state) continue;
      std::string from = b.reportedState.empty() ? "new" : b.reportedState;
      bool first = b.reportedState.empty();
      b.reportedState = state;
      if (first && state == "up") continue;
      if (!first) ++b.stateChanges;
      std::string reason = b.lastReason;
      b.lastReason.clear();
      if (reason.empty()) {
        if (state == "ejected")
          reason = "outlier: " + std::to_string(p->settings.outlier.consecutiveFailures) +
                   " consecutive failures, ejected for " +
                   std::to_string(b.ejectedUntilMs.load() - now) + "ms";
        else if (state == "draining")
          reason = "admin drain";
        else if (from == "ejected")
          reason = "ejection time over";
        else if (from == "draining")
          reason = "admin undrain";
      }
      logEvent(state == "up" ? LogLevel::Info : LogLevel::Warn, "backend state changed",
               {{"pool", p->name},
                {"backend", b.name},
                {"from", from},
                {"to", state},
                {"reason", reason.empty() ? "-" : reason}});
      if (state == "down" || state == "ejected") {
        // Its idle keep-alive connections are likely dead too: drop them everywhere.
        for (auto& w : workers_) {
          Worker* wp = w.get();
          upstream::BackendPtr keep = bp;
          wp->post([wp, keep] { wp->connPool().closeBackend(keep.get()); });
        }
      }
    }
  }
}

void Server::monitorSplits() {
  if (!current_ || shuttingDown_) return;
  const auto due = drains_.tick(router::poolUses(current_->routes), upstream::monotonicMs());
  for (const router::DrainDue& d : due) {
    auto drain = std::make_shared<PoolDrain>();
    drain->route = d.route;
    drain->pool = d.pool;
    const upstream::Pool* p = current_->pool(d.pool);
    drain->poolNameId = p ? p->nameId : observe::internName(d.pool);
    drain->pending.store(workers_.size(), std::memory_order_relaxed);
    for (auto& w : workers_) w->drainPool(drain);
  }
}

}  // namespace sluice
