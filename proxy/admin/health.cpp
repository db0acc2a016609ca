// Health endpoint bodies.
#include "proxy/admin/health.h"

#include "proxy/observe/log.h"

namespace sluice::admin {

static const char* balanceName(config::Balance b) {
  switch (b) {
    case config::Balance::LeastConn:
      return "least_conn";
    case config::Balance::P2c:
      return "p2c";
    case config::Balance::Hash:
      return "hash";
    default:
      return "round_robin";
  }
}

void appendPoolsJson(const Snapshot& snap, std::string& out) {
  const uint64_t now = upstream::monotonicMs();
  out.append("{");
  bool firstPool = true;
  for (const auto& p : snap.pools) {
    if (!firstPool) out.push_back(',');
    firstPool = false;
    out.push_back('"');
    observe::appendJsonEscaped(out, p->name);
    out.append("\":{\"balance\":\"");
    out.append(balanceName(p->settings.balance));
    out.append("\",\"healthy\":");
    out.append(p->hasHealthyBackend() ? "true" : "false");
    out.append(",\"health_checks\":");
    out.append(p->settings.health.enabled ? "true" : "false");
    out.append(",\"unresolved\":[");
    for (size_t i = 0; i < p->unresolved.size(); ++i) {
      if (i) out.push_back(',');
      out.push_back('"');
      observe::appendJsonEscaped(out, p->unresolved[i]);
      out.push_back('"');
    }
    out.append("],\"backends\":[");
    for (size_t i = 0; i < p->backends.size(); ++i) {
      const auto& b = p->backends[i];
      if (i) out.push_back(',');
      out.append("{\"address\":\"");
      observe::appendJsonEscaped(out, b->address);
      out.append("\",\"name\":\"");
      observe::appendJsonEscaped(out, b->name);
      out.append("\",\"ip\":\"");
      observe::appendJsonEscaped(out, b->ip);
      out.append("\",\"weight\":");
      out.append(std::to_string(p->weights[i]));
      out.append(",\"state\":\"");
      out.append(b->stateName(now));
      out.append("\",\"up\":");
      out.append(b->resolved && b->usable(now) ? "true" : "false");
      out.append(",\"healthy\":");
      out.append(b->healthy.load(std::memory_order_relaxed) ? "true" : "false");
      out.append(",\"ejected\":");
      out.append(b->ejected(now) ? "true" : "false");
      out.append(",\"draining\":");
      out.append(b->draining.load(std::memory_order_relaxed) ? "true" : "false");
      out.append(",\"resolved\":");
      out.append(b->resolved ? "true" : "false");
      out.append(",\"active\":");
      out.append(std::to_string(b->active.load(std::memory_order_relaxed)));
      out.append(",\"consecutive_failures\":");
      out.append(std::to_string(b->consecutiveFailures.load(std::memory_order_relaxed)));
      out.append(",\"state_changes\":");
      out.append(std::to_string(b->stateChanges.load(std::memory_order_relaxed)));
      out.append("}");
    }
    out.append("]}");
  }
  out.append("}");
}

Liveness& liveness() {
  static Liveness l;
  return l;
}

bool Liveness::live(uint64_t nowMs, uint32_t* stalled, bool* mainStalled) const {
  const uint64_t beat = beatMs.load(std::memory_order_relaxed);
  const uint32_t n = stalledWorkers.load(std::memory_order_relaxed);
  const bool mainLate = beat != 0 && nowMs > beat + kStallMs;
  if (stalled) *stalled = n;
  if (mainStalled) *mainStalled = mainLate;
  return n == 0 && !mainLate;
}

bool healthResponse(std::string_view path, const Snapshot& snap, int& status, std::string& body) {
  if (path == "/health/live") {
    uint32_t stalled = 0;
    bool mainStalled = false;
    if (liveness().live(upstream::monotonicMs(), &stalled, &mainStalled)) {
      status = 200;
      body = "{\"status\":\"live\"}";
    } else {
      status = 503;
      body = "{\"status\":\"stalled\",\"stalled_workers\":" + std::to_string(stalled) +
             ",\"main_loop_stalled\":" + (mainStalled ? "true" : "false") + "}";
    }
    return true;
  }
  if (path == "/health/ready") {
    bool ready = snap.ready();
    status = ready ? 200 : 503;
    body = ready ? "{\"status\":\"ready\"}" : "{\"status\":\"not_ready\"}";
    return true;
  }
  if (path == "/health") {
    const bool live = liveness().live(upstream::monotonicMs());
    bool ready = snap.ready();
    status = ready && live ? 200 : 503;
    body = "{\"live\":";
    body.append(live ? "true" : "false");
    body.append(",\"ready\":");
    body.append(ready ? "true" : "false");
    body.append(",\"generation\":");
    body.append(std::to_string(snap.generation));
    body.append(",\"pools\":");
    appendPoolsJson(snap, body);
    body.append("}");
    return true;
  }
  return false;
}

}  // namespace sluice::admin
