#include "middleware/rate_limit.h"

#include <hiredis/hiredis.h>

#include <charconv>
#include <span>

#include "middleware/identity.h"
#include "proxy/observe/metrics.h"

namespace sluice::middleware {

const RedisBatchScript& rateLimitBatchScript() {
  // Per call, in order, the same math as gcraDecide(), all at one `now`: exactly what the same
  // calls one after the other would decide. A key met again in the batch (a busy client) is
  // read once and its TAT kept in `tats`; each key whose bucket changed is written once at the
  // end with its last TAT and TTL, the state the calls one by one would have left. Times are
  // integers in microseconds; tat is stored with %.0f so Lua's number formatting never rounds.
  static const RedisBatchScript kScript(R"lua(
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats, changed, order = {}, {}, {}
local out = {}
local n = 0
for i = 1, #KEYS do
  local key = KEYS[i]
  local emission = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local tat = tats[key]
  if tat == nil then tat = tonumber(redis.call('GET', key)) or 0 end
  if tat < now then tat = now end
  local new_tat = tat + emission
  local allow_at = new_tat - capacity * emission
  if now < allow_at then
    tats[key] = tat
    out[n + 1] = 0
    out[n + 2] = 0
    out[n + 3] = tat - now
    out[n + 4] = allow_at - now
  else
    tats[key] = new_tat
    if not changed[key] then
      changed[key] = true
      order[#order + 1] = key
    end
    out[n + 1] = 1
    out[n + 2] = math.floor((now - allow_at) / emission)
    out[n + 3] = new_tat - now
    out[n + 4] = 0
  end
  n = n + 4
end
for j = 1, #order do
  local key = order[j]
  local tat = tats[key]
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1)
end
return out
)lua",
                                        2, 4);
  return kScript;
}

RateLimitFactory::RateLimitFactory(const std::string& name, const RateLimitSettings& rl,
                                   const config::RedisSettings& redis,
                                   std::shared_ptr<LocalStore> local)
    : name_(name),
      nameId_(observe::internName(name)),
      keyKind_(rl.keyKind),
      keyName_(rl.keyName),
      params_(GcraParams::make(rl.rate, rl.period.count(), rl.burst)),
      useRedis_(rl.store == RateLimitStore::Redis && redis.enabled),
      failOpen_(redis.failureMode == config::RedisFailureMode::Open),
      local_(std::move(local)),
      keyPrefix_("sluice:rl:" + name + ":"),
      emissionArg_(std::to_string(params_.emissionUs)),
      capacityArg_(std::to_string(params_.capacity)) {
  policy_ = std::to_string(rl.rate) + ";w=" + std::to_string(rl.period.count() / 1000);
  if (rl.burst > 0) policy_ += ";burst=" + std::to_string(rl.burst);
  limitValue_ = std::to_string(params_.capacity);
}

class RateLimitFilter final : public Filter {
 public:
  RateLimitFilter(const RateLimitFactory& f, FilterCallbacks& cb) : f_(f), cb_(cb) {}

  Status onRequestHeaders(RequestContext& ctx) override {
    key_.reserve(f_.keyPrefix_.size() + 48);
    key_.assign(f_.keyPrefix_);
    appendIdentityKey(f_.keyKind_, f_.keyName_, ctx, key_);
    if (!f_.useRedis_) return decideLocal(ctx, false);
    RedisClient* redis = cb_.services().redis;
    if (redis != nullptr && redis->isUp()) {
      handle_ = redis->batchEval(rateLimitBatchScript(), key_, {f_.emissionArg_, f_.capacityArg_},
                                 &RateLimitFilter::onRedis, this);
      if (handle_) {
        redis_ = redis;
        return Status::Stop;
      }
    }
    // Known to be down: do not wait for it at all.
    return storeUnavailable(ctx, false);
  }

  void onDestroy() override {
    if (handle_ && redis_ != nullptr) redis_->cancel(handle_);
    handle_ = {};
    redis_ = nullptr;
  }

 private:
  static bool parseReply(std::span<const redisReply* const> r, GcraDecision& d) {
    if (r.size() != 4) return false;
    for (const redisReply* e : r)
      if (e->type != REDIS_REPLY_INTEGER) return false;
    d.allowed = r[0]->integer == 1;
    d.remaining = r[1]->integer;
    d.resetUs = r[2]->integer;
    d.retryAfterUs = r[3]->integer;
    return true;
  }

  static void onRedis(void* user, RedisStatus status, std::span<const redisReply* const> reply) {
    auto* self = static_cast<RateLimitFilter*>(user);
    self->handle_ = {};
    self->redis_ = nullptr;
    RequestContext& ctx = self->cb_.context();
    GcraDecision d;
    if (status == RedisStatus::Ok && parseReply(reply, d)) {
      self->apply(ctx, d, true);
    } else {
      self->storeUnavailable(ctx, true);
    }
    // `self` may be gone here (resume() / sendLocalReply() can finish the request).
  }

  void count(observe::RateLimitResult r) {
    if (observe::WorkerMetrics* m = cb_.services().metrics) m->ratelimitDecision(f_.nameId_, r);
  }

  Status decideLocal(RequestContext& ctx, bool async) {
    return apply(ctx, f_.local_->decide(key_, f_.params_), async);
  }

  Status storeUnavailable(RequestContext& ctx, bool async) {
    if (f_.failOpen_) return decideLocal(ctx, async);
    count(observe::RateLimitResult::StoreError);
    ctx.attributes.set("log", "ratelimit", "store_error");
    outcome_ = Outcome::StoreError;
    cb_.sendLocalReply(http::LocalReply(503, kRateLimitUnavailableCode));
    return Status::Stop;  // `this` may be destroyed: touch nothing
  }

  Status apply(RequestContext& ctx, const GcraDecision& d, bool async) {
    outcome_ = Outcome::Decided;
    remaining_ = d.remaining;
    resetSeconds_ = ceilSeconds(d.resetUs);
    if (d.allowed) {
      count(observe::RateLimitResult::Allowed);
      ctx.attributes.set("log", "ratelimit", "allowed");
      if (async) cb_.resume();  // `this` may be destroyed after this call
      return Status::Continue;
    }
    count(observe::RateLimitResult::Limited);
    ctx.attributes.set("log", "ratelimit", "limited");
    char retry[24];
    char* end = std::to_chars(retry, retry + sizeof retry, ceilSeconds(d.retryAfterUs, 1)).ptr;
    cb_.sendLocalReply(http::LocalReply(429, "rate_limited")
                           .header("Retry-After", std::string_view(retry, size_t(end - retry))));
    return Status::Stop;  // `this` may be destroyed: touch nothing
  }

  // Every response of the route says where the client stands (IETF RateLimit headers).
  void onResponseHeaders(RequestContext&, http::ResponseHead& head) override {
    if (outcome_ == Outcome::None) return;
    head.headers.add("RateLimit-Limit", f_.limitValue_);
    if (outcome_ == Outcome::Decided) {
      char buf[24];
      char* end = std::to_chars(buf, buf + sizeof buf, remaining_).ptr;
      head.headers.add("RateLimit-Remaining", std::string_view(buf, size_t(end - buf)));
      end = std::to_chars(buf, buf + sizeof buf, resetSeconds_).ptr;
      head.headers.add("RateLimit-Reset", std::string_view(buf, size_t(end - buf)));
    }
    head.headers.add("RateLimit-Policy", f_.policy_);
  }

  enum class Outcome : uint8_t { None, Decided, StoreError };
  const RateLimitFactory& f_;
  FilterCallbacks& cb_;
  std::string key_;
  RedisClient* redis_ = nullptr;
  RedisClient::Handle handle_;
  Outcome outcome_ = Outcome::None;
  int64_t remaining_ = 0;
  int64_t resetSeconds_ = 0;
};

Filter* RateLimitFactory::create(FilterArena& arena, FilterCallbacks& callbacks) const {
  return arena.make<RateLimitFilter>(*this, callbacks);
}

}  // namespace sluice::middleware
