// nginx configuration -> Sluice TOML (`sluice convert-nginx`). Converts the reverse-proxy
// subset people run (servers, locations with nginx's precedence, listen/TLS, upstreams,
// proxy_pass and its URI replacement, the header idioms, returns and rewrites, rate limits,
// static files, logs and the global limits) and says, for every other directive, with its
// FILE:LINE, that it was not converted and what Sluice does instead. The TOML is written in
// a fixed, readable order with a `# FILE:LINE` comment on every table that came from nginx.
#pragma once

#include <string>
#include <vector>

#include "config/nginx/syntax.h"

namespace sluice::config::nginx {

struct ConvertOptions {
  std::string source;     // the main file, as named in the header comment
  std::string generator;  // "sluice convert-nginx 0.1.0"
};

struct ConvertResult {
  std::string toml;
  // Directives not converted or converted with a difference in behaviour: each one names the
  // directive and its FILE:LINE and says what Sluice does instead.
  std::vector<Diag> warnings;
  // Directives without effect in Sluice (sendfile, worker_connections, ...).
  std::vector<Diag> notes;
  // Set when there is nothing to write (no server block, no usable listen address).
  std::vector<Diag> errors;
  int directives = 0;    // every directive read, include files expanded
  int converted = 0;     // of which converted (some with a warning about a difference)
  int notConverted = 0;  // the others: a warning or a note names each one
};

ConvertResult convert(const std::vector<Directive>& mainContext, const ConvertOptions& opt);

}  // namespace sluice::config::nginx
