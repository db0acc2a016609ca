#include "config/backend_dns.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
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

// Child process: starts every lookup at once and reports each one as it finishes, as
// {index, getaddrinfo code} records on `fd`. Never returns.
[[noreturn]] void resolveInChild(std::vector<std::unique_ptr<Lookup>>& items, int fd) {
  std::vector<gaicb*> list;
  list.reserve(items.size());
  for (const auto& l : items) list.push_back(&l->cb);
  if (getaddrinfo_a(GAI_NOWAIT, list.data(), static_cast<int>(list.size()), nullptr) != 0) _exit(1);
  std::vector<bool> reported(items.size(), false);
  for (;;) {
    std::vector<const gaicb*> pending;
    for (size_t i = 0; i < items.size(); ++i) {
      if (reported[i]) continue;
      int rc = gai_error(&items[i]->cb);
      if (rc == EAI_INPROGRESS) {
        pending.push_back(&items[i]->cb);
        continue;
      }
      reported[i] = true;
      std::array<int32_t, 2> rec{static_cast<int32_t>(i), rc};
      if (write(fd, rec.data(), sizeof rec) != static_cast<ssize_t>(sizeof rec)) _exit(1);
    }
    if (pending.empty()) _exit(0);
    gai_suspend(pending.data(), static_cast<int>(pending.size()), nullptr);
  }
}

// Reads the child's records until it is done or the budget is spent; codes of lookups that
// did not finish stay EAI_INPROGRESS.
std::vector<int> collect(int fd, size_t n) {
  std::vector<int> codes(n, EAI_INPROGRESS);
  auto deadline = std::chrono::steady_clock::now() + kBudget;
  std::array<char, 8 * 64> buf{};
  size_t have = 0;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return codes;
    pollfd pfd{fd, POLLIN, 0};
    int pr = poll(&pfd, 1, static_cast<int>(left));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return codes;
    ssize_t got = read(fd, buf.data() + have, buf.size() - have);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return codes;  // the child is done (or died: the rest count as unanswered)
    have += static_cast<size_t>(got);
    size_t used = 0;
    for (; have - used >= 8; used += 8) {
      std::array<int32_t, 2> rec{};
      std::memcpy(rec.data(), buf.data() + used, sizeof rec);
      if (rec[0] >= 0 && static_cast<size_t>(rec[0]) < n)
        codes[static_cast<size_t>(rec[0])] = rec[1];
    }
    std::memmove(buf.data(), buf.data() + used, have - used);
    have -= used;
  }
}

// The lookups run in a child process: glibc's getaddrinfo_a helper threads can still touch a
// request block after reporting it finished, and a process that exits under them crashed now
// and then. The child is killed when the budget is spent, whatever it is doing.
std::vector<int> resolveAll(std::vector<std::unique_ptr<Lookup>>& items) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return {};
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return {};
  }
  if (pid == 0) {
    close(fds[0]);
    resolveInChild(items, fds[1]);
  }
  close(fds[1]);
  auto codes = collect(fds[0], items.size());
  close(fds[0]);
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  return codes;
}

}  // namespace

void warnUnresolvedBackends(LoadResult& result) {
  if (!result.config) return;
  auto items = namesOf(*result.config);
  if (items.empty()) return;
  // The check is advisory: without a pipe or a child process, there is nothing to say.
  auto codes = resolveAll(items);
  if (codes.size() != items.size()) return;
  const std::string& file = result.config->file;
  for (size_t i = 0; i < items.size(); ++i) {
    const Lookup& l = *items[i];
    int rc = codes[i];
    if (rc == 0) continue;
    if (rc == EAI_INPROGRESS) {
      result.warnings.push_back({file, l.pos.line, l.pos.col,
                                 l.what + ": host name '" + l.host +
                                     "' did not resolve within 1s (it is resolved again while "
                                     "running)"});
    } else {
      result.warnings.push_back({file, l.pos.line, l.pos.col,
                                 l.what + ": host name '" + l.host + "' does not resolve (" +
                                     gai_strerror(rc) +
                                     "); the pool has no address for it until it does"});
    }
  }
  sortByPosition(result.warnings);
}

}  // namespace sluice::config
