#include "proxy/release_store.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "middleware/redis_client.h"
#include "proxy/observe/log.h"
#include "proxy/upstream/pool.h"

namespace sluice {

using nlohmann::json;
using router::Release;
using router::ReleaseState;

namespace {

constexpr uint64_t kTickMs = 100;
constexpr unsigned kRedisEveryTicks = 3;  // ~300 ms between syncs
constexpr uint64_t kPeerStaleMs = 2000;   // counts older than this are ignored

// Publishes this instance's counts and (when changed) its state; returns the newest state and
// the fresh counts of the other instances. KEYS: state, counts. ARGV: instance, now ms,
// counts, version, state JSON or "", stale ms.
constexpr const char* kSyncScript = R"lua(
local cur = redis.call('GET', KEYS[1])
if ARGV[5] ~= '' then
  local curv = -1
  if cur then
    local ok, doc = pcall(cjson.decode, cur)
    if ok and type(doc) == 'table' and tonumber(doc.version) then curv = tonumber(doc.version) end
  end
  if tonumber(ARGV[4]) > curv then
    redis.call('SET', KEYS[1], ARGV[5])
    cur = ARGV[5]
  end
end
local now = tonumber(ARGV[2])
local stale = tonumber(ARGV[6])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
redis.call('PEXPIRE', KEYS[2], stale * 10)
local all = redis.call('HGETALL', KEYS[2])
local out = {}
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    local ts, counts = string.match(all[i + 1], '^(%d+) (.*)$')
    ts = tonumber(ts)
    if ts and now - ts <= stale then
      out[#out + 1] = counts
    elseif not ts or now - ts > stale * 10 then
      redis.call('HDEL', KEYS[2], all[i])
    end
  end
end
return {cur or '', out}
)lua";

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// "requests:errors,..." per pool of the split.
std::string countsBlob(const Release& r, uint64_t nowMs) {
  std::string out;
  for (size_t i = 0; i < r.arms(); ++i) {
    const auto t = r.windowTotals(i, nowMs);
    if (i) out.push_back(',');
    out += std::to_string(t.requests) + ":" + std::to_string(t.errors);
  }
  return out;
}

void addCounts(std::string_view blob, std::vector<router::OutcomeWindow::Totals>& sum) {
  size_t i = 0;
  while (!blob.empty() && i < sum.size()) {
    const size_t comma = blob.find(',');
    const std::string_view part = blob.substr(0, comma);
    unsigned long long req = 0, err = 0;
    if (std::sscanf(std::string(part).c_str(), "%llu:%llu", &req, &err) == 2) {
      sum[i].requests += req;
      sum[i].errors += err;
    }
    ++i;
    if (comma == std::string_view::npos) break;
    blob.remove_prefix(comma + 1);
  }
}

}  // namespace

struct ReleaseStore::Peer {
  ReleaseStore* store = nullptr;
  std::string route;
  middleware::RedisClient::Handle pending;
  uint64_t sentChanges = 0;  // changes() of the state sent with the pending call
  uint64_t lastOkMs = 0;
};

ReleaseStore::ReleaseStore(uv_loop_t* loop, router::ReleaseRegistry& registry)
    : loop_(loop), registry_(registry) {
  std::random_device rd;
  instance_ = (uint64_t(rd()) << 32) ^ rd();
  registry_.setWriter(instance_);
}

ReleaseStore::~ReleaseStore() {
  close();
}

void ReleaseStore::configure(const config::Config& cfg) {
  if (closed_) return;
  stateFile_ = cfg.server.stateFile;
  redis_ = cfg.server.releaseStore == config::ReleaseStore::Redis && cfg.redis.enabled;
  if (redis_ && client_ == nullptr) client_ = new middleware::RedisClient(loop_, nullptr);
  if (client_ != nullptr) {
    config::RedisSettings rs = cfg.redis;
    if (!redis_) rs.enabled = false;  // idle until release_store = "redis" comes back
    client_->configure(rs);
  }
  if (!redis_) {
    for (auto& [name, r] : registry_.all()) r->setPeerCounts({});
  }
  if (!timerStarted_) {
    uv_timer_init(loop_, &timer_);
    timer_.data = this;
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<ReleaseStore*>(t->data)->tick(); }, kTickMs,
        kTickMs);
    uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));  // never keeps the loop alive alone
    timerStarted_ = true;
  }
}

void ReleaseStore::close() {
  if (closed_) return;
  closed_ = true;
  if (timerStarted_) {
    uv_timer_stop(&timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
  }
  for (auto& [name, p] : peers_)
    if (client_ != nullptr) client_->cancel(p->pending);
  if (client_ != nullptr) client_->closeAndDelete();
  client_ = nullptr;
}

// ---------------------------------------------------------------- state documents

std::string ReleaseStore::stateJson(const Release& r, const ReleaseState& s) {
  json weights = json::object(), file = json::object();
  for (size_t i = 0; i < r.arms(); ++i) {
    weights[r.pools()[i]] = i < s.weights.size() ? s.weights[i] : 0;
    file[r.pools()[i]] = i < s.fileWeights.size() ? s.fileWeights[i] : 0;
  }
  json j = {{"route", r.route()},
            {"weights", weights},
            {"file_weights", file},
            {"source", router::sourceName(s.source)},
            {"state", router::phaseName(s.phase)},
            {"paused", s.paused},
            {"step", s.step},
            {"step_started_ms", s.stepStartedUnixMs},
            {"version", s.version},
            {"writer", hex64(s.writer)}};
  if (s.last.atUnixMs != 0) {
    j["last_decision"] = {{"at_ms", s.last.atUnixMs},
                          {"action", s.last.action},
                          {"pool", s.last.pool},
                          {"reason", s.last.reason}};
  }
  return j.dump();
}

namespace {

bool weightsFrom(const json& j, const std::vector<std::string>& pools, std::vector<uint32_t>& out) {
  if (!j.is_object() || j.size() != pools.size()) return false;
  out.clear();
  for (const auto& p : pools) {
    auto it = j.find(p);
    if (it == j.end() || !it->is_number_unsigned() || it->get<uint64_t>() > 1000000) return false;
    out.push_back(it->get<uint32_t>());
  }
  return true;
}

}  // namespace

bool ReleaseStore::parseState(const Release& r, std::string_view text, ReleaseState& out) {
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return false;
  try {
    ReleaseState s;
    if (!weightsFrom(j.value("weights", json()), r.pools(), s.weights)) return false;
    if (!weightsFrom(j.value("file_weights", json()), r.pools(), s.fileWeights)) return false;
    uint64_t total = 0;
    for (uint32_t w : s.weights) total += w;
    if (total == 0) return false;
    if (!router::parseSource(j.value("source", std::string("file")), s.source)) return false;
    if (!router::parsePhase(j.value("state", std::string("steady")), s.phase)) return false;
    s.paused = j.value("paused", false);
    s.step = j.value("step", 0u);
    s.stepStartedUnixMs = j.value("step_started_ms", int64_t(0));
    s.version = j.value("version", uint64_t(0));
    s.writer = std::strtoull(j.value("writer", std::string("0")).c_str(), nullptr, 16);
    if (auto it = j.find("last_decision"); it != j.end() && it->is_object()) {
      s.last.atUnixMs = it->value("at_ms", int64_t(0));
      s.last.action = it->value("action", std::string());
      s.last.pool = it->value("pool", std::string());
      s.last.reason = it->value("reason", std::string());
    }
    if (r.promoteRules().enabled && s.step > r.promoteRules().steps.size()) return false;
    out = std::move(s);
    return true;
  } catch (const json::exception&) {
    return false;  // a field of the wrong type
  }
}

// ---------------------------------------------------------------- state file

void ReleaseStore::restore() {
  if (stateFile_.empty()) return;
  std::ifstream in(stateFile_);
  if (!in) {
    if (errno != ENOENT)
      observe::logEvent(config::LogLevel::Warn, "cannot read the state file",
                        {{"path", stateFile_}, {"reason", std::strerror(errno)}});
    return;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  const json doc = json::parse(buf.str(), nullptr, false);
  if (!doc.is_object() || !doc.contains("routes") || !doc["routes"].is_object()) {
    observe::logEvent(config::LogLevel::Warn, "state file ignored: not a Sluice state file",
                      {{"path", stateFile_}});
    return;
  }
  for (const auto& [name, r] : registry_.all()) {
    auto it = doc["routes"].find(name);
    if (it == doc["routes"].end()) continue;
    ReleaseState s;
    if (!parseState(*r, it->dump(), s)) {
      observe::logEvent(config::LogLevel::Warn,
                        "state file: saved release does not fit the route; using the file",
                        {{"route", name}});
      continue;
    }
    if (s.fileWeights != r->fileWeights()) {
      observe::logEvent(config::LogLevel::Info,
                        "state file: the config's weights changed; they win over the saved state",
                        {{"route", name}});
      continue;
    }
    r->adopt(s, router::ReleaseSource::File);
    persisted_[name] = r->changes();
    observe::logEvent(config::LogLevel::Info, "release state restored",
                      {{"route", name},
                       {"state", std::string(router::phaseName(s.phase))},
                       {"source", std::string(router::sourceName(s.source))}});
  }
}

void ReleaseStore::writeFile() {
  if (stateFile_.empty()) return;
  bool changed = false;
  for (const auto& [name, r] : registry_.all()) {
    auto it = persisted_.find(name);
    if (it == persisted_.end() || it->second != r->changes()) changed = true;
  }
  if (!changed && persisted_.size() == registry_.all().size()) return;
  json routes = json::object();
  std::map<std::string, uint64_t> seen;
  for (const auto& [name, r] : registry_.all()) {
    seen[name] = r->changes();  // before state(): a change racing with this write comes again
    routes[name] = json::parse(stateJson(*r, r->state()));
  }
  const std::string text = json({{"sluice_state", 1}, {"routes", routes}}).dump(2) + "\n";
  const std::string tmp = stateFile_ + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0;
  size_t off = 0;
  while (ok && off < text.size()) {
    const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) off += size_t(n);
  }
  ok = ok && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  ok = ok && ::rename(tmp.c_str(), stateFile_.c_str()) == 0;
  if (!ok) {
    const int e = errno;
    ::unlink(tmp.c_str());
    // Logged once per failing change, not every tick: the next change tries again.
    observe::logEvent(config::LogLevel::Error, "cannot write the state file",
                      {{"path", stateFile_}, {"reason", std::strerror(e)}});
  }
  persisted_ = std::move(seen);
}

void ReleaseStore::flush() {
  if (!closed_) writeFile();
}

// ---------------------------------------------------------------- tick and Redis

void ReleaseStore::tick() {
  const uint64_t nowMs = upstream::monotonicMs();
  const int64_t nowUnix = observe::nowUnixMs();
  for (const auto& [name, r] : registry_.all()) r->tick(nowMs, nowUnix);
  writeFile();
  if (redis_ && ++ticks_ % kRedisEveryTicks == 0) syncRedis();
}

void ReleaseStore::syncRedis() {
  const uint64_t nowMs = upstream::monotonicMs();
  const std::string now = std::to_string(observe::nowUnixMs());
  const std::string stale = std::to_string(kPeerStaleMs);
  for (auto it = peers_.begin(); it != peers_.end();) {  // routes that went away
    if (registry_.all().count(it->first) == 0 && !it->second->pending) {
      it = peers_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [name, r] : registry_.all()) {
    auto& slot = peers_[name];
    if (!slot) {
      slot = std::make_unique<Peer>();
      slot->store = this;
      slot->route = name;
    }
    Peer& p = *slot;
    if (!client_->isUp()) {
      if (nowMs - p.lastOkMs > kPeerStaleMs) r->setPeerCounts({});  // judge alone
      continue;
    }
    if (p.pending) continue;  // the last one is still out (it times out on its own)
    const uint64_t changes = r->changes();
    const ReleaseState s = r->state();
    std::string state;
    auto pub = published_.find(name);
    if (pub == published_.end() || pub->second != changes) {
      // A fresh process (version 0, the file's state) publishes nothing: the shared state wins.
      if (s.version > 0) state = stateJson(*r, s);
    }
    p.sentChanges = changes;
    p.pending = client_->command(
        {"EVAL", kSyncScript, "2", "sluice:release:" + name, "sluice:release:" + name + ":counts",
         hex64(instance_), now, countsBlob(*r, nowMs), std::to_string(s.version), state, stale},
        &ReleaseStore::onRedisReply, &p);
  }
}

void ReleaseStore::onRedisReply(void* user, middleware::RedisStatus status,
                                const redisReply* reply) {
  auto* p = static_cast<Peer*>(user);
  p->pending = {};
  if (status != middleware::RedisStatus::Ok || reply == nullptr ||
      reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
    if (status == middleware::RedisStatus::Ok && reply != nullptr &&
        reply->type == REDIS_REPLY_ERROR)
      observe::logEvent(config::LogLevel::Warn, "release store: Redis refused the sync",
                        {{"route", p->route}, {"reason", std::string(reply->str, reply->len)}});
    return;
  }
  p->store->applyPeerReply(*p, reply);
}

void ReleaseStore::applyPeerReply(Peer& p, const redisReply* reply) {
  auto it = registry_.all().find(p.route);
  if (it == registry_.all().end()) return;
  Release& r = *it->second;
  p.lastOkMs = upstream::monotonicMs();
  published_[p.route] = p.sentChanges;
  const redisReply* cur = reply->element[0];
  const redisReply* counts = reply->element[1];
  std::vector<router::OutcomeWindow::Totals> sum(r.arms());
  if (counts->type == REDIS_REPLY_ARRAY)
    for (size_t i = 0; i < counts->elements; ++i)
      if (counts->element[i]->type == REDIS_REPLY_STRING)
        addCounts(std::string_view(counts->element[i]->str, counts->element[i]->len), sum);
  r.setPeerCounts(sum);
  if (cur->type != REDIS_REPLY_STRING || cur->len == 0) return;
  ReleaseState remote;
  if (!parseState(r, std::string_view(cur->str, cur->len), remote)) return;
  const ReleaseState local = r.state();
  const bool newer = remote.version > local.version ||
                     (remote.version == local.version && remote.writer != local.writer);
  if (!newer) return;
  r.adopt(remote, router::ReleaseSource::Peer);
  published_[p.route] = r.changes();  // what we just took is what Redis holds
  std::string weights;
  for (size_t i = 0; i < r.arms(); ++i)
    weights += (i ? "," : "") + r.pools()[i] + "=" + std::to_string(remote.weights[i]);
  observe::logEvent(config::LogLevel::Info, "release state from another instance",
                    {{"route", p.route},
                     {"state", std::string(router::phaseName(remote.phase))},
                     {"weights", weights},
                     {"decision", remote.last.action + " " + remote.last.reason}});
}

}  // namespace sluice
