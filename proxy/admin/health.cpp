// Health endpoint bodies.
#include "proxy/admin/health.h"

#include "proxy/observe/log.h"

namespace sluice::admin {

void appendPoolsJson(const Snapshot& snap, std::string& out) {
  out.append("{");
  bool firstPool = true;
  for (const auto& p : snap.pools) {
    if (!firstPool) out.push_back(',');
    firstPool = false;
    out.push_back('"');
    observe::appendJsonEscaped(out, p->name);
    out.append("\":{\"balance\":\"round_robin\",\"healthy\":");
    out.append(p->hasHealthyBackend() ? "true" : "false");
    out.append(",\"backends\":[");
    for (size_t i = 0; i < p->backends.size(); ++i) {
      const auto& b = p->backends[i];
      if (i) out.push_back(',');
      out.append("{\"address\":\"");
      observe::appendJsonEscaped(out, b->address);
      out.append("\",\"weight\":");
      out.append(std::to_string(p->weights[i]));
      out.append(",\"up\":");
      out.append(b->resolved && b->healthy.load(std::memory_order_relaxed) ? "true" : "false");
      out.append(",\"resolved\":");
      out.append(b->resolved ? "true" : "false");
      out.append(",\"active\":");
      out.append(std::to_string(b->active.load(std::memory_order_relaxed)));
      out.append("}");
    }
    out.append("]}");
  }
  out.append("}");
}

bool healthResponse(std::string_view path, const Snapshot& snap, int& status, std::string& body) {
  if (path == "/health/live") {
    status = 200;
    body = "{\"status\":\"live\"}";
    return true;
  }
  if (path == "/health/ready") {
    bool ready = snap.ready();
    status = ready ? 200 : 503;
    body = ready ? "{\"status\":\"ready\"}" : "{\"status\":\"not_ready\"}";
    return true;
  }
  if (path == "/health") {
    bool ready = snap.ready();
    status = ready ? 200 : 503;
    body = "{\"live\":true,\"ready\":";
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
