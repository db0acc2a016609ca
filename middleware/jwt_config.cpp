#include "middleware/jwt_config.h"

#include <algorithm>
#include <memory>

#include "config/load_context.h"
#include "middleware/jwt.h"

namespace sluice::middleware {

namespace {

using config::posOf;

// The `algorithms` array; false when it is missing or empty (nothing else is worth checking
// then), `ok` = false when an element is not a known algorithm.
bool loadAlgorithms(const config::MiddlewareTable& table, JwtSettings& j, bool& ok) {
  config::LoadContext& ctx = table.ctx;
  const std::string& what = table.what;
  const auto* algNode = table.required("algorithms", "(e.g. [\"RS256\"])");
  if (algNode == nullptr) return false;
  const auto* arr = algNode->as_array();
  if (arr == nullptr || arr->empty()) {
    ctx.error(posOf(*algNode), what +
                                   ".algorithms: expected a non-empty array of \"HS256\", "
                                   "\"RS256\", \"ES256\"");
    return false;
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    std::string w = what + ".algorithms[" + std::to_string(i) + "]";
    auto s = ctx.getString((*arr)[i], w);
    if (!s) {
      ok = false;
      continue;
    }
    if (*s != "HS256" && *s != "RS256" && *s != "ES256") {
      ctx.error(posOf((*arr)[i]),
                w + ": expected \"HS256\", \"RS256\" or \"ES256\", got '" + *s + "'" +
                    (*s == "none" ? " (unsigned tokens are never accepted)" : ""));
      ok = false;
      continue;
    }
    if (std::find(j.algorithms.begin(), j.algorithms.end(), *s) == j.algorithms.end())
      j.algorithms.push_back(*s);
  }
  return true;
}

// An algorithm without the key it needs can never verify a token: a warning when other
// algorithms still work (the spec's example lists all three), an error when none does.
bool checkUsable(const config::MiddlewareTable& table, const JwtSettings& j, bool haveKey,
                 PublicKeyKind keyKind) {
  const toml::node& algNode = *table.table.get("algorithms");
  int usable = 0;
  for (const auto& a : j.algorithms) {
    std::string why;
    if (a == "HS256" && j.secret.empty()) {
      why = "HS256 needs a non-empty 'secret'";
    } else if (a == "RS256" && keyKind != PublicKeyKind::Rsa) {
      why = !haveKey ? "RS256 needs 'public_key'"
                     : "RS256 needs an RSA public key, public_key is not one";
    } else if (a == "ES256" && keyKind != PublicKeyKind::EcP256) {
      why = !haveKey ? "ES256 needs 'public_key'"
                     : "ES256 needs an EC P-256 public key, public_key is not one";
    }
    if (why.empty()) {
      ++usable;
    } else {
      table.ctx.warn(posOf(algNode),
                     table.what + ".algorithms: " + why + "; " + a + " tokens will be rejected");
    }
  }
  if (usable == 0) {
    table.ctx.error(posOf(algNode), table.what +
                                        ".algorithms: no listed algorithm can verify a token "
                                        "(HS256 needs 'secret', RS256/ES256 need a matching "
                                        "'public_key')");
    return false;
  }
  return true;
}

}  // namespace

config::MiddlewareSettingsPtr parseJwt(const config::MiddlewareTable& table) {
  table.checkKeys({"type", "algorithms", "secret", "public_key", "issuer", "audience", "required"});
  config::LoadContext& ctx = table.ctx;
  const toml::table& t = table.table;
  const std::string& what = table.what;
  auto j = std::make_shared<JwtSettings>();
  bool ok = true;
  if (!loadAlgorithms(table, *j, ok)) return nullptr;
  if (const auto* v = t.get("secret")) {
    if (auto s = ctx.getString(*v, what + ".secret")) j->secret = *s;
  }
  PublicKeyKind keyKind = PublicKeyKind::None;
  const auto* keyNode = t.get("public_key");
  if (keyNode != nullptr) {
    if (auto s = ctx.getString(*keyNode, what + ".public_key")) {
      j->publicKey = ctx.resolvePath(*s);
      std::string err;
      if (!inspectPublicKeyFile(j->publicKey, keyKind, err)) {
        ctx.error(posOf(*keyNode), what + ".public_key: " + err);
        ok = false;
      }
    } else {
      ok = false;
    }
  }
  if (const auto* v = t.get("issuer")) {
    if (auto s = ctx.getString(*v, what + ".issuer")) j->issuer = *s;
  }
  if (const auto* v = t.get("audience")) {
    if (auto s = ctx.getString(*v, what + ".audience")) j->audience = *s;
  }
  if (const auto* v = t.get("required")) {
    if (auto b = ctx.getBool(*v, what + ".required")) j->required = *b;
  }
  if (!ok || !checkUsable(table, *j, keyNode != nullptr, keyKind)) return nullptr;
  return j;
}

FilterFactoryPtr buildJwt(const config::MiddlewareConfig& mc, const FactoryContext&,
                          std::string& err) {
  const auto* j = settingsAs<JwtSettings>(mc);
  if (j == nullptr) {
    err = "not jwt settings";
    return nullptr;
  }
  return JwtFactory::create(mc.name, *j, err);
}

}  // namespace sluice::middleware
