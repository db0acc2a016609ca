#include "middleware/headers_config.h"

#include <memory>

#include "config/load_context.h"
#include "proxy/http/known_headers.h"

namespace sluice::middleware {

namespace {

using config::posOf;

// A header name the policy may touch: a token, and not one the proxy owns (framing,
// hop-by-hop, Host).
bool checkName(config::LoadContext& ctx, const std::string& name, config::SourcePos pos,
               const std::string& what) {
  if (!config::isHttpToken(name)) {
    ctx.error(pos, what + ": '" + name + "' is not a valid header name");
    return false;
  }
  const http::Hdr id = http::classifyHeader(name);
  if (http::isHopByHop(id) || id == http::Hdr::Host) {
    ctx.error(pos, what + ": '" + name +
                       "' is managed by the proxy (framing, hop-by-hop and Host headers cannot "
                       "be set or removed)");
    return false;
  }
  return true;
}

bool loadRemove(const config::MiddlewareTable& table, const char* key, HeaderEdits& edits) {
  const auto* node = table.table.get(key);
  if (node == nullptr) return true;
  const std::string what = table.what + "." + key;
  auto list = table.ctx.getStringArray(*node, what);
  if (!list) return false;
  bool ok = true;
  for (const auto& [name, pos] : *list) {
    if (checkName(table.ctx, name, pos, what))
      edits.remove.push_back(name);
    else
      ok = false;
  }
  return ok;
}

bool loadEdits(const config::MiddlewareTable& table, const char* key, bool response,
               std::vector<HeaderEdit>& out) {
  const auto* node = table.table.get(key);
  if (node == nullptr) return true;
  const std::string what = table.what + "." + key;
  auto entries = table.ctx.getStringTable(*node, what);
  if (!entries) return false;
  bool ok = true;
  for (const auto& [key2, value] : *entries) {
    const std::string w = what + "." + key2.value;
    if (!checkName(table.ctx, key2.value, key2.pos, what)) {
      ok = false;
      continue;
    }
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      table.ctx.error(key2.pos, w + ": a header value cannot contain CR, LF or NUL");
      ok = false;
      continue;
    }
    HeaderEdit e;
    e.name = key2.value;
    std::string err;
    if (!e.value.parse(value, response, err)) {
      table.ctx.error(key2.pos, w + ": " + err);
      ok = false;
      continue;
    }
    out.push_back(std::move(e));
  }
  return ok;
}

std::optional<std::string> plainString(const config::MiddlewareTable& table, const char* key) {
  const auto* v = table.table.get(key);
  if (v == nullptr) return std::nullopt;
  auto s = table.ctx.getString(*v, table.what + "." + key);
  if (s && s->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
    table.ctx.error(posOf(*v), table.what + "." + key + ": cannot contain CR, LF or NUL");
    return std::nullopt;
  }
  return s;
}

bool loadPreset(const config::MiddlewareTable& table, HeadersPolicy& p) {
  config::LoadContext& ctx = table.ctx;
  const std::string& what = table.what;
  const auto* presetNode = table.table.get("preset");
  bool security = false;
  if (presetNode != nullptr) {
    auto s = ctx.getString(*presetNode, what + ".preset");
    if (!s) return false;
    if (*s != "security") {
      ctx.error(posOf(*presetNode), what + ".preset: expected \"security\", got '" + *s + "'");
      return false;
    }
    security = true;
  }
  for (const char* key : {"frame_options", "permissions_policy", "content_security_policy"}) {
    const auto* v = table.table.get(key);
    if (v != nullptr && !security) {
      ctx.error(posOf(*v), what + "." + key + ": only with preset = \"security\"");
      return false;
    }
  }
  if (!security) return true;
  std::string frame = "DENY";
  if (auto s = plainString(table, "frame_options")) {
    if (*s != "DENY" && *s != "SAMEORIGIN") {
      ctx.error(posOf(*table.table.get("frame_options")),
                what + ".frame_options: expected \"DENY\" or \"SAMEORIGIN\", got '" + *s + "'");
      return false;
    }
    frame = *s;
  }
  std::string permissions(kDefaultPermissionsPolicy);
  if (auto s = plainString(table, "permissions_policy")) permissions = *s;
  p.defaults = {{"X-Content-Type-Options", "nosniff"},
                {"X-Frame-Options", frame},
                {"Referrer-Policy", "strict-origin-when-cross-origin"},
                {"Cross-Origin-Opener-Policy", "same-origin"}};
  if (!permissions.empty()) p.defaults.emplace_back("Permissions-Policy", permissions);
  if (auto s = plainString(table, "content_security_policy"); s && !s->empty())
    p.defaults.emplace_back("Content-Security-Policy", *s);
  return true;
}

}  // namespace

config::MiddlewareSettingsPtr parseHeaders(const config::MiddlewareTable& table) {
  table.checkKeys({"type", "request_set", "request_add", "request_remove", "response_set",
                   "response_add", "response_remove", "preset", "frame_options",
                   "permissions_policy", "content_security_policy"});
  auto s = std::make_shared<HeadersSettings>();
  HeadersPolicy& p = s->policy;
  bool ok = loadRemove(table, "request_remove", p.request);
  ok = loadEdits(table, "request_set", false, p.request.set) && ok;
  ok = loadEdits(table, "request_add", false, p.request.add) && ok;
  ok = loadRemove(table, "response_remove", p.response) && ok;
  ok = loadEdits(table, "response_set", true, p.response.set) && ok;
  ok = loadEdits(table, "response_add", true, p.response.add) && ok;
  ok = loadPreset(table, p) && ok;
  if (!ok) return nullptr;
  if (p.request.empty() && p.response.empty() && p.defaults.empty())
    table.ctx.warn(table.pos, table.what + ": changes no header");
  return s;
}

FilterFactoryPtr buildHeaders(const config::MiddlewareConfig& mc, const FactoryContext&,
                              std::string& err) {
  const auto* s = settingsAs<HeadersSettings>(mc);
  if (s == nullptr) {
    err = "not headers settings";
    return nullptr;
  }
  return std::make_shared<HeadersFactory>(mc.name, s->policy);
}

}  // namespace sluice::middleware
