#include "config/backend_dns.h"

#include <netdb.h>
#include <sys/socket.h>

#include <chrono>
#include <ctime>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/units.h"

namespace sluice::config {

namespace {

constexpr std::chrono::milliseconds kBudget{1000};  // "within 1s" in the warning

struct Lookup {
  std::string host;
  SourcePos pos;
  std::string what;
  addrinfo hints{};
  gaicb cb{};
};

// One Lookup per distinct host name (IP literals need no lookup).
std::vector<std::unique_ptr<Lookup>> namesOf(const Config& cfg) {
  std::vector<std::unique_ptr<Lookup>> out;
  std::set<std::string> seen;
  for (const auto& pc : cfg.pools)
    for (const auto& bc : pc.backends) {
      sockaddr_storage ss;
      socklen_t len;
      if (bc.hostPort.host.empty() || toSockaddr(bc.hostPort, ss, len)) continue;  // IP
      if (!seen.insert(bc.hostPort.host).second) continue;
      auto l = std::make_unique<Lookup>();
      l->host = bc.hostPort.host;
      l->pos = bc.pos;
      l->what = "pool." + pc.name + ": backend " + bc.address;
      l->hints.ai_family = AF_UNSPEC;
      l->hints.ai_socktype = SOCK_STREAM;
      l->cb.ar_name = l->host.c_str();
      l->cb.ar_request = &l->hints;
      out.push_back(std::move(l));
    }
  return out;
}

// Waits until every lookup has finished or the budget is spent.
void waitForAll(const std::vector<std::unique_ptr<Lookup>>& items) {
  auto deadline = std::chrono::steady_clock::now() + kBudget;
  for (;;) {
    std::vector<const gaicb*> pending;
    for (const auto& l : items)
      if (gai_error(&l->cb) == EAI_INPROGRESS) pending.push_back(&l->cb);
    auto left = deadline - std::chrono::steady_clock::now();
    if (pending.empty() || left <= std::chrono::nanoseconds(0)) return;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    gai_suspend(pending.data(), static_cast<int>(pending.size()), &ts);
  }
}

}  // namespace

void warnUnresolvedBackends(LoadResult& result) {
  if (!result.config) return;
  auto items = namesOf(*result.config);
  if (items.empty()) return;
  std::vector<gaicb*> list;
  list.reserve(items.size());
  for (const auto& l : items) list.push_back(&l->cb);
  // Submitting fails only when the system is out of resources; the check is advisory.
  if (getaddrinfo_a(GAI_NOWAIT, list.data(), static_cast<int>(list.size()), nullptr) != 0) return;
  waitForAll(items);
  const std::string& file = result.config->file;
  for (auto& l : items) {
    int rc = gai_error(&l->cb);
    if (rc == EAI_INPROGRESS) {
      result.warnings.push_back({file, l->pos.line, l->pos.col,
                                 l->what + ": host name '" + l->host +
                                     "' did not resolve within 1s (it is resolved again while "
                                     "running)"});
      (void)gai_cancel(&l->cb);
    } else if (rc == 0) {
      freeaddrinfo(l->cb.ar_result);
    } else {
      result.warnings.push_back({file, l->pos.line, l->pos.col,
                                 l->what + ": host name '" + l->host + "' does not resolve (" +
                                     gai_strerror(rc) +
                                     "); the pool has no address for it until it does"});
    }
  }
  sortByPosition(result.warnings);
  // glibc's resolver threads may still read a request block for a moment after gai_error()
  // reports it finished (or after a cancel that did not take): the blocks (one per host name)
  // are left to the process, which is `sluice -t` and exits right after.
  for (auto& l : items) (void)l.release();
}

}  // namespace sluice::config
