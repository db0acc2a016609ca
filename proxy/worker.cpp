// Worker thread: loop setup, posted work, listeners, connection bookkeeping and shutdown.
#include "proxy/worker.h"

#include <netinet/in.h>
#include <pthread.h>
#include <unistd.h>

#include <cstring>

#include "middleware/redis_client.h"
#include "proxy/downstream/connection.h"
#include "proxy/observe/log.h"

namespace sluice {

Worker::Worker(unsigned id, unsigned count)
    : id_(id),
      count_(count ? count : 1),
      readBuf_(new char[kReadBufferSize]),
      plainBuf_(new char[kReadBufferSize]) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_, onAsync);
  async_.data = this;
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_prepare_init(&loop_, &prepare_);
  prepare_.data = this;
  timers_ = std::make_unique<net::TimerHeap>(&loop_);
  connPool_.setTimers(timers_.get());
  slotQueue_ = std::make_unique<upstream::SlotQueue>(&loop_);
  services_.loop = &loop_;
  services_.metrics = &metrics_;
}

Worker::~Worker() {
  if (thread_.joinable()) thread_.join();
  uv_loop_close(&loop_);
}

uint64_t Worker::shareOf(uint64_t max, unsigned workers, unsigned id) {
  if (max == 0 || workers == 0) return 0;
  return max / workers + (id < max % workers ? 1 : 0);
}

void Worker::setSnapshot(SnapshotPtr snap) {
  snapshot_ = std::move(snap);
  const uint64_t max = snapshot_->config.server.maxConnections;
  connShare_ = shareOf(max, count_, id_);
}

void Worker::start(SnapshotPtr snap, const std::map<std::string, int>& listenFds) {
  setSnapshot(std::move(snap));
  // The Redis client lives as long as the loop (filters in flight hold its pointer); a reload
  // only reconfigures it. Created before the thread starts, so touching the loop is safe.
  services_.redis = new middleware::RedisClient(&loop_, &metrics_);
  services_.redis->configure(snapshot_->config.redis);
  for (const auto& [key, fd] : listenFds) openListener(key, fd);
  applyListenerOptions();
  uv_check_start(&check_, onCheck);
  uv_prepare_start(&prepare_, onPrepare);
  uv_update_time(&loop_);
  lastTurnMs_.store(uv_now(&loop_), std::memory_order_relaxed);
  thread_ = std::thread([this] { run(); });
}

void Worker::run() {
  // "sluice-w0", "sluice-w1"...: how top -H, perf and gdb name the worker threads.
  const std::string name = "sluice-w" + std::to_string(id_);
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Flush the last access-log lines.
  if (!accessBuf_.empty()) observe::LogWriter::instance().writeAccess(std::move(accessBuf_));
  if (exitHook_) exitHook_();
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

bool Worker::post(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (asyncClosed_) return false;
  posted_.push_back(std::move(fn));
  uv_async_send(&async_);
  return true;
}

bool Worker::poke() {
  std::lock_guard<std::mutex> lock(mu_);
  if (asyncClosed_) return false;
  uv_async_send(&async_);
  return true;
}

void Worker::onAsync(uv_async_t* h) {
  static_cast<Worker*>(h->data)->drainPosted();
}

void Worker::drainPosted() {
  std::vector<std::function<void()>> work;
  {
    std::lock_guard<std::mutex> lock(mu_);
    work.swap(posted_);
  }
  for (auto& fn : work) fn();
}

void Worker::onPrepare(uv_prepare_t* h) {
  auto* self = static_cast<Worker*>(h->data);
  self->clockValid_ = false;
  self->lastTurnMs_.store(uv_now(&self->loop_), std::memory_order_relaxed);
}

void Worker::onCheck(uv_check_t* h) {
  // Once per loop turn: hand the access lines of this turn to the writer thread.
  auto* self = static_cast<Worker*>(h->data);
  self->clockValid_ = false;  // timers run next
  // Requests waiting for a max_connections slot, if one was released during this turn.
  if (self->slotQueue_) self->slotQueue_->runPending();
  if (!self->accessBuf_.empty()) {
    std::string batch;
    batch.swap(self->accessBuf_);
    self->accessBuf_.reserve(batch.capacity());
    observe::LogWriter::instance().writeAccess(std::move(batch));
  }
}

void Worker::openListener(const std::string& key, int fd) {
  auto ls = std::make_unique<ListenSocket>();
  ls->worker = this;
  ls->key = DownstreamConnection::internListenerKey(key);
  std::string err;
  ls->acceptor = net::Acceptor::open(&loop_, fd, ls.get(), err);
  if (ls->acceptor == nullptr) {
    observe::logEvent(config::LogLevel::Error, "worker cannot listen",
                      {{"listener", key}, {"error", err}});
    return;
  }
  listeners_[key] = std::move(ls);
}

void Worker::applyListenerOptions() {
  for (auto& [key, ls] : listeners_)
    if (const ListenerSpec* spec = snapshot_->listener(key))
      ls->acceptor->setDeferAccept(spec->cfg.deferAccept);
}

void Worker::closeListener(const std::string& key) {
  auto it = listeners_.find(key);
  if (it == listeners_.end()) return;
  it->second->acceptor->close();
  listeners_.erase(it);
}

void Worker::closeListeners() {
  for (auto& [key, ls] : listeners_) ls->acceptor->close();
  listeners_.clear();
}

void Worker::accepted(ListenSocket& ls, int fd, const sockaddr_storage& peer) {
  const ListenerSpec* spec = draining_ ? nullptr : snapshot_->listener(*ls.key);
  if (spec == nullptr) {
    ::close(fd);
    return;
  }
  // A share of 0 with a cap set means more workers than max_connections: this one takes none.
  if (snapshot_->config.server.maxConnections != 0 && connCount_ >= connShare_) {
    net::abortiveClose(fd);
    return refused(ls, observe::ConnRefusal::MaxConnections, &peer);
  }
  net::PeerCounts::Place place = nullptr;
  if (const uint32_t cap = spec->cfg.maxConnectionsPerIp) {
    place = net::PeerCounts::global().acquire(ls.key, peer, cap);
    if (place == nullptr) {
      net::abortiveClose(fd);
      return refused(ls, observe::ConnRefusal::PerIp, &peer);
    }
  }
  DownstreamConnection::accept(*this, fd, peer, ls.key, *spec, place);
}

void Worker::acceptPaused(ListenSocket& ls, int err) {
  acceptPaused_ = true;  // the next connection to close resumes it
  refused(ls, observe::ConnRefusal::FdLimit, nullptr, err);
}

void Worker::refused(const ListenSocket& ls, observe::ConnRefusal why, const sockaddr_storage* peer,
                     int err) {
  const ListenerSpec* spec = snapshot_->listener(*ls.key);
  const uint32_t nameId = spec ? spec->nameId : 0;
  // Only a lack of descriptors counts as fd_limit; other accept failures are logged.
  const bool counted = why != observe::ConnRefusal::FdLimit || err == EMFILE || err == ENFILE;
  if (counted) metrics_.connectionRefused(nameId, why);
  RefusalLog& log = refusalLog_[size_t(why)];
  ++log.count;
  const uint64_t now = nowMs();
  if (log.lastMs != 0 && now - log.lastMs < kRefusalLogMs) return;
  log.lastMs = now;
  const std::string listener = spec ? spec->cfg.name : *ls.key;
  const std::string worker = std::to_string(id_);
  const std::string count = std::to_string(log.count);
  log.count = 0;
  switch (why) {
    case observe::ConnRefusal::MaxConnections:
      observe::logEvent(config::LogLevel::Warn,
                        "connections refused: this worker's share of server.max_connections is "
                        "in use",
                        {{"listener", listener},
                         {"worker", worker},
                         {"refused", count},
                         {"limit", std::to_string(connShare_)}});
      break;
    case observe::ConnRefusal::PerIp: {
      char ip[INET6_ADDRSTRLEN] = "-";
      if (peer) DownstreamConnection::formatPeer(*peer, ip, sizeof ip);
      observe::logEvent(config::LogLevel::Warn,
                        "connections refused: listener.max_connections_per_ip reached",
                        {{"listener", listener},
                         {"worker", worker},
                         {"refused", count},
                         {"client_ip", ip},
                         {"limit", std::to_string(spec ? spec->cfg.maxConnectionsPerIp : 0)}});
      break;
    }
    case observe::ConnRefusal::FdLimit:
      observe::logEvent(config::LogLevel::Warn,
                        counted ? "accept paused: out of file descriptors" : "accept paused",
                        {{"listener", listener},
                         {"worker", worker},
                         {"failures", count},
                         {"error", std::strerror(err)},
                         {"pause_ms", std::to_string(net::Acceptor::kPauseMs)}});
      break;
  }
}

void Worker::applySnapshot(SnapshotPtr snap, std::map<std::string, int> open,
                           std::vector<std::string> close) {
  post([this, snap = std::move(snap), open = std::move(open), close = std::move(close)]() {
    if (draining_) {
      for (const auto& [key, fd] : open) ::close(fd);
      return;
    }
    setSnapshot(snap);
    DownstreamConnection::dropStaleSnapshots(*this);
    balancers_.clear();
    splitter_.clear();
    if (services_.redis) services_.redis->configure(snapshot_->config.redis);
    for (const auto& key : close) closeListener(key);
    for (const auto& [key, fd] : open) openListener(key, fd);
    applyListenerOptions();  // new listeners, and kept ones whose defer_accept changed
  });
}

void PoolDrain::report(uint64_t tunnelsClosed, uint64_t idleClosed, uint64_t requests) {
  tunnels.fetch_add(tunnelsClosed, std::memory_order_relaxed);
  idle.fetch_add(idleClosed, std::memory_order_relaxed);
  inFlight.fetch_add(requests, std::memory_order_relaxed);
  // acq_rel: the last reporter sees every other worker's counts.
  if (pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  observe::logEvent(config::LogLevel::Info, "pool drained",
                    {{"route", route},
                     {"pool", pool},
                     {"tunnels", std::to_string(tunnels.load(std::memory_order_relaxed))},
                     {"connections", std::to_string(idle.load(std::memory_order_relaxed))},
                     {"in_flight", std::to_string(inFlight.load(std::memory_order_relaxed))}});
}

void Worker::drainPool(const std::shared_ptr<PoolDrain>& d) {
  const bool posted = post([this, d] {
    const uint64_t idle = connPool_.closePool(d->pool);
    uint64_t tunnels = 0, requests = 0;
    // A tunnel's connection removes itself from the list as it closes: walk a copy (objects
    // are freed by their close callbacks, on a later loop turn).
    std::vector<DownstreamConnection*> conns;
    for (DownstreamConnection* c = connHead_; c; c = c->next) conns.push_back(c);
    for (DownstreamConnection* c : conns) {
      switch (c->drainPool(d->poolNameId)) {
        case Exchange::Drained::Tunnel:
          ++tunnels;
          break;
        case Exchange::Drained::Request:
          ++requests;
          break;
        case Exchange::Drained::None:
          break;
      }
    }
    d->report(tunnels, idle, requests);
  });
  if (!posted) d->report(0, 0, 0);  // stopped: nothing of it is open here
}

void Worker::addConnection(DownstreamConnection* c) {
  c->prev = nullptr;
  c->next = connHead_;
  if (connHead_) connHead_->prev = c;
  connHead_ = c;
  ++connCount_;
}

void Worker::removeConnection(DownstreamConnection* c) {
  if (c->prev)
    c->prev->next = c->next;
  else if (connHead_ == c)
    connHead_ = c->next;
  if (c->next) c->next->prev = c->prev;
  c->next = c->prev = nullptr;
  --connCount_;
  if (acceptPaused_) {
    // Its descriptor is closed right after this: a paused listener may take a connection.
    acceptPaused_ = false;
    for (auto& [key, ls] : listeners_) ls->acceptor->resume();
  }
  if (draining_) maybeStop();
}

void Worker::shutdown(bool graceful) {
  post([this, graceful]() {
    if (!draining_) {
      draining_ = true;
      closeListeners();
    }
    // Connections remove themselves from the list as they close: walk a copy.
    std::vector<DownstreamConnection*> conns;
    for (DownstreamConnection* c = connHead_; c; c = c->next) conns.push_back(c);
    for (DownstreamConnection* c : conns) {
      if (graceful)
        c->beginShutdown();
      else
        c->forceClose();
    }
    maybeStop();
  });
}

void Worker::maybeStop() {
  if (stopped_ || connHead_) return;
  stopped_ = true;
  connPool_.closeAll();
  if (services_.redis) {
    services_.redis->closeAndDelete();  // no filter is left to call it
    services_.redis = nullptr;
  }
  onCheck(&check_);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
  timers_->close();
  slotQueue_->close();
  {
    std::lock_guard<std::mutex> lock(mu_);
    asyncClosed_ = true;
    posted_.clear();
  }
  lastTurnMs_.store(0, std::memory_order_relaxed);  // stopped on purpose: not stalled
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  // Remaining handles (upstream connections closing) finish; then uv_run returns.
}

}  // namespace sluice
