// Resolver: asynchronous DNS for host-name backends, on the main thread's loop.
//
// Every host name used by a backend is resolved with uv_getaddrinfo at start and then every
// `resolve_interval` (the shortest of the pools using it), and again soon after a connect is
// refused (requestResolve() from a worker). All returned addresses become backends. When the
// set of addresses of a name changes, `onChange` runs (the Server then rebuilds the snapshot
// from the running config and posts it to the workers, like a reload that is not counted as
// one). A transient failure (EAI_AGAIN, ...) keeps the last known addresses; "no such name"
// empties them.
//
// Test hook: names listed in the file $SLUICE_TEST_HOSTS names are answered from it, re-read
// at every resolution, instead of the system resolver (config/test_hosts.h).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/schema.h"

namespace sluice::upstream {

class Resolver {
 public:
  using AddressBook = std::map<std::string, std::vector<std::string>>;

  Resolver(uv_loop_t* loop, std::function<void()> onChange);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Starts resolving names new in `cfg`, re-times changed intervals, forgets removed names.
  void sync(const config::Config& cfg);
  // Re-resolve every name now (a connect was refused); at most once per second per name.
  void resolveAllSoon();
  // Names resolved so far -> sorted IPs.
  const AddressBook& book() const { return book_; }
  // Stops timers and lookups (shutdown).
  void close();

 private:
  struct Entry;
  void start(Entry* e);
  void finish(Entry* e, int status, const struct addrinfo* res,
              const std::vector<std::string>* fake);
  void release(Entry* e);
  static void onTimer(uv_timer_t* t);
  static void onResolved(uv_getaddrinfo_t* req, int status, struct addrinfo* res);

  uv_loop_t* loop_;
  std::function<void()> onChange_;
  std::map<std::string, Entry*> entries_;
  AddressBook book_;
  bool closed_ = false;
};

}  // namespace sluice::upstream
