#include "middleware/rate_limit.h"

#include <hiredis/hiredis.h>

#include <cstdio>

#include "middleware/identity.h"
#include "proxy/observe/metrics.h"

namespace sluice::middleware {

const RedisScript& rateLimitScript() {
  // Same math as gcraDecide(). Times are integers in microseconds; tat is stored with %.0f so
  // Lua's number formatting never rounds it.
  static const RedisScript kScript(R"lua(
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local emission = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', key))
if tat == nil or tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - capacity * emission
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', key, string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / emission), new_tat - now, 0}
)lua");
  return kScript;
}

RateLimitFactory::RateLimitFactory(const config::MiddlewareConfig& mc,
                                   const config::RedisSettings& redis,
                                   std::shared_ptr<LocalStore> local)
    : name_(mc.name),
      nameId_(observe::internName(mc.name)),
      keyKind_(mc.rateLimit.keyKind),
      keyName_(mc.rateLimit.keyName),
      params_(GcraParams::make(mc.rateLimit.rate, mc.rateLimit.period.count(), mc.rateLimit.burst)),
      useRedis_(mc.rateLimit.store == config::RateLimitStore::Redis && redis.enabled),
      failOpen_(redis.failureMode == config::RedisFailureMode::Open),
      local_(std::move(local)),
      keyPrefix_("sluice:rl:" + mc.name + ":"),
      emissionArg_(std::to_string(params_.emissionUs)),
      capacityArg_(std::to_string(params_.capacity)) {
  policy_ = std::to_string(mc.rateLimit.rate) +
            ";w=" + std::to_string(mc.rateLimit.period.count() / 1000);
  if (mc.rateLimit.burst > 0) policy_ += ";burst=" + std::to_string(mc.rateLimit.burst);
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
      handle_ = redis->evalsha(rateLimitScript(), key_, {f_.emissionArg_, f_.capacityArg_},
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
  static bool parseReply(const redisReply* r, GcraDecision& d) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 4) return false;
    for (size_t i = 0; i < 4; ++i)
      if (r->element[i]->type != REDIS_REPLY_INTEGER) return false;
    d.allowed = r->element[0]->integer == 1;
    d.remaining = r->element[1]->integer;
    d.resetUs = r->element[2]->integer;
    d.retryAfterUs = r->element[3]->integer;
    return true;
  }

  static void onRedis(void* user, RedisStatus status, const redisReply* reply) {
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
    ctx.ratelimit = "store_error";
    char buf[160];
    int n = std::snprintf(buf, sizeof buf, "RateLimit-Limit: %lld\r\nRateLimit-Policy: %s\r\n",
                          static_cast<long long>(f_.params_.capacity), f_.policy_.c_str());
    ctx.responseHeaders.append(buf, size_t(n));
    cb_.sendLocalReply(503, kRateLimitUnavailableCode);
    return Status::Stop;  // `this` may be destroyed: touch nothing
  }

  Status apply(RequestContext& ctx, const GcraDecision& d, bool async) {
    char buf[256];
    int n = std::snprintf(
        buf, sizeof buf,
        "RateLimit-Limit: %lld\r\nRateLimit-Remaining: %lld\r\nRateLimit-Reset: %lld\r\n"
        "RateLimit-Policy: %s\r\n",
        static_cast<long long>(f_.params_.capacity), static_cast<long long>(d.remaining),
        static_cast<long long>(ceilSeconds(d.resetUs)), f_.policy_.c_str());
    if (n > 0) ctx.responseHeaders.append(buf, std::min(size_t(n), sizeof buf - 1));
    if (d.allowed) {
      count(observe::RateLimitResult::Allowed);
      ctx.ratelimit = "allowed";
      if (async) cb_.resume();  // `this` may be destroyed after this call
      return Status::Continue;
    }
    count(observe::RateLimitResult::Limited);
    ctx.ratelimit = "limited";
    char retry[48];
    int m = std::snprintf(retry, sizeof retry, "Retry-After: %lld\r\n",
                          static_cast<long long>(ceilSeconds(d.retryAfterUs, 1)));
    cb_.sendLocalReply(429, "rate_limited", std::string_view(retry, size_t(m)));
    return Status::Stop;  // `this` may be destroyed: touch nothing
  }

  const RateLimitFactory& f_;
  FilterCallbacks& cb_;
  std::string key_;
  RedisClient* redis_ = nullptr;
  RedisClient::Handle handle_;
};

std::unique_ptr<Filter> RateLimitFactory::create(FilterCallbacks& callbacks) const {
  return std::make_unique<RateLimitFilter>(*this, callbacks);
}

}  // namespace sluice::middleware
