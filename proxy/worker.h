// Worker: one thread, one uv_loop. It owns its listening sockets (SO_REUSEPORT, one per
// listener per worker), its client connections and their upstream connections, its upstream
// connection pools and balancer state, and its metrics. Other threads talk to it only through
// post().
#pragma once

#include <uv.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "middleware/filter.h"
#include "proxy/net/acceptor.h"
#include "proxy/net/peer_counts.h"
#include "proxy/net/pipe_pool.h"
#include "proxy/net/timer_heap.h"
#include "proxy/observe/ids.h"
#include "proxy/observe/metrics.h"
#include "proxy/router/split.h"
#include "proxy/snapshot.h"
#include "proxy/upstream/balancer.h"
#include "proxy/upstream/conn_pool.h"
#include "proxy/upstream/slot_queue.h"

namespace sluice {

class DownstreamConnection;
namespace tracing {
class SpanRing;
}

// One drain of a pool (drain_timeout), posted to every worker: each closes what it has open
// to the pool and reports its counts; the last one to report logs "pool drained".
struct PoolDrain {
  std::string route;  // whose drain_timeout passed
  std::string pool;
  uint32_t poolNameId = 0;
  std::atomic<uint64_t> tunnels{0};   // WebSocket tunnels ended
  std::atomic<uint64_t> idle{0};      // idle keep-alive connections closed
  std::atomic<uint64_t> inFlight{0};  // requests whose connection closes when they end
  std::atomic<size_t> pending{0};     // workers still to report

  void report(uint64_t tunnelsClosed, uint64_t idleClosed, uint64_t requests);
};

class Worker {
 public:
  static constexpr size_t kReadBufferSize = 64 * 1024;

  // Worker `id` of `count`: its share of server.max_connections depends on both.
  explicit Worker(unsigned id, unsigned count = 1);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread with the first snapshot and its listening fds (key -> fd).
  void start(SnapshotPtr snap, const std::map<std::string, int>& listenFds);
  // Runs `fn` on the worker's loop (thread-safe). False once the worker has stopped.
  bool post(std::function<void()> fn);
  // Liveness (any thread): the loop time (monotonic ms) of this worker's last loop turn; 0 once
  // it stopped on purpose. poke() makes an idle loop take one turn (the main thread's
  // heartbeat); false once the worker has stopped.
  uint64_t lastTurnMs() const { return lastTurnMs_.load(std::memory_order_relaxed); }
  bool poke();
  // A new config generation: listeners to open (key -> fd) and keys to close.
  void applySnapshot(SnapshotPtr snap, std::map<std::string, int> open,
                     std::vector<std::string> close);
  // drain_timeout: close this worker's tunnels and idle connections to `d->pool`, mark its
  // requests in flight there so that their connections are not pooled, and report to `d`.
  void drainPool(const std::shared_ptr<PoolDrain>& d);
  // Graceful: stop accepting, finish in-flight, close idle; the thread ends when nothing is
  // left. Fast: close everything now.
  void shutdown(bool graceful);
  void join();
  // Called on the worker thread when its loop has ended.
  void setExitHook(std::function<void()> fn) { exitHook_ = std::move(fn); }

  // Tests drive a Worker's objects without its thread: the snapshot they see.
  void setSnapshotForTest(SnapshotPtr snap) { snapshot_ = std::move(snap); }

  // --- worker-thread side ---
  unsigned id() const { return id_; }
  uv_loop_t* loop() { return &loop_; }
  const SnapshotPtr& snapshot() const { return snapshot_; }
  char* readBuffer() { return readBuf_.get(); }
  // Decrypted TLS input lands here (kReadBufferSize bytes).
  char* plainBuffer() { return plainBuf_.get(); }
  observe::WorkerMetrics& metrics() { return metrics_; }
  observe::IdGenerator& ids() { return ids_; }
  upstream::ConnPool& connPool() { return connPool_; }
  // Spare pipes for splicing response bodies backend -> client.
  net::PipePool& pipes() { return pipes_; }
  // Client connection deadlines (one libuv timer for all of them).
  net::TimerHeap& timers() { return *timers_; }
  upstream::Balancer& balancer(const upstream::Pool* pool) { return balancers_.get(*pool); }
  // Round-robin state of the routes' traffic splits.
  router::Splitter& splitter() { return splitter_; }
  // Requests waiting for a max_connections slot.
  upstream::SlotQueue& slotQueue() { return *slotQueue_; }
  std::string& accessBuffer() { return accessBuf_; }
  // [tracing]: this worker's span ring (owned by the exporter), null until tracing is first
  // configured. Set before start() or through post().
  tracing::SpanRing* spanRing() const { return spanRing_; }
  void setSpanRing(tracing::SpanRing* ring) { spanRing_ = ring; }
  middleware::WorkerServices& services() { return services_; }
  bool draining() const { return draining_; }
  uint64_t nowMs() const { return uv_now(const_cast<uv_loop_t*>(&loop_)); }
  // Monotonic nanoseconds, read once per loop phase (like nginx's cached time): the first call
  // after the loop woke up reads the clock, later calls in the same phase reuse it. Request
  // and upstream durations are measured with it (no clock read per request).
  uint64_t nowNs() {
    if (!clockValid_) {
      clockNs_ = uv_hrtime();
      clockValid_ = true;
    }
    return clockNs_;
  }

  void addConnection(DownstreamConnection* c);
  void removeConnection(DownstreamConnection* c);
  // Client connections open on this worker, and how many it may hold (0 = no cap).
  uint64_t connectionCount() const { return connCount_; }
  uint64_t connectionShare() const { return connShare_; }
  // Worker `id`'s share of `max` connections split over `workers` (the first max % workers
  // workers take one more); 0 stays 0 (no cap).
  static uint64_t shareOf(uint64_t max, unsigned workers, unsigned id);

 private:
  // One listening socket of this worker (its own SO_REUSEPORT socket of a listener address).
  struct ListenSocket final : net::Acceptor::Handler {
    Worker* worker = nullptr;
    const std::string* key = nullptr;  // interned
    net::Acceptor* acceptor = nullptr;
    void onAccepted(int fd, const sockaddr_storage& peer) override {
      worker->accepted(*this, fd, peer);
    }
    void onAcceptPaused(int err) override { worker->acceptPaused(*this, err); }
  };
  // Warnings about refused connections: at most one per reason every kRefusalLogMs.
  struct RefusalLog {
    uint64_t lastMs = 0;
    uint64_t count = 0;  // refusals since the last line
  };
  static constexpr uint64_t kRefusalLogMs = 10000;

  void run();
  void openListener(const std::string& key, int fd);
  // Socket options of the listening sockets from the current snapshot (defer_accept).
  void applyListenerOptions();
  void closeListener(const std::string& key);
  void closeListeners();
  void accepted(ListenSocket& ls, int fd, const sockaddr_storage& peer);
  void acceptPaused(ListenSocket& ls, int err);
  void refused(const ListenSocket& ls, observe::ConnRefusal why, const sockaddr_storage* peer,
               int err = 0);
  void setSnapshot(SnapshotPtr snap);
  void drainPosted();
  void maybeStop();
  static void onAsync(uv_async_t* h);
  static void onCheck(uv_check_t* h);
  static void onPrepare(uv_prepare_t* h);

  unsigned id_;
  unsigned count_;
  uv_loop_t loop_{};
  uv_async_t async_{};
  uv_check_t check_{};
  uv_prepare_t prepare_{};  // invalidates the cached clock before the loop blocks
  uint64_t clockNs_ = 0;
  bool clockValid_ = false;
  std::atomic<uint64_t> lastTurnMs_{0};  // set in onPrepare, read by the heartbeat
  std::unique_ptr<net::TimerHeap> timers_;
  std::unique_ptr<upstream::SlotQueue> slotQueue_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::function<void()>> posted_;
  SnapshotPtr snapshot_;
  std::map<std::string, std::unique_ptr<ListenSocket>> listeners_;
  std::unique_ptr<char[]> readBuf_;
  std::unique_ptr<char[]> plainBuf_;
  observe::WorkerMetrics metrics_;
  observe::IdGenerator ids_;
  upstream::ConnPool connPool_;
  net::PipePool pipes_;
  upstream::BalancerSet balancers_;
  router::Splitter splitter_;
  std::string accessBuf_;
  tracing::SpanRing* spanRing_ = nullptr;
  middleware::WorkerServices services_;
  std::function<void()> exitHook_;
  DownstreamConnection* connHead_ = nullptr;  // intrusive list of open client connections
  uint64_t connCount_ = 0;                    // its length
  uint64_t connShare_ = 0;                    // of server.max_connections; 0 = no cap
  bool acceptPaused_ = false;                 // a listener waits for a free descriptor
  RefusalLog refusalLog_[3];                  // by observe::ConnRefusal
  bool draining_ = false;
  bool stopped_ = false;
  bool asyncClosed_ = false;  // guarded by mu_
};

}  // namespace sluice
