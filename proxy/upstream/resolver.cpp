// Asynchronous re-resolution of host-name backends (see resolver.h).
#include "proxy/upstream/resolver.h"

#include <netdb.h>

#include <algorithm>

#include "config/test_hosts.h"
#include "config/units.h"
#include "proxy/observe/log.h"
#include "proxy/upstream/pool.h"

namespace sluice::upstream {

using config::LogLevel;

struct Resolver::Entry {
  Resolver* owner = nullptr;
  std::string host;
  uint64_t intervalMs = 5000;
  uv_timer_t timer{};
  uv_getaddrinfo_t req{};
  bool inflight = false;
  bool timerClosed = false;
  bool removed = false;
  bool failing = false;  // last lookup failed (logged once per failure streak)
  uint64_t lastStartMs = 0;
};

Resolver::Resolver(uv_loop_t* loop, std::function<void()> onChange)
    : loop_(loop), onChange_(std::move(onChange)) {}

Resolver::~Resolver() {
  close();
}

void Resolver::sync(const config::Config& cfg) {
  if (closed_) return;
  std::map<std::string, uint64_t> wanted;  // host -> shortest interval
  for (const auto& pc : cfg.pools)
    for (const auto& bc : pc.backends) {
      sockaddr_storage ss;
      socklen_t len;
      if (config::toSockaddr(bc.hostPort, ss, len)) continue;
      uint64_t iv = uint64_t(pc.resolveInterval.count());
      auto [it, inserted] = wanted.emplace(bc.hostPort.host, iv);
      if (!inserted) it->second = std::min(it->second, iv);
    }
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    book_.erase(it->first);
    release(it->second);
    it = entries_.erase(it);
  }
  for (const auto& [host, iv] : wanted) {
    auto it = entries_.find(host);
    if (it != entries_.end()) {
      Entry* e = it->second;
      if (e->intervalMs != iv) {
        e->intervalMs = iv;
        if (!e->inflight) uv_timer_start(&e->timer, onTimer, iv, 0);
      }
      continue;
    }
    auto* e = new Entry;
    e->owner = this;
    e->host = host;
    e->intervalMs = iv;
    uv_timer_init(loop_, &e->timer);
    e->timer.data = e;
    e->req.data = e;
    entries_[host] = e;
    start(e);
  }
}

void Resolver::resolveAllSoon() {
  if (closed_) return;
  uint64_t now = monotonicMs();
  for (auto& [_, e] : entries_)
    if (!e->inflight && now - e->lastStartMs >= 1000) {
      uv_timer_stop(&e->timer);
      start(e);
    }
}

void Resolver::start(Entry* e) {
  e->lastStartMs = monotonicMs();
  std::vector<std::string> fake;
  if (config::testHostAddresses(e->host, fake)) {
    finish(e, 0, nullptr, &fake);
    return;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(loop_, &e->req, onResolved, e->host.c_str(), nullptr, &hints);
  if (rc != 0) {
    finish(e, rc, nullptr, nullptr);
    return;
  }
  e->inflight = true;
}

void Resolver::onResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* e = static_cast<Entry*>(req->data);
  e->inflight = false;
  if (e->removed || e->owner->closed_) {
    if (res) uv_freeaddrinfo(res);
    if (e->removed && e->timerClosed) delete e;
    return;
  }
  e->owner->finish(e, status, res, nullptr);
  if (res) uv_freeaddrinfo(res);
}

void Resolver::finish(Entry* e, int status, const addrinfo* res,
                      const std::vector<std::string>* fake) {
  std::vector<std::string> ips;
  bool ok = status == 0;
  if (fake) {
    ips = *fake;
  } else if (ok) {
    for (const addrinfo* a = res; a; a = a->ai_next) {
      char buf[64] = {0};
      if (a->ai_family == AF_INET)
        uv_ip4_name(reinterpret_cast<const sockaddr_in*>(a->ai_addr), buf, sizeof buf);
      else if (a->ai_family == AF_INET6)
        uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(a->ai_addr), buf, sizeof buf);
      else
        continue;
      ips.emplace_back(buf);
    }
  }
  std::sort(ips.begin(), ips.end());
  ips.erase(std::unique(ips.begin(), ips.end()), ips.end());
  if (!ok && status != UV_EAI_NONAME && status != UV_EAI_NODATA) {
    // Transient: keep what we had.
    if (!e->failing)
      observe::logEvent(LogLevel::Warn, "backend host name lookup failed, keeping last addresses",
                        {{"host", e->host}, {"error", uv_strerror(status)}});
    e->failing = true;
  } else {
    if (!ok && !e->failing)
      observe::logEvent(LogLevel::Warn, "backend host name does not resolve",
                        {{"host", e->host}, {"error", uv_strerror(status)}});
    e->failing = !ok;
    auto it = book_.find(e->host);
    bool changed = it == book_.end() ? !ips.empty() : it->second != ips;
    if (changed) {
      std::string list;
      for (const auto& ip : ips) list += (list.empty() ? "" : ",") + ip;
      observe::logEvent(LogLevel::Info, "backend addresses changed",
                        {{"host", e->host}, {"addresses", list.empty() ? "-" : list}});
      if (ips.empty())
        book_.erase(e->host);
      else
        book_[e->host] = ips;
      if (onChange_) onChange_();
    }
  }
  uv_timer_start(&e->timer, onTimer, e->intervalMs, 0);
}

void Resolver::onTimer(uv_timer_t* t) {
  auto* e = static_cast<Entry*>(t->data);
  if (!e->inflight) e->owner->start(e);
}

void Resolver::release(Entry* e) {
  e->removed = true;
  uv_timer_stop(&e->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&e->timer), [](uv_handle_t* h) {
    auto* en = static_cast<Entry*>(h->data);
    en->timerClosed = true;
    if (!en->inflight) delete en;
  });
  if (e->inflight) uv_cancel(reinterpret_cast<uv_req_t*>(&e->req));
}

void Resolver::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& [_, e] : entries_) release(e);
  entries_.clear();
}

}  // namespace sluice::upstream
