#include "proxy/router/release.h"

#include <algorithm>
#include <bit>
#include <cstdio>

#include "proxy/observe/log.h"

namespace sluice::router {

// ---------------------------------------------------------------- OutcomeWindow

void OutcomeWindow::setWindow(uint64_t windowMs) {
  const uint64_t slot = std::max<uint64_t>(1, windowMs / kSlots);
  if (slot != slotMs_.load(std::memory_order_relaxed)) {
    slotMs_.store(slot, std::memory_order_relaxed);
    clear();  // periods of the old slot length mean nothing under the new one
  }
}

size_t OutcomeWindow::latencyBucket(uint64_t us) {
  if (us < 4) return size_t(us);
  const int msb = 63 - std::countl_zero(us);
  const size_t b = size_t(4 * (msb - 1)) + size_t((us >> (msb - 2)) & 3);
  return std::min(b, kLatencyBuckets - 1);
}

uint64_t OutcomeWindow::bucketMidUs(size_t bucket) {
  if (bucket < 4) return bucket;
  const int msb = int(bucket / 4) + 1;
  const uint64_t width = uint64_t(1) << (msb - 2);
  return (4 + bucket % 4) * width + width / 2;
}

void OutcomeWindow::record(uint64_t nowMs, bool request, bool error, uint64_t latencyUs) {
  const uint64_t period = nowMs / slotMs_.load(std::memory_order_relaxed) + 1;
  Slot& s = slots_[period % kSlots];
  uint64_t held = s.period.load(std::memory_order_acquire);
  if (held < period && s.period.compare_exchange_strong(held, period)) {
    s.requests.store(0, std::memory_order_relaxed);
    s.errors.store(0, std::memory_order_relaxed);
    for (auto& b : s.latency) b.store(0, std::memory_order_relaxed);
  }
  if (request) {
    s.requests.fetch_add(1, std::memory_order_relaxed);
    s.latency[latencyBucket(latencyUs)].fetch_add(1, std::memory_order_relaxed);
  }
  if (error) s.errors.fetch_add(1, std::memory_order_relaxed);
}

bool OutcomeWindow::live(const Slot& s, uint64_t period) const {
  const uint64_t p = s.period.load(std::memory_order_acquire);
  return p != 0 && p <= period + 1 && p + kSlots > period;
}

OutcomeWindow::Totals OutcomeWindow::totals(uint64_t nowMs) const {
  const uint64_t period = nowMs / slotMs_.load(std::memory_order_relaxed) + 1;
  Totals t;
  for (const Slot& s : slots_) {
    if (!live(s, period)) continue;
    t.requests += s.requests.load(std::memory_order_relaxed);
    t.errors += s.errors.load(std::memory_order_relaxed);
  }
  return t;
}

uint64_t OutcomeWindow::p99Us(uint64_t nowMs) const {
  const uint64_t period = nowMs / slotMs_.load(std::memory_order_relaxed) + 1;
  std::array<uint64_t, kLatencyBuckets> sum{};
  uint64_t total = 0;
  for (const Slot& s : slots_) {
    if (!live(s, period)) continue;
    for (size_t b = 0; b < kLatencyBuckets; ++b) {
      const uint32_t n = s.latency[b].load(std::memory_order_relaxed);
      sum[b] += n;
      total += n;
    }
  }
  if (total == 0) return 0;
  const uint64_t rank = (total * 99 + 99) / 100;  // ceil(0.99 * total)
  uint64_t seen = 0;
  for (size_t b = 0; b < kLatencyBuckets; ++b) {
    seen += sum[b];
    if (seen >= rank) return bucketMidUs(b);
  }
  return bucketMidUs(kLatencyBuckets - 1);
}

void OutcomeWindow::clear() {
  for (Slot& s : slots_) {
    s.period.store(0, std::memory_order_relaxed);
    s.requests.store(0, std::memory_order_relaxed);
    s.errors.store(0, std::memory_order_relaxed);
    for (auto& b : s.latency) b.store(0, std::memory_order_relaxed);
  }
}

// ---------------------------------------------------------------- names

namespace {

constexpr std::string_view kSources[] = {"file", "api", "rollback", "promote", "peer"};
constexpr std::string_view kPhases[] = {"steady", "promoting", "rolled_back", "complete"};

std::string formatRate(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", x);
  return buf;
}

std::string formatMs(uint64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", double(us) / 1000.0);
  return buf;
}

std::vector<uint32_t> weightsOf(const config::RouteConfig& rc) {
  std::vector<uint32_t> w;
  for (const auto& a : rc.split) w.push_back(a.weight);
  return w;
}

}  // namespace

std::string_view sourceName(ReleaseSource s) {
  return kSources[size_t(s)];
}
std::string_view phaseName(ReleasePhase p) {
  return kPhases[size_t(p)];
}

bool parseSource(std::string_view s, ReleaseSource& out) {
  for (size_t i = 0; i < std::size(kSources); ++i)
    if (kSources[i] == s) return out = ReleaseSource(i), true;
  return false;
}

bool parsePhase(std::string_view s, ReleasePhase& out) {
  for (size_t i = 0; i < std::size(kPhases); ++i)
    if (kPhases[i] == s) return out = ReleasePhase(i), true;
  return false;
}

// ---------------------------------------------------------------- Release

Release::Release(std::string route, std::vector<std::string> pools)
    : route_(std::move(route)),
      pools_(std::move(pools)),
      live_(std::make_unique<std::atomic<uint32_t>[]>(pools_.size())),
      cumulative_(std::make_unique<std::atomic<uint64_t>[]>(pools_.size())),
      peerRequests_(std::make_unique<std::atomic<uint64_t>[]>(pools_.size())),
      peerErrors_(std::make_unique<std::atomic<uint64_t>[]>(pools_.size())) {
  for (size_t i = 0; i < pools_.size(); ++i) {
    windows_.push_back(std::make_unique<OutcomeWindow>());
    ownRollbacks_.push_back(std::make_unique<std::atomic<uint64_t>>(0));
    rollbacks_.push_back(ownRollbacks_.back().get());
  }
}

std::vector<uint32_t> Release::fileWeights() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fileWeights_;
}

uint32_t Release::stepsAtOrBelow(uint32_t pct) const {
  return uint32_t(std::upper_bound(promote_.steps.begin(), promote_.steps.end(), pct) -
                  promote_.steps.begin());
}

uint32_t Release::canaryPercent(const std::vector<uint32_t>& w) const {
  if (w.size() != 2) return 0;
  const uint64_t total = uint64_t(w[0]) + w[1];
  return total == 0 ? 0 : uint32_t((uint64_t(w[1]) * 100 + total / 2) / total);
}

void Release::configure(const config::RouteConfig& rc, bool reset, int64_t nowUnixMs) {
  std::lock_guard<std::mutex> lock(mu_);
  rollback_ = rc.rollback;
  promote_ = rc.promote;
  fileWeights_ = weightsOf(rc);
  for (auto& w : windows_) w->setWindow(uint64_t(rollback_.window.count()));
  if (!reset && !st_.weights.empty()) return;
  ReleaseState s;
  s.weights = fileWeights_;
  s.fileWeights = fileWeights_;
  // A changed file is news for the other instances; a process that just started is not.
  const bool fileChanged = !st_.fileWeights.empty() && st_.fileWeights != fileWeights_;
  s.version = st_.version + (fileChanged ? 1 : 0);
  s.writer = fileChanged ? writerId_ : st_.writer;
  s.last = st_.last;
  const uint32_t pct = canaryPercent(s.weights);
  if (promote_.enabled && pct > 0) {
    s.phase = ReleasePhase::Promoting;
    s.step = stepsAtOrBelow(pct);
    if (s.step == promote_.steps.size()) s.phase = ReleasePhase::Complete;
    s.stepStartedUnixMs = nowUnixMs;
  }
  st_ = std::move(s);
  publishWeights(st_.weights);
  stepBase_ = cumulative_[1 % pools_.size()].load(std::memory_order_relaxed);
  changes_.fetch_add(1, std::memory_order_release);
}

void Release::publishWeights(const std::vector<uint32_t>& w) {
  for (size_t i = 0; i < pools_.size() && i < w.size(); ++i)
    live_[i].store(w[i], std::memory_order_relaxed);
  st_.weights = w;
  weightsVersion_.fetch_add(1, std::memory_order_release);
}

void Release::changed(int64_t nowUnixMs, std::string action, std::string pool, std::string reason,
                      ReleaseSource source) {
  st_.source = source;
  st_.last = {nowUnixMs, std::move(action), std::move(pool), std::move(reason)};
  st_.version++;
  st_.writer = writerId_;
  changes_.fetch_add(1, std::memory_order_release);
}

bool Release::takeOut(size_t arm, std::vector<uint32_t>& w) {
  if (arm == 0 || w[arm] == 0) return false;
  w[0] += w[arm];
  w[arm] = 0;
  windows_[arm]->clear();  // a restored canary is judged afresh
  rollbacks_[arm]->fetch_add(1, std::memory_order_relaxed);
  return true;
}

OutcomeWindow::Totals Release::windowTotals(size_t arm, uint64_t nowMs) const {
  return windows_[arm]->totals(nowMs);
}

void Release::setPeerCounts(const std::vector<OutcomeWindow::Totals>& peers) {
  for (size_t i = 0; i < pools_.size(); ++i) {
    const OutcomeWindow::Totals t = i < peers.size() ? peers[i] : OutcomeWindow::Totals{};
    peerRequests_[i].store(t.requests, std::memory_order_relaxed);
    peerErrors_[i].store(t.errors, std::memory_order_relaxed);
  }
}

std::string Release::violation(size_t arm, uint64_t nowMs,
                               const config::RollbackRules& rules) const {
  OutcomeWindow::Totals t = windows_[arm]->totals(nowMs);
  t.requests += peerRequests_[arm].load(std::memory_order_relaxed);
  t.errors += peerErrors_[arm].load(std::memory_order_relaxed);
  if (t.requests < rules.minRequests) return {};
  // Built only for a verdict: this runs on every judged outcome.
  auto over = [&] {
    return " requests in the last " + std::to_string(rules.window.count()) + "ms";
  };
  if (rules.maxErrorRate >= 0 && double(t.errors) > rules.maxErrorRate * double(t.requests)) {
    return "error rate " + formatRate(double(t.errors) / double(t.requests)) + " > " +
           formatRate(rules.maxErrorRate) + " (" + std::to_string(t.errors) + " errors in " +
           std::to_string(t.requests) + over() + ")";
  }
  if (rules.maxP99Ratio > 0) {
    // Percentiles cost more than counts: at most every 50 ms per route.
    int64_t due = nextP99CheckMs_.load(std::memory_order_relaxed);
    if (int64_t(nowMs) < due || !nextP99CheckMs_.compare_exchange_strong(due, int64_t(nowMs) + 50,
                                                                         std::memory_order_relaxed))
      return {};
    const OutcomeWindow::Totals base = windows_[0]->totals(nowMs);
    if (base.requests < rules.minRequests) return {};  // nothing to compare with
    const uint64_t c = windows_[arm]->p99Us(nowMs), b = windows_[0]->p99Us(nowMs);
    if (b > 0 && double(c) > rules.maxP99Ratio * double(b)) {
      return "p99 " + formatMs(c) + "ms > " + formatRate(rules.maxP99Ratio) + " x baseline p99 " +
             formatMs(b) + "ms (" + std::to_string(t.requests) + over() + ")";
    }
  }
  return {};
}

void Release::onOutcome(size_t arm, const upstream::AttemptOutcome& o, uint64_t nowMs,
                        const config::RollbackRules& rules) {
  if (arm >= pools_.size()) return;
  const bool failure = o.kind == upstream::AttemptOutcome::Kind::Failure;
  if (failure && !o.blame) return;  // a stale pooled connection, retried: not the backend's
  const bool request = !(failure && o.afterHead);  // a broken response was counted at its head
  windows_[arm]->record(nowMs, request, failure || o.status >= 500, o.latencyNs / 1000);
  if (request) cumulative_[arm].fetch_add(1, std::memory_order_relaxed);
  if (arm == 0 || !rules.enabled || weight(arm) == 0) return;
  std::string why = violation(arm, nowMs, rules);
  if (why.empty()) return;
  std::string weights;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<uint32_t> w = st_.weights;
    if (!takeOut(arm, w)) return;  // another worker was first
    publishWeights(w);
    st_.phase = ReleasePhase::RolledBack;
    changed(observe::nowUnixMs(), "rollback", pools_[arm], why, ReleaseSource::Rollback);
  }
  observe::logEvent(config::LogLevel::Warn, "canary rolled back",
                    {{"route", route_}, {"pool", pools_[arm]}, {"reason", why}});
}

ReleaseResult Release::setWeights(const std::vector<uint32_t>& w, int64_t nowUnixMs) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 1; i < pools_.size() && i < w.size(); ++i)
    if (st_.weights[i] == 0 && w[i] > 0) windows_[i]->clear();
  publishWeights(w);
  if (st_.phase == ReleasePhase::Promoting) {
    st_.paused = true;  // the operator steers now; resume hands it back
  } else {
    st_.phase = ReleasePhase::Steady;
  }
  if (promote_.enabled) {
    const uint32_t pct = canaryPercent(w);
    st_.step = stepsAtOrBelow(pct);
  }
  changed(nowUnixMs, "weights", "", "admin API", ReleaseSource::Api);
  return {};
}

ReleaseResult Release::rollback(std::string_view reason, ReleaseSource source, int64_t nowUnixMs) {
  std::string taken;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<uint32_t> w = st_.weights;
    for (size_t i = 1; i < pools_.size(); ++i)
      if (takeOut(i, w)) taken += (taken.empty() ? "" : ",") + pools_[i];
    if (taken.empty()) return {409, "nothing_to_roll_back", "no canary pool takes traffic"};
    publishWeights(w);
    st_.phase = ReleasePhase::RolledBack;
    st_.paused = false;
    changed(nowUnixMs, "rollback", taken, std::string(reason), source);
  }
  observe::logEvent(config::LogLevel::Warn, "canary rolled back",
                    {{"route", route_}, {"pool", taken}, {"reason", std::string(reason)}});
  return {};
}

void Release::enterStep(size_t index, int64_t nowUnixMs) {
  const uint32_t pct = promote_.steps[index];
  publishWeights({100 - pct, pct});
  st_.step = uint32_t(index + 1);
  st_.stepStartedUnixMs = nowUnixMs;
  stepBase_ = cumulative_[1].load(std::memory_order_relaxed);
  st_.phase = st_.step == promote_.steps.size() ? ReleasePhase::Complete : ReleasePhase::Promoting;
}

ReleaseResult Release::promote(int64_t nowUnixMs) {
  std::string msg;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pools_.size() != 2)
      return {409, "cannot_promote", "promotion needs a split of exactly two pools"};
    if (st_.phase == ReleasePhase::Complete)
      return {409, "already_complete", "the release reached its last step"};
    if (!promote_.enabled) {
      if (st_.weights[1] > 0) windows_[1]->clear();
      publishWeights({0, 100});
      st_.phase = ReleasePhase::Complete;
      st_.paused = false;
      msg = "100";
    } else {
      const uint32_t pct = canaryPercent(st_.weights);
      size_t next = size_t(stepsAtOrBelow(pct));
      if (st_.phase == ReleasePhase::RolledBack) next = 0;
      if (next >= promote_.steps.size()) next = promote_.steps.size() - 1;
      if (st_.weights[1] == 0) windows_[1]->clear();
      enterStep(next, nowUnixMs);
      if (st_.phase == ReleasePhase::Complete) st_.paused = false;
      msg = std::to_string(promote_.steps[next]);
    }
    changed(nowUnixMs, st_.phase == ReleasePhase::Complete ? "complete" : "promote", pools_[1],
            "admin API: canary at " + msg + "%", ReleaseSource::Api);
  }
  observe::logEvent(config::LogLevel::Info, "release promoted",
                    {{"route", route_}, {"pool", pools_[1]}, {"percent", msg}, {"by", "api"}});
  return {};
}

ReleaseResult Release::pause(int64_t nowUnixMs) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!promote_.enabled) return {404, "no_promote", "the route has no [route.promote]"};
  if (!st_.paused) {
    st_.paused = true;
    changed(nowUnixMs, "pause", "", "admin API", ReleaseSource::Api);
  }
  return {};
}

ReleaseResult Release::resume(int64_t nowUnixMs) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!promote_.enabled) return {404, "no_promote", "the route has no [route.promote]"};
  if (st_.phase != ReleasePhase::Promoting && canaryPercent(st_.weights) == 0)
    return {409, "not_promoting", "the canary takes no traffic: promote starts the release"};
  if (st_.phase == ReleasePhase::Complete)
    return {409, "already_complete", "the release reached its last step"};
  st_.paused = false;
  st_.phase = ReleasePhase::Promoting;
  st_.stepStartedUnixMs = nowUnixMs;  // a whole interval from now
  stepBase_ = cumulative_[1].load(std::memory_order_relaxed);
  changed(nowUnixMs, "resume", "", "admin API", ReleaseSource::Api);
  return {};
}

bool Release::tick(uint64_t nowMs, int64_t nowUnixMs) {
  std::string pct;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!promote_.enabled || st_.phase != ReleasePhase::Promoting || st_.paused) return false;
    if (nowUnixMs - st_.stepStartedUnixMs < promote_.interval.count()) return false;
    if (rollback_.enabled) {
      const uint64_t seen = cumulative_[1].load(std::memory_order_relaxed) - stepBase_;
      if (seen < rollback_.minRequests) return false;             // not enough evidence yet
      if (!violation(1, nowMs, rollback_).empty()) return false;  // its outcome rolls it back
    }
    if (st_.step >= promote_.steps.size()) return false;
    enterStep(st_.step, nowUnixMs);
    pct = std::to_string(promote_.steps[st_.step - 1]);
    const bool done = st_.phase == ReleasePhase::Complete;
    changed(nowUnixMs, done ? "complete" : "promote", pools_[1],
            done ? "last step reached" : "healthy for the whole interval", ReleaseSource::Promote);
  }
  observe::logEvent(
      config::LogLevel::Info, pct == "100" ? "release complete" : "release promoted",
      {{"route", route_}, {"pool", pools_[1]}, {"percent", pct}, {"by", "controller"}});
  return true;
}

ReleaseState Release::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return st_;
}

void Release::adopt(const ReleaseState& s, ReleaseSource as) {
  if (s.weights.size() != pools_.size()) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 1; i < pools_.size(); ++i)
    if (st_.weights[i] == 0 && s.weights[i] > 0) windows_[i]->clear();
  const std::vector<uint32_t> file = st_.fileWeights;
  st_ = s;
  if (as == ReleaseSource::Peer) st_.fileWeights = file;  // a peer's file is not ours
  publishWeights(s.weights);
  stepBase_ = cumulative_[1 % pools_.size()].load(std::memory_order_relaxed);
  changes_.fetch_add(1, std::memory_order_release);
}

void Release::appendStatusJson(std::string& out, uint64_t nowMs) const {
  const ReleaseState s = state();
  out.append("{\"source\":\"");
  out.append(sourceName(s.source));
  out.append("\",\"state\":\"");
  out.append(phaseName(s.phase));
  out.append("\",\"paused\":");
  out.append(s.paused ? "true" : "false");
  if (promote_.enabled) {
    out.append(",\"step\":");
    out.append(std::to_string(s.step));
    out.append(",\"steps\":[");
    for (size_t i = 0; i < promote_.steps.size(); ++i) {
      if (i) out.push_back(',');
      out.append(std::to_string(promote_.steps[i]));
    }
    out.push_back(']');
    if (s.phase == ReleasePhase::Promoting && !s.paused) {
      const int64_t left = s.stepStartedUnixMs + promote_.interval.count() - observe::nowUnixMs();
      out.append(",\"next_step_in_ms\":");
      out.append(std::to_string(std::max<int64_t>(0, left)));
    }
  }
  out.append(",\"window_ms\":");
  out.append(std::to_string(windows_[0]->windowMs()));
  out.append(",\"window\":{");
  for (size_t i = 0; i < pools_.size(); ++i) {
    if (i) out.push_back(',');
    const OutcomeWindow::Totals t = windows_[i]->totals(nowMs);
    out.push_back('"');
    observe::appendJsonEscaped(out, pools_[i]);
    out.append("\":{\"requests\":");
    out.append(std::to_string(t.requests));
    out.append(",\"errors\":");
    out.append(std::to_string(t.errors));
    out.append(",\"error_rate\":");
    out.append(t.requests ? formatRate(double(t.errors) / double(t.requests)) : "0");
    out.append(",\"p99_ms\":");
    out.append(formatMs(windows_[i]->p99Us(nowMs)));
    out.append(",\"peer_requests\":");
    out.append(std::to_string(peerRequests_[i].load(std::memory_order_relaxed)));
    out.append(",\"peer_errors\":");
    out.append(std::to_string(peerErrors_[i].load(std::memory_order_relaxed)));
    out.append(",\"rollbacks\":");
    out.append(std::to_string(rollbacks(i)));
    out.push_back('}');
  }
  out.push_back('}');
  out.append(",\"last_decision\":");
  if (s.last.atUnixMs == 0) {
    out.append("null");
  } else {
    out.append("{\"at\":\"");
    observe::appendRfc3339Ms(out, s.last.atUnixMs);
    out.append("\",\"action\":\"");
    observe::appendJsonEscaped(out, s.last.action);
    out.append("\",\"pool\":\"");
    observe::appendJsonEscaped(out, s.last.pool);
    out.append("\",\"reason\":\"");
    observe::appendJsonEscaped(out, s.last.reason);
    out.append("\"}");
  }
  out.push_back('}');
}

// ---------------------------------------------------------------- ReleaseRegistry

void ReleaseRegistry::setWriter(uint64_t id) {
  writer_ = id;
  for (auto& [name, r] : releases_) r->setWriter(id);
}

std::shared_ptr<Release> ReleaseRegistry::obtain(const config::RouteConfig& rc, uint64_t generation,
                                                 bool keepUnlessFileChanged, int64_t nowUnixMs) {
  std::vector<std::string> pools;
  for (const auto& a : rc.split) pools.push_back(a.pool);
  auto it = releases_.find(rc.name);
  if (it == releases_.end() || it->second->pools() != pools) {
    auto r = std::make_shared<Release>(rc.name, pools);
    r->setWriter(writer_);
    for (size_t i = 0; i < pools.size(); ++i) {
      auto& c = rollbacks_[{rc.name, pools[i]}];
      if (!c) c = std::make_unique<std::atomic<uint64_t>>(0);
      r->setRollbackCounter(i, c.get());
    }
    r->configure(rc, true, nowUnixMs);
    releases_[rc.name] = r;
    generations_[rc.name] = generation;
    return r;
  }
  const std::shared_ptr<Release>& r = it->second;
  uint64_t& seen = generations_[rc.name];
  if (seen == generation) return r;  // a rebuild of the same config (DNS): nothing to re-apply
  seen = generation;
  const bool fileChanged = r->state().fileWeights != weightsOf(rc);
  r->configure(rc, !keepUnlessFileChanged || fileChanged, nowUnixMs);
  return r;
}

void ReleaseRegistry::retain(const std::vector<std::string>& routes) {
  for (auto it = releases_.begin(); it != releases_.end();) {
    if (std::find(routes.begin(), routes.end(), it->first) == routes.end()) {
      generations_.erase(it->first);
      it = releases_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace sluice::router
