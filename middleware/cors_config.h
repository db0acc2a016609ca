// type = "cors": its settings, the parser of its [middleware.NAME] table and its factory builder
// (registered in middleware/registry.cpp). The policy and filter are middleware/cors.h.
//   allow_origins = ["https://app.example.com", "https://*.example.com"] | ["*"]  (required)
//   allow_methods = ["GET", "POST", ...]   allow_headers = ["Authorization", ...]
//   expose_headers = [...]   allow_credentials = false   max_age = "10m"
//   allow_private_network = false   reject_disallowed = false
#pragma once

#include <string>

#include "config/middleware_types.h"
#include "config/schema.h"
#include "middleware/cors.h"
#include "middleware/registry.h"

namespace sluice::middleware {

struct CorsSettings final : config::MiddlewareSettings {
  CorsPolicy policy;
  bool answersPreflights() const override { return true; }
};

config::MiddlewareSettingsPtr parseCors(const config::MiddlewareTable& table);
FilterFactoryPtr buildCors(const config::MiddlewareConfig& mc, const FactoryContext& ctx,
                           std::string& err);

}  // namespace sluice::middleware
