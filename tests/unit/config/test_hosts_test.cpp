// Unit tests for config/test_hosts: the SLUICE_TEST_HOSTS name table used instead of DNS.
#include "config/test_hosts.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

using sluice::config::testHostAddresses;

namespace {

// A hosts file in /tmp, named by SLUICE_TEST_HOSTS while it lives.
struct HostsFile {
  std::string path = "/tmp/sluice-test-hosts-" + std::to_string(getpid());
  explicit HostsFile(const std::string& text) {
    std::ofstream(path) << text;
    setenv("SLUICE_TEST_HOSTS", path.c_str(), 1);
  }
  ~HostsFile() {
    unsetenv("SLUICE_TEST_HOSTS");
    std::remove(path.c_str());
  }
  HostsFile(const HostsFile&) = delete;
  HostsFile& operator=(const HostsFile&) = delete;
};

}  // namespace

TEST_CASE("test hosts: unset or empty variable answers nothing") {
  unsetenv("SLUICE_TEST_HOSTS");
  std::vector<std::string> out;
  CHECK_FALSE(testHostAddresses("redis", out));
  setenv("SLUICE_TEST_HOSTS", "", 1);
  CHECK_FALSE(testHostAddresses("redis", out));
  unsetenv("SLUICE_TEST_HOSTS");
  CHECK(out.empty());
}

TEST_CASE("test hosts: listed names answer their addresses, others fall through") {
  HostsFile f(
      "# compose service names\napp-blue 127.0.0.2\n\nredis 127.0.0.4 ::1\n"
      "gone\n#redis 10.0.0.1\n");
  std::vector<std::string> out;
  CHECK(testHostAddresses("redis", out));
  CHECK(out == std::vector<std::string>{"127.0.0.4", "::1"});
  out.clear();
  CHECK(testHostAddresses("app-blue", out));
  CHECK(out == std::vector<std::string>{"127.0.0.2"});
  out.clear();
  CHECK(testHostAddresses("gone", out));  // listed without an address: no such name
  CHECK(out.empty());
  CHECK_FALSE(testHostAddresses("app-green", out));
  CHECK_FALSE(testHostAddresses("#redis", out));
}

TEST_CASE("test hosts: a missing file answers nothing") {
  setenv("SLUICE_TEST_HOSTS", "/nonexistent/sluice-hosts", 1);
  std::vector<std::string> out;
  CHECK_FALSE(testHostAddresses("redis", out));
  unsetenv("SLUICE_TEST_HOSTS");
}
