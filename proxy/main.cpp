// sluice command line: run the proxy, test a config (-t), signal a running one (-s), or
// convert an nginx configuration (convert-nginx).
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "config/backend_dns.h"
#include "config/loader.h"
#include "config/nginx/convert.h"
#include "config/nginx/parser.h"
#include "middleware/registry.h"
#include "proxy/server.h"

namespace {

void usage(FILE* f) {
  std::fprintf(
      f,
      "Usage: sluice [-c FILE] [-t] [-s reload|stop|quit|reopen] [-v] [-h]\n"
      "       sluice convert-nginx NGINX_CONF [-o OUT.toml]\n"
      "\n"
      "  -c FILE        configuration file (default ./sluice.toml, then "
      "/etc/sluice/sluice.toml)\n"
      "  -t             test the configuration and exit\n"
      "  -s SIG         send a signal to the running sluice (pid from server.pid_file):\n"
      "                 reload (HUP), stop (INT, fast), quit (QUIT, graceful), reopen (USR1)\n"
      "  -v, --version  print the version and exit\n"
      "  -h, --help     this help\n"
      "\n"
      "  convert-nginx  write the Sluice TOML equivalent of an nginx configuration\n"
      "                 (stdout, or OUT.toml with -o); every directive that is not\n"
      "                 converted, or runs differently, is named on stderr with its\n"
      "                 FILE:LINE\n");
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

// sluice convert-nginx FILE [-o OUT]: 0 when converted (warnings or not), 1 when the nginx
// file cannot be read or parsed, or the result does not pass `sluice -t`, 2 on bad usage.
int convertNginx(int argc, char** argv) {
  std::string in, out;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-o" && i + 1 < argc) {
      out = argv[++i];
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (in.empty() && !a.starts_with("-")) {
      in = a;
    } else {
      std::fprintf(stderr, "sluice convert-nginx: unexpected argument \"%s\"\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (in.empty()) {
    std::fprintf(stderr, "sluice convert-nginx: which nginx configuration? (convert-nginx FILE)\n");
    usage(stderr);
    return 2;
  }
  namespace nginx = sluice::config::nginx;
  nginx::ParseResult parsed = nginx::parseFile(in);
  for (const auto& e : parsed.errors) std::fprintf(stderr, "%s: error: %s\n", e.at.str().c_str(), e.message.c_str());
  if (!parsed.errors.empty()) return 1;
  nginx::ConvertResult res =
      nginx::convert(parsed.directives, {in, std::string("sluice convert-nginx ") + SLUICE_VERSION});
  for (const auto& e : res.errors) std::fprintf(stderr, "%s: error: %s\n", e.at.str().c_str(), e.message.c_str());
  if (!res.errors.empty()) return 1;
  for (const auto& w : res.warnings) std::fprintf(stderr, "%s: warning: %s\n", w.at.str().c_str(), w.message.c_str());
  for (const auto& n : res.notes) std::fprintf(stderr, "%s: note: %s\n", n.at.str().c_str(), n.message.c_str());
  // The result must pass `sluice -t`; a failure here is a converter bug or a file (certificate,
  // key) that this machine cannot read.
  const std::string name = out.empty() ? "<stdout>" : out;
  auto check = sluice::config::loadConfigString(res.toml, name, sluice::middleware::parsers());
  int rc = 0;
  if (!out.empty()) {
    const std::string tmp = out + ".tmp";
    std::ofstream f(tmp, std::ios::trunc);
    f << res.toml;
    f.close();
    if (!f || std::rename(tmp.c_str(), out.c_str()) != 0) {
      std::fprintf(stderr, "sluice convert-nginx: cannot write %s: %s\n", out.c_str(), std::strerror(errno));
      std::remove(tmp.c_str());
      return 1;
    }
  } else {
    std::fwrite(res.toml.data(), 1, res.toml.size(), stdout);
  }
  for (const auto& w : check.warnings) std::fprintf(stderr, "%s (sluice -t warning)\n", w.str().c_str());
  if (!check.config) {
    for (const auto& e : check.errors) std::fprintf(stderr, "%s (sluice -t)\n", e.str().c_str());
    std::fprintf(stderr, "sluice convert-nginx: the result does not pass sluice -t here\n");
    rc = 1;
  }
  std::fprintf(stderr, "sluice convert-nginx: %d directives in %d file%s: %d converted, %d not converted\n",
               res.directives, parsed.files, parsed.files == 1 ? "" : "s", res.converted, res.notConverted);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "convert-nginx") return convertNginx(argc, argv);
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
