#include "proxy/admin/release_api.h"

#include <charconv>
#include <utility>
#include <vector>

#include "proxy/observe/log.h"
#include "proxy/upstream/pool.h"

namespace sluice::admin {

namespace {

void skipSpace(std::string_view s, size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
}

// A JSON string without escapes other than \" and \\ (pool names are plain identifiers).
bool parseName(std::string_view s, size_t& i, std::string& out) {
  if (i >= s.size() || s[i] != '"') return false;
  ++i;
  out.clear();
  while (i < s.size() && s[i] != '"') {
    if (s[i] == '\\') {
      if (++i >= s.size() || (s[i] != '"' && s[i] != '\\')) return false;
    } else if (static_cast<unsigned char>(s[i]) < 0x20) {
      return false;
    }
    out.push_back(s[i++]);
  }
  if (i >= s.size()) return false;
  ++i;
  return true;
}

// {"name": non-negative integer, ...}
bool parseWeights(std::string_view s, std::vector<std::pair<std::string, uint64_t>>& out) {
  size_t i = 0;
  skipSpace(s, i);
  if (i >= s.size() || s[i++] != '{') return false;
  skipSpace(s, i);
  if (i < s.size() && s[i] == '}') return false;  // nothing to set
  for (;;) {
    std::string name;
    skipSpace(s, i);
    if (!parseName(s, i, name)) return false;
    skipSpace(s, i);
    if (i >= s.size() || s[i++] != ':') return false;
    skipSpace(s, i);
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + s.size(), v);
    if (ec != std::errc() || p == s.data() + i) return false;
    i = size_t(p - s.data());
    out.emplace_back(std::move(name), v);
    skipSpace(s, i);
    if (i < s.size() && s[i] == ',') {
      ++i;
      continue;
    }
    if (i >= s.size() || s[i++] != '}') return false;
    skipSpace(s, i);
    return i == s.size();
  }
}

std::string errorJson(std::string_view code, std::string_view detail = {}) {
  std::string out = "{\"error\":\"";
  out.append(code);
  out.push_back('"');
  if (!detail.empty()) {
    out.append(",\"detail\":\"");
    observe::appendJsonEscaped(out, detail);
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

const router::Route* findRoute(const Snapshot& snap, std::string_view name) {
  for (const auto& r : snap.routes.routes())
    if (r.name == name) return &r;
  return nullptr;
}

}  // namespace

void appendLiveWeightsJson(const router::Split& split, std::string& out) {
  out.push_back('{');
  for (size_t i = 0; i < split.arms.size(); ++i) {
    if (i) out.push_back(',');
    out.push_back('"');
    observe::appendJsonEscaped(out, split.arms[i].pool->name);
    out.append("\":");
    out.append(std::to_string(split.liveWeight(i)));
  }
  out.push_back('}');
}

namespace {

std::string answer(const router::Split& split, std::string_view route) {
  std::string out = "{\"route\":\"";
  observe::appendJsonEscaped(out, route);
  out.append("\",\"weights\":");
  appendLiveWeightsJson(split, out);
  out.append(",\"release\":");
  split.release->appendStatusJson(out, upstream::monotonicMs());
  out.push_back('}');
  return out;
}

int putSplitWeights(const router::Route& r, std::string_view body, bool force, std::string& out) {
  const router::Split& split = *r.split;
  std::vector<std::pair<std::string, uint64_t>> asked;
  if (!parseWeights(body, asked))
    return out = errorJson("bad_json", "expected {\"POOL\": WEIGHT, ...}"), 400;
  std::vector<uint32_t> next(split.arms.size());
  for (size_t i = 0; i < next.size(); ++i) next[i] = split.liveWeight(i);
  for (const auto& [pool, weight] : asked) {
    const router::SplitArm* arm = split.byPoolName(pool);
    if (arm == nullptr) return out = errorJson("no_such_pool", pool), 404;
    if (weight > 1000000) return out = errorJson("bad_weight", "weights are 0-1000000"), 400;
    const size_t i = size_t(arm - split.arms.data());
    if (weight > 0 && next[i] == 0 && !force && !arm->pool->hasHealthyBackend())
      return out = errorJson("pool_unhealthy", pool + ": no usable backend (?force=1 to insist)"),
             409;
    next[i] = uint32_t(weight);
  }
  uint64_t total = 0;
  for (uint32_t w : next) total += w;
  if (total == 0) return out = errorJson("all_weights_zero"), 400;
  split.release->setWeights(next, observe::nowUnixMs());
  std::string weights;
  appendLiveWeightsJson(split, weights);
  observe::logEvent(config::LogLevel::Info, "split weights set",
                    {{"route", r.name}, {"weights", weights}, {"force", force ? "1" : "0"}});
  out = answer(split, r.name);
  return 200;
}

}  // namespace

int handleRouteAction(const Snapshot& snap, std::string_view method, std::string_view route,
                      std::string_view action, std::string_view body, bool force,
                      std::string& out) {
  const bool put = action == "split";
  if (!put && action != "promote" && action != "rollback" && action != "pause" &&
      action != "resume")
    return out = errorJson("not_found"), 404;
  if (method != (put ? "PUT" : "POST")) return out = errorJson("method_not_allowed"), 405;
  const router::Route* r = findRoute(snap, route);
  if (r == nullptr) return out = errorJson("no_such_route"), 404;
  if (!r->split) return out = errorJson("no_split", "the route sends to one pool"), 404;
  if (put) return putSplitWeights(*r, body, force, out);
  router::Release& rel = *r->split->release;
  const int64_t now = observe::nowUnixMs();
  router::ReleaseResult res;
  if (action == "promote") {
    // Promoting a canary that takes no traffic yet puts users on it: it must be able to serve.
    const router::SplitArm& canary = r->split->arms.back();
    if (r->split->arms.size() == 2 && rel.weight(1) == 0 && !force &&
        !canary.pool->hasHealthyBackend())
      return out = errorJson("pool_unhealthy",
                             canary.pool->name + ": no usable backend (?force=1 to insist)"),
             409;
    res = rel.promote(now);
  } else if (action == "rollback") {
    res = rel.rollback("admin API", router::ReleaseSource::Api, now);
  } else if (action == "pause") {
    res = rel.pause(now);
  } else {
    res = rel.resume(now);
  }
  if (res.status != 200) return out = errorJson(res.code, res.detail), res.status;
  out = answer(*r->split, r->name);
  return 200;
}

}  // namespace sluice::admin
