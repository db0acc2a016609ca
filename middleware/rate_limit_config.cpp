#include "middleware/rate_limit_config.h"

#include <memory>
#include <string_view>

#include "config/load_context.h"
#include "middleware/rate_limit.h"

namespace sluice::middleware {

namespace {

using config::posOf;

// "100/s", "100/m", "100/h".
bool loadRate(config::LoadContext& ctx, const toml::node& v, const std::string& what,
              RateLimitSettings& rl) {
  auto s = ctx.getString(v, what);
  if (!s) return false;
  size_t slash = s->find('/');
  std::string_view num = std::string_view(*s).substr(0, slash);
  std::string_view unit =
      slash == std::string::npos ? std::string_view() : std::string_view(*s).substr(slash + 1);
  bool digits = !num.empty() && num.size() <= 9 &&
                num.find_first_not_of("0123456789") == std::string_view::npos;
  uint64_t n = digits ? std::stoull(std::string(num)) : 0;
  int64_t periodMs = unit == "s" ? 1000 : unit == "m" ? 60000 : unit == "h" ? 3600000 : 0;
  if (!digits || n == 0 || n > 1000000 || periodMs == 0) {
    ctx.error(posOf(v), what + ": expected \"N/s\", \"N/m\" or \"N/h\" with N between 1 and " +
                            "1000000 (e.g. \"100/m\"), got '" + *s + "'");
    return false;
  }
  rl.rate = n;
  rl.period = config::Duration(periodMs);
  return true;
}

bool loadKey(config::LoadContext& ctx, const toml::node& v, const std::string& what,
             RateLimitSettings& rl) {
  auto s = ctx.getString(v, what + ".key");
  if (!s) return false;
  rl.key = *s;
  auto colon = s->find(':');
  std::string kind = s->substr(0, colon);
  std::string arg = colon == std::string::npos ? "" : s->substr(colon + 1);
  if (*s == "ip") {
    rl.keyKind = RateLimitKeyKind::Ip;
  } else if ((kind == "header" || kind == "cookie" || kind == "jwt") && !arg.empty() &&
             !config::hasSpaceOrControl(arg) && arg.find(':') == std::string::npos) {
    rl.keyKind = kind == "header"   ? RateLimitKeyKind::Header
                 : kind == "cookie" ? RateLimitKeyKind::Cookie
                                    : RateLimitKeyKind::JwtClaim;
    rl.keyName = arg;
  } else {
    ctx.error(posOf(v), what +
                            ".key: expected \"ip\", \"header:NAME\", \"cookie:NAME\" or "
                            "\"jwt:CLAIM\", got '" +
                            *s + "'");
    return false;
  }
  return true;
}

bool loadStore(config::LoadContext& ctx, const toml::node& v, const std::string& what,
               RateLimitSettings& rl) {
  auto s = ctx.getString(v, what + ".store");
  if (!s) return false;
  if (*s == "redis") {
    rl.store = RateLimitStore::Redis;
    if (!ctx.config().redis.enabled) {
      ctx.error(posOf(v), what +
                              ".store: \"redis\" needs a [redis] table (or use "
                              "store = \"local\")");
      return false;
    }
  } else if (*s == "local") {
    rl.store = RateLimitStore::Local;
  } else {
    ctx.error(posOf(v), what + ".store: expected \"redis\" or \"local\", got '" + *s + "'");
    return false;
  }
  return true;
}

}  // namespace

config::MiddlewareSettingsPtr parseRateLimit(const config::MiddlewareTable& table) {
  table.checkKeys({"type", "key", "rate", "burst", "store"});
  config::LoadContext& ctx = table.ctx;
  const toml::table& t = table.table;
  const std::string& what = table.what;
  auto rl = std::make_shared<RateLimitSettings>();
  bool ok = true;
  if (const auto* v = t.get("key")) ok = loadKey(ctx, *v, what, *rl);
  if (const auto* v = table.required("rate", "(e.g. rate = \"100/m\")")) {
    ok = loadRate(ctx, *v, what + ".rate", *rl) && ok;
  } else {
    ok = false;
  }
  if (const auto* v = t.get("burst")) {
    if (auto b = ctx.getInt(*v, what + ".burst", 0, 1000000)) {
      rl->burst = uint64_t(*b);
    } else {
      ok = false;
    }
  }
  // [redis] is loaded before [middleware.*]: with it the store defaults to redis.
  rl->store = ctx.config().redis.enabled ? RateLimitStore::Redis : RateLimitStore::Local;
  if (const auto* v = t.get("store")) ok = loadStore(ctx, *v, what, *rl) && ok;
  if (!ok) return nullptr;
  return rl;
}

FilterFactoryPtr buildRateLimit(const config::MiddlewareConfig& mc, const FactoryContext& ctx,
                                std::string& err) {
  const auto* rl = settingsAs<RateLimitSettings>(mc);
  if (rl == nullptr) {
    err = "not rate_limit settings";
    return nullptr;
  }
  if (rl->store == RateLimitStore::Redis && !ctx.config.redis.enabled) {
    err = "store = \"redis\" needs [redis]";
    return nullptr;
  }
  return std::make_shared<const RateLimitFactory>(mc.name, *rl, ctx.config.redis,
                                                  ctx.stores.get(mc.name));
}

}  // namespace sluice::middleware
