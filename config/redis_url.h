// Parser for the [redis] url forms of product.md:
//   redis://host:port/db, redis://:password@host:port/db, redis://user:password@host:port/db
//   (the user part is ignored: Redis < 6 has no ACL users), redis://[::1]:6379, unix:///path
//   and unix:///path?db=N. Port defaults to 6379, db to 0. Password may be %-encoded.
#pragma once

#include <string>
#include <string_view>

#include "config/schema.h"

namespace sluice::config {

// Fills unixSocket/host/port/path/password/db of `out` (url is not touched). False with a
// message in `err` on a malformed url.
bool parseRedisUrl(std::string_view url, RedisSettings& out, std::string& err);

}  // namespace sluice::config
