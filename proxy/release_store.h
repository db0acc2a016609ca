// ReleaseStore (main thread): the release controller's clock and memory.
//  - Every 100 ms: the promotion tick of every release (proxy/router/release.h), and the
//    state file (server.state_file) rewritten atomically (temp file + rename) when any
//    release changed: live weights, rollbacks, promotion steps and the last decision.
//  - At startup: a release whose route has the same pools and the same file weights as when
//    its state was saved takes that state back; otherwise the file's weights win.
//  - With release_store = "redis", every 250 ms per split route, one EVAL that publishes this
//    instance's window counts and (when it changed) its state, and reads back the newest state
//    and the other instances' counts: a rollback decided by one instance reaches the others
//    within a second, and judgements count every instance's requests. Redis down: each
//    instance keeps its last state and judges on its own counts.
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "config/schema.h"
#include "proxy/router/release.h"

struct redisReply;
namespace sluice::middleware {
class RedisClient;
enum class RedisStatus;
}  // namespace sluice::middleware

namespace sluice {

class ReleaseStore {
 public:
  ReleaseStore(uv_loop_t* loop, router::ReleaseRegistry& registry);
  ~ReleaseStore();
  ReleaseStore(const ReleaseStore&) = delete;
  ReleaseStore& operator=(const ReleaseStore&) = delete;

  // Applies [server] state_file / release_store and [redis]; starts the timer on first call.
  void configure(const config::Config& cfg);
  // Startup: takes back the states saved in the state file (see above).
  void restore();
  // Persists now if anything changed (after an admin action).
  void flush();
  // Stops the timer and the Redis connection (shutdown).
  void close();

  // The state file's text for the current releases (also what Redis holds per route).
  static std::string stateJson(const router::Release& r, const router::ReleaseState& s);
  // Parses one route's state; false when it does not fit `r` (other pools, bad document).
  static bool parseState(const router::Release& r, std::string_view json,
                         router::ReleaseState& out);

 private:
  struct Peer;  // one route's Redis exchange in flight
  void tick();
  void writeFile();
  void syncRedis();
  static void onRedisReply(void* user, middleware::RedisStatus status, const redisReply* reply);
  void applyPeerReply(Peer& p, const redisReply* reply);

  uv_loop_t* loop_;
  router::ReleaseRegistry& registry_;
  uv_timer_t timer_{};
  bool timerStarted_ = false;
  bool closed_ = false;
  std::string stateFile_;
  bool redis_ = false;
  middleware::RedisClient* client_ = nullptr;  // closeAndDelete()d, never deleted
  std::map<std::string, uint64_t> persisted_;  // route -> changes() written to the file
  std::map<std::string, uint64_t> published_;  // route -> changes() sent to Redis
  std::map<std::string, std::unique_ptr<Peer>> peers_;
  uint64_t instance_ = 0;
  unsigned ticks_ = 0;
};

}  // namespace sluice
