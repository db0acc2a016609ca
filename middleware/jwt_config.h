// type = "jwt": its settings, the parser of its [middleware.NAME] table and its factory builder
// (registered in middleware/registry.cpp). The verifier and filter are middleware/jwt.h.
//   algorithms = ["HS256", "RS256", "ES256"]  (required, a non-empty subset)
//   secret     = HS256 key
//   public_key = PEM file for RS256 / ES256 (relative to the config file's directory)
//   issuer, audience = checked when set;  required = true | false (default true)
#pragma once

#include <string>
#include <vector>

#include "config/middleware_types.h"
#include "config/schema.h"
#include "middleware/registry.h"

namespace sluice::middleware {

struct JwtSettings final : config::MiddlewareSettings {
  std::vector<std::string> algorithms;  // subset of HS256, RS256, ES256
  std::string secret;                   // HS256
  std::string publicKey;                // PEM file (path resolved against the config's dir)
  std::string issuer;                   // empty = not checked
  std::string audience;                 // empty = not checked
  bool required = true;

  bool providesClaims() const override { return true; }
  bool refusesRequests() const override { return true; }
};

config::MiddlewareSettingsPtr parseJwt(const config::MiddlewareTable& table);
FilterFactoryPtr buildJwt(const config::MiddlewareConfig& mc, const FactoryContext& ctx,
                          std::string& err);

}  // namespace sluice::middleware
