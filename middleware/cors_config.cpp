#include "middleware/cors_config.h"

#include <memory>

#include "config/load_context.h"

namespace sluice::middleware {

namespace {

using config::posOf;

bool loadOrigins(const config::MiddlewareTable& table, CorsPolicy& p) {
  config::LoadContext& ctx = table.ctx;
  const std::string what = table.what + ".allow_origins";
  const auto* node = table.required("allow_origins", "(e.g. [\"https://app.example.com\"])");
  if (node == nullptr) return false;
  auto list = ctx.getStringArray(*node, what);
  if (!list) return false;
  if (list->empty()) {
    ctx.error(posOf(*node), what + ": expected at least one origin (or \"*\")");
    return false;
  }
  bool ok = true;
  for (const auto& [value, pos] : *list) {
    if (value == "*") {
      p.anyOrigin = true;
      continue;
    }
    auto pat = parseOriginPattern(value);
    if (!pat) {
      std::string hint = value.find("://") == std::string::npos
                             ? " (an origin has a scheme: \"https://" + value + "\")"
                         : value.size() > 3 && value.back() == '/'
                             ? " (an origin has no path: drop the trailing '/')"
                             : "";
      ctx.error(pos, what + ": '" + value +
                         "' is not an origin; expected scheme://host[:port], "
                         "scheme://*.domain[:port], \"null\" or \"*\"" +
                         hint);
      ok = false;
      continue;
    }
    p.origins.push_back(std::move(*pat));
  }
  return ok;
}

// allow_methods / allow_headers / expose_headers: tokens, or "*" where `star` is set.
bool loadTokens(const config::MiddlewareTable& table, const char* key, bool lowerCase,
                std::vector<std::string>& out, bool* star) {
  const auto* node = table.table.get(key);
  if (node == nullptr) return true;
  const std::string what = table.what + "." + key;
  auto list = table.ctx.getStringArray(*node, what);
  if (!list) return false;
  bool ok = true;
  for (const auto& [value, pos] : *list) {
    if (value == "*" && star != nullptr) {
      *star = true;
      continue;
    }
    if (!config::isHttpToken(value)) {
      table.ctx.error(pos,
                      what + ": '" + value + "' is not a valid " +
                          (std::string_view(key) == "allow_methods" ? "method" : "header name"));
      ok = false;
      continue;
    }
    std::string v = value;
    if (lowerCase)
      for (char& c : v) c = (c >= 'A' && c <= 'Z') ? char(c + 32) : c;
    out.push_back(std::move(v));
  }
  return ok;
}

}  // namespace

config::MiddlewareSettingsPtr parseCors(const config::MiddlewareTable& table) {
  table.checkKeys({"type", "allow_origins", "allow_methods", "allow_headers", "expose_headers",
                   "allow_credentials", "max_age", "allow_private_network", "reject_disallowed"});
  config::LoadContext& ctx = table.ctx;
  const toml::table& t = table.table;
  const std::string& what = table.what;
  auto s = std::make_shared<CorsSettings>();
  CorsPolicy& p = s->policy;
  bool ok = loadOrigins(table, p);
  if (t.get("allow_methods") == nullptr) {
    p.methods = {"GET", "HEAD", "POST"};
  } else {
    ok = loadTokens(table, "allow_methods", false, p.methods, &p.anyMethod) && ok;
  }
  ok = loadTokens(table, "allow_headers", true, p.headers, &p.anyHeader) && ok;
  std::vector<std::string> expose;
  ok = loadTokens(table, "expose_headers", false, expose, nullptr) && ok;
  for (const auto& e : expose) p.exposeHeaders += (p.exposeHeaders.empty() ? "" : ", ") + e;
  if (const auto* v = t.get("allow_credentials")) {
    if (auto b = ctx.getBool(*v, what + ".allow_credentials")) p.credentials = *b;
    if (p.credentials && p.anyOrigin) {
      ctx.error(posOf(*v), what +
                               ".allow_credentials: cannot be true with allow_origins = \"*\" "
                               "(browsers refuse a wildcard origin on credentialed requests; "
                               "list the origins)");
      ok = false;
    }
  }
  if (const auto* v = t.get("max_age")) {
    if (auto d = ctx.getDuration(*v, what + ".max_age", true)) p.maxAgeSeconds = d->count() / 1000;
  }
  if (const auto* v = t.get("allow_private_network")) {
    if (auto b = ctx.getBool(*v, what + ".allow_private_network")) p.privateNetwork = *b;
  }
  if (const auto* v = t.get("reject_disallowed")) {
    if (auto b = ctx.getBool(*v, what + ".reject_disallowed")) p.rejectDisallowed = *b;
  }
  if (!ok) return nullptr;
  p.finish();
  return s;
}

FilterFactoryPtr buildCors(const config::MiddlewareConfig& mc, const FactoryContext&,
                           std::string& err) {
  const auto* s = settingsAs<CorsSettings>(mc);
  if (s == nullptr) {
    err = "not cors settings";
    return nullptr;
  }
  return std::make_shared<CorsFactory>(mc.name, s->policy);
}

}  // namespace sluice::middleware
