// type = "headers": its settings, the parser of its [middleware.NAME] table and its factory
// builder (registered in middleware/registry.cpp). The filter is middleware/headers.h.
//   request_set / request_add / response_set / response_add = { "Name" = "value {host}" }
//   request_remove / response_remove = ["Name", ...]
//   preset = "security"   frame_options = "DENY" | "SAMEORIGIN"
//   permissions_policy = "camera=(), ..."   content_security_policy = "default-src 'self'"
#pragma once

#include <string>

#include "config/middleware_types.h"
#include "config/schema.h"
#include "middleware/headers.h"
#include "middleware/registry.h"

namespace sluice::middleware {

inline constexpr std::string_view kDefaultPermissionsPolicy =
    "camera=(), microphone=(), geolocation=(), payment=(), usb=()";

struct HeadersSettings final : config::MiddlewareSettings {
  HeadersPolicy policy;
};

config::MiddlewareSettingsPtr parseHeaders(const config::MiddlewareTable& table);
FilterFactoryPtr buildHeaders(const config::MiddlewareConfig& mc, const FactoryContext& ctx,
                              std::string& err);

}  // namespace sluice::middleware
