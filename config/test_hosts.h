// Test hook for host-name lookups. When SLUICE_TEST_HOSTS names a file, the names it lists
// ("name ip [ip...]" per line; lines starting with '#' are comments) are answered from it
// instead of DNS, by the backend resolver (proxy/upstream) and the Redis client (middleware).
// The file is read at every call, so a test can change the answers while Sluice runs. For
// tests only: it lets a config written with service names (`app:8000`, `redis://redis`) run
// against local processes.
#pragma once

#include <string>
#include <vector>

namespace sluice::config {

// True when $SLUICE_TEST_HOSTS is set and its file lists `host`; the addresses on that line
// are appended to `out` (none = the name exists but has no address).
bool testHostAddresses(const std::string& host, std::vector<std::string>& out);

}  // namespace sluice::config
