// sluice command line: run the proxy, test a config (-t), or signal a running one (-s).
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "config/backend_dns.h"
#include "config/loader.h"
#include "middleware/registry.h"
#include "proxy/server.h"

namespace {

void usage(FILE* f) {
  std::fprintf(f,
               "Usage: sluice [-c FILE] [-t] [-s reload|stop|quit|reopen] [-v] [-h]\n"
               "\n"
               "  -c FILE   configuration file (default ./sluice.toml, then "
               "/etc/sluice/sluice.toml)\n"
               "  -t        test the configuration and exit\n"
               "  -s SIG    send a signal to the running sluice (pid from server.pid_file):\n"
               "            reload (HUP), stop (INT, fast), quit (QUIT, graceful), reopen (USR1)\n"
               "  -v        print the version and exit\n"
               "  -h        this help\n");
}

std::string defaultConfig() {
  if (access("sluice.toml", F_OK) == 0) return "sluice.toml";
  return "/etc/sluice/sluice.toml";
}

int testConfig(const std::string& path) {
  auto res = sluice::config::loadConfigFile(path, sluice::middleware::parsers());
  // Only here: a DNS lookup may take up to a second, never acceptable on the running loop.
  sluice::config::warnUnresolvedBackends(res);
  for (const auto& w : res.warnings) std::fprintf(stderr, "%s (warning)\n", w.str().c_str());
  if (!res.config) {
    for (const auto& e : res.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
    std::fprintf(stderr, "sluice: configuration file %s test failed\n", path.c_str());
    return 1;
  }
  std::printf("sluice: configuration file %s test is successful\n", path.c_str());
  return 0;
}

int signalRunning(const std::string& path, const std::string& what) {
  int sig;
  if (what == "reload")
    sig = SIGHUP;
  else if (what == "stop")
    sig = SIGINT;
  else if (what == "quit")
    sig = SIGQUIT;
  else if (what == "reopen")
    sig = SIGUSR1;
  else {
    std::fprintf(stderr, "sluice: invalid signal \"%s\" (reload|stop|quit|reopen)\n", what.c_str());
    return 1;
  }
  auto res = sluice::config::loadConfigFile(path, sluice::middleware::parsers());
  if (!res.config) {
    for (const auto& e : res.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
    return 1;
  }
  const std::string& pidFile = res.config->server.pidFile;
  if (pidFile.empty()) {
    std::fprintf(stderr, "sluice: %s: server.pid_file is not set, cannot find the process\n",
                 path.c_str());
    return 1;
  }
  std::ifstream f(pidFile);
  long pid = 0;
  if (!(f >> pid) || pid <= 0) {
    std::fprintf(stderr, "sluice: cannot read a pid from %s\n", pidFile.c_str());
    return 1;
  }
  if (::kill(pid_t(pid), sig) != 0) {
    std::fprintf(stderr, "sluice: kill(%ld, %s): %s\n", pid, what.c_str(), std::strerror(errno));
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string configPath;
  std::string sig;
  bool test = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-c" && i + 1 < argc) {
      configPath = argv[++i];
    } else if (a == "-t") {
      test = true;
    } else if (a == "-s" && i + 1 < argc) {
      sig = argv[++i];
    } else if (a == "-v" || a == "--version") {
      std::printf("sluice %s\n", SLUICE_VERSION);
      return 0;
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "sluice: unknown argument \"%s\"\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (configPath.empty()) configPath = defaultConfig();
  if (test) return testConfig(configPath);
  if (!sig.empty()) return signalRunning(configPath, sig);
  sluice::Server server(configPath);
  return server.run();
}
