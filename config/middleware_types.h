// The seam between the config loader and the middleware types. The loader knows the generic
// [middleware.NAME] rules (valid name, required `type`, known type, file order, route
// references); what a type's table may contain is parsed by that type's own parser, which the
// caller hands to loadConfigFile/loadConfigString (middleware::parsers() in the proxy, a
// test-only list in unit tests). The config layer never includes middleware/.
#pragma once

#include <span>
#include <string_view>

#include "config/schema.h"

namespace sluice::config {

struct MiddlewareTable;  // config/load_context.h

// Parses one [middleware.NAME] table of this type: checks its keys, reports problems through
// the table's load context (with positions) and returns the settings, or nullptr when the
// table is invalid (at least one error was reported).
using ParseMiddlewareFn = MiddlewareSettingsPtr (*)(const MiddlewareTable& table);

struct MiddlewareParser {
  std::string_view type;  // the `type = "..."` value, e.g. "rate_limit"
  ParseMiddlewareFn parse;
};

// Every type the loader accepts, in the order error messages list them.
using MiddlewareParsers = std::span<const MiddlewareParser>;

}  // namespace sluice::config
