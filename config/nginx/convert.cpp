// The converter's top level: the main, events and http contexts, the settings Sluice keeps
// once for the whole process ([server], [log]), and the sweep that gives every directive no
// part took its fate. Process-wide settings are in convert_settings.cpp, servers in
// convert_server.cpp, listeners in convert_listen.cpp, locations in convert_location.cpp,
// upstreams in convert_upstream.cpp.
#include <functional>

#include "config/nginx/converter.h"

namespace sluice::config::nginx {

namespace {

std::string folderOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string joined(const Directive& d) {
  std::string s = d.name;
  for (const Arg& a : d.args) {
    const bool needQuotes =
        a.text.empty() || a.text.find_first_of(" \t;{}\"'") != std::string::npos;
    s += " ";
    s += needQuotes ? "\"" + a.text + "\"" : a.text;
  }
  return s;
}

}  // namespace

LocationMatch parseLocation(const Directive& d) {
  LocationMatch m;
  if (d.args.size() == 2) {
    const std::string& mod = d.args[0].text;
    m.path = d.args[1].text;
    if (mod == "=")
      m.kind = LocationMatch::Kind::Exact;
    else if (mod == "^~")
      m.kind = LocationMatch::Kind::Priority;
    else if (mod == "~")
      m.kind = LocationMatch::Kind::Regex;
    else if (mod == "~*") {
      m.kind = LocationMatch::Kind::Regex;
      m.caseless = true;
    }
    return m;
  }
  if (d.args.size() != 1 || d.args[0].text.empty()) return m;
  const std::string& a = d.args[0].text;
  if (a[0] == '=') {
    m.kind = LocationMatch::Kind::Exact;
    m.path = a.substr(1);
  } else if (a[0] == '~') {
    m.kind = LocationMatch::Kind::Regex;
    m.caseless = a.size() > 1 && a[1] == '*';
    m.path = a.substr(m.caseless ? 2 : 1);
  } else if (a[0] == '@') {
    m.kind = LocationMatch::Kind::Named;
    m.path = a;
  } else {
    m.kind = LocationMatch::Kind::Prefix;
    m.path = a;
  }
  if (m.path.empty()) m.kind = LocationMatch::Kind::Invalid;
  return m;
}

ConvertResult convert(const std::vector<Directive>& mainContext, const ConvertOptions& opt) {
  Converter c(opt);
  return c.run(mainContext);
}

std::string Converter::display(const Where& w) const {
  return w.str();
}

std::string Converter::from(const Directive& d) const {
  std::string text = joined(d);
  if (text.size() > 90) text = text.substr(0, 87) + "...";
  return display(d.at) + ": " + text;
}

std::string Converter::resolvePath(const std::string& p, bool confRelative) const {
  if (p.starts_with("/")) return p;
  if (confRelative) {
    if (confDir_.empty()) return p;
    return confDir_ == "/" ? "/" + p : confDir_ + "/" + p;
  }
  return "/usr/share/nginx/" + p;  // Debian's --prefix
}

ConvertResult Converter::run(const std::vector<Directive>& main) {
  confDir_ = folderOf(opt_.source);
  tracker_.index(main);
  mainContext(main);
  ConvertResult res;
  if (http_ == nullptr || servers_.empty()) {
    res.errors.push_back({{opt_.source, 0},
                          "no http { server { ... } } block: there is nothing Sluice could "
                          "serve"});
    tracker_.finish(res);
    return res;
  }
  listeners();
  if (listeners_.empty()) {
    res.errors.push_back(
        {http_->at, "no server has a listen address Sluice can use (see the warnings)"});
    tracker_.finish(res);
    return res;
  }
  liftHsts();
  for (ServerInfo& s : servers_) locations(s);
  hostGroups();
  nameRoutes();
  unusedUpstreams();
  sweep(main, false);
  tracker_.finish(res);
  res.toml = toml(res);
  return res;
}

// ---- main and events ------------------------------------------------------------------

void Converter::mainContext(const std::vector<Directive>& list) {
  for (const Directive& d : list) {
    const std::string& n = d.name;
    if (n == "http" && d.block) {
      if (http_ != nullptr) {
        tracker_.skipBlock(d, "a second http block (nginx refuses it)");
        continue;
      }
      http(d);
    } else if (n == "events" && d.block) {
      events(d);
    } else if (n == "worker_processes" && d.args.size() == 1) {
      const std::string& v = d.arg(0);
      if (v == "auto") {
        workers_ = "\"auto\"";
        tracker_.converted(d);
      } else if (auto w = parseSize(v); w &&
                                        v.find_first_not_of("0123456789") == std::string::npos &&
                                        *w >= 1 && *w <= 256) {
        workers_ = v;
        tracker_.converted(d);
      } else {
        tracker_.skip(d, "expected \"auto\" or 1..256");
      }
      serverComments_["workers"] = display(d.at);
    } else if (n == "pid" && d.args.size() == 1) {
      if (d.arg(0) == "off") {
        tracker_.converted(d);
      } else if (d.arg(0).find('$') != std::string::npos) {
        tracker_.skip(d, "a path with variables is not converted");
      } else {
        pidFile_ = resolvePath(d.arg(0), false);
        serverComments_["pid_file"] = display(d.at);
        tracker_.converted(d);
      }
    } else if (n == "worker_shutdown_timeout" && d.args.size() == 1) {
      if (auto ms = parseTimeMs(d.arg(0))) {
        shutdownTimeout_ = formatDuration(*ms);
        serverComments_["shutdown_timeout"] = display(d.at);
        tracker_.converted(d);
      } else {
        tracker_.skip(d, "invalid time '" + d.arg(0) + "'");
      }
    } else if (n == "error_log") {
      errorLog(d, true);
    } else if (n == "stream" || n == "mail") {
      tracker_.skipBlock(d, "Sluice proxies HTTP only (no TCP/UDP or mail proxying)");
    } else if (n == "user") {
      tracker_.noEffect(d, "Sluice runs as the user that starts it (systemd User=)");
    } else if (n == "worker_rlimit_nofile") {
      tracker_.noEffect(d, "set the file limit of the process (systemd LimitNOFILE=)");
    } else if (n == "daemon" || n == "master_process") {
      tracker_.noEffect(d, "Sluice always runs in the foreground, as one process");
    } else if (n == "load_module") {
      tracker_.skip(d, "Sluice has no dynamic modules");
    } else if (n == "env" || n == "pcre_jit" || n == "timer_resolution" ||
               n == "worker_cpu_affinity" || n == "worker_priority" || n == "lock_file" ||
               n == "thread_pool" || n == "working_directory" || n == "worker_rlimit_core" ||
               n == "debug_points" || n == "ssl_engine" || n == "accept_mutex") {
      tracker_.noEffect(d, "nginx process tuning");
    }
  }
}

void Converter::events(const Directive& d) {
  tracker_.converted(d);
  for (const Directive& c : d.children) {
    if (c.name == "worker_connections")
      tracker_.noEffect(c, "Sluice does not cap connections per worker (raise LimitNOFILE)");
    else
      tracker_.noEffect(c, "Sluice uses epoll through libuv");
  }
}

void Converter::errorLog(const Directive& d, bool mainLevel) {
  if (d.args.empty()) return;
  if (!mainLevel) {
    tracker_.differs(d, "Sluice has one event log, on stderr, for every server");
    return;
  }
  if (logLevel_) {
    tracker_.differs(d, "Sluice has one event log; the first error_log's level is used");
    return;
  }
  std::string level = "error";  // nginx's default
  if (d.args.size() > 1) {
    const std::string& l = d.arg(1);
    if (l == "debug")
      level = "debug";
    else if (l == "info" || l == "notice")
      level = "info";
    else if (l == "warn")
      level = "warn";
  }
  logLevel_ = level;
  serverComments_["level"] = display(d.at);
  const std::string& f = d.arg(0);
  if (f == "stderr" || f == "/dev/stderr")
    tracker_.converted(d);
  else
    tracker_.differs(d,
                     "Sluice writes its event log to stderr (the systemd journal, or "
                     "redirect it), not to " +
                         f + "; level " + level + " kept");
}

// ---- http ------------------------------------------------------------------------------

void Converter::http(const Directive& d) {
  http_ = &d;
  tracker_.converted(d);
  httpScope_ = std::make_unique<Scope>(nullptr);
  for (const Directive& c : d.children) {
    const std::string& n = c.name;
    if (n == "server" || n == "location" || n == "listen" || n == "server_name") continue;
    if (n == "upstream" && c.block) {
      upstream(c);
    } else if (n == "map" && c.block) {
      mapBlock(c);
    } else if (n == "limit_req_zone") {
      limitReqZone(c);
    } else if (n == "types" && c.block) {
      tracker_.noEffect(c, "Sluice's static routes use their own table of MIME types");
    } else if (n == "geo" || n == "split_clients" || n == "charset_map" || n == "perl_modules" ||
               n == "js_import") {
      tracker_.skipBlock(c, "variables are not converted");
    } else if (n == "error_log") {
      errorLog(c, !logLevel_.has_value());
    } else if (n == "rewrite" || n == "return" || n == "if" || n == "set") {
      continue;  // not allowed at http level: nginx refuses it; left for the generic warning
    } else {
      httpScope_->add(c);
    }
  }
  globalSettings();
  realIp();
  accessLog();
  for (const Directive& c : d.children)
    if (c.name == "server" && c.block) server(c);
  bodySize();
}

void Converter::mapBlock(const Directive& d) {
  // The WebSocket idiom: map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  if (d.args.size() == 2 && d.arg(0) == "$http_upgrade" && d.arg(1).starts_with("$")) {
    bool idiom = true;
    for (const Directive& e : d.children) {
      const std::string v = e.args.empty() ? "" : e.arg(0);
      const bool ok = (e.name == "default" && (v == "upgrade" || v == "Upgrade" ||
                                               v == "keep-alive" || v == "close" || v.empty())) ||
                      (e.name.empty() && (v == "close" || v.empty())) || e.name == "hostnames";
      if (!ok || e.args.size() != 1) idiom = false;
    }
    if (idiom) {
      upgradeMaps_.insert(d.arg(1).substr(1));
      tracker_.converted(d);
      return;
    }
  }
  if (d.args.size() == 2) otherMaps_[d.arg(1).size() > 1 ? d.arg(1).substr(1) : d.arg(1)] = &d;
  tracker_.skip(d,
                "variables are not converted (only the WebSocket `map $http_upgrade` idiom "
                "is recognised: Sluice tunnels WebSocket upgrades itself)");
}

void Converter::limitReqZone(const Directive& d) {
  Zone z;
  z.d = &d;
  std::string name;
  for (size_t i = 1; i < d.args.size(); ++i) {
    const std::string& a = d.arg(i);
    if (a.starts_with("zone=")) {
      name = a.substr(5, a.find(':') == std::string::npos ? std::string::npos : a.find(':') - 5);
    } else if (a.starts_with("rate=")) {
      std::string r = a.substr(5);
      const bool perMin = r.ends_with("r/m");
      if (r.ends_with("r/s") || perMin) {
        auto n = parseSize(r.substr(0, r.size() - 3));
        if (n && *n > 0 && *n <= 1000000 && r.find_first_not_of("0123456789", 0) == r.size() - 3)
          (perMin ? z.perMinute : z.perSecond) = *n;
      }
    }
  }
  if (d.args.empty() || name.empty() || (z.perSecond == 0 && z.perMinute == 0)) {
    tracker_.skip(d, "expected limit_req_zone KEY zone=NAME:SIZE rate=Nr/s (or Nr/m)");
    return;
  }
  const std::string& key = d.arg(0);
  if (key == "$binary_remote_addr" || key == "$remote_addr") {
    z.key = "ip";
  } else if (key.starts_with("$http_") && key.size() > 6) {
    std::string h = key.substr(6);
    std::replace(h.begin(), h.end(), '_', '-');
    z.key = "header:" + h;
  } else if (key.starts_with("$cookie_") && key.size() > 8) {
    z.key = "cookie:" + key.substr(8);
  } else {
    z.keyError = "the key " + key +
                 " has no Sluice equivalent (Sluice keys on the client IP, a header or a cookie)";
  }
  zones_[name] = z;
}

void Converter::accessLog() {
  const Directive* chosen = nullptr;
  std::function<void(const std::vector<Directive>&, int)> walk = [&](const auto& list, int depth) {
    for (const Directive& c : list) {
      if (c.name == "access_log") {
        if (chosen == nullptr && depth == 0) {
          chosen = &c;
          accessLogDirective(c);
        } else if (chosen != nullptr && joined(c) == joined(*chosen)) {
          tracker_.converted(c);
        } else if (c.args.size() == 1 && c.arg(0) == "off") {
          tracker_.differs(c,
                           "Sluice has one access log for every route: these requests are "
                           "logged too");
        } else {
          tracker_.differs(c, "Sluice has one access log for every server and route" +
                                  std::string(chosen ? " (" + display(chosen->at) + ")" : ""));
        }
      }
      if (c.block && (c.name == "server" || c.name == "location" || c.name == "if"))
        walk(c.children, depth + 1);
    }
  };
  walk(http_->children, 0);
}

void Converter::accessLogDirective(const Directive& d) {
  if (d.args.empty()) return;
  const std::string& path = d.arg(0);
  serverComments_["access"] = display(d.at);
  if (path == "off") {
    logAccess_ = "off";
    tracker_.converted(d);
    return;
  }
  if (path.find('$') != std::string::npos) {
    tracker_.skip(d, "an access log path with variables is not converted");
    return;
  }
  if (path.starts_with("syslog:")) {
    tracker_.skip(d, "Sluice writes its access log to a file or stdout, not to syslog");
    return;
  }
  logAccess_ = path == "/dev/stdout" ? "stdout" : resolvePath(path, false);
  const std::string format =
      d.args.size() > 1 && d.arg(1).find('=') == std::string::npos ? d.arg(1) : "combined";
  if (format == "combined") {
    logFormat_ = "combined";
    tracker_.converted(d);
    return;
  }
  // A named log_format: JSON ones become Sluice's JSON lines, others combined.
  bool json = false;
  for (const Directive& c : http_->children) {
    if (c.name != "log_format" || c.args.empty() || c.arg(0) != format) continue;
    json = c.args.size() > 1 && c.arg(1) == "escape=json";
    tracker_.differs(c, std::string("Sluice writes its own ") + (json ? "JSON" : "combined") +
                            " lines (see the access log fields in docs/operations.md)");
  }
  logFormat_ = json ? "json" : "combined";
  tracker_.differs(d, "log format '" + format + "' is written as Sluice's " +
                          (json ? "json" : "combined") + " format");
}

// Directives no part of the converter took: the known ones get their reason.
void Converter::sweep(const std::vector<Directive>& list, bool inHttp) {
  for (const Directive& d : list) {
    if (inHttp && tracker_.fate(d) == Fate::Unseen) {
      if (const KnownDirective* k = knownDirective(d.name)) {
        switch (k->fate) {
          case Fate::NoEffect:
            tracker_.noEffect(d, std::string(k->why));
            break;
          case Fate::Differs:
            tracker_.differs(d, std::string(k->why));
            break;
          case Fate::Converted:
            tracker_.converted(d);
            break;
          default:
            tracker_.skip(d, std::string(k->why));
        }
      }
    }
    if (d.block && tracker_.fate(d) != Fate::NotConverted)
      sweep(d.children, inHttp || d.name == "http");
  }
}

}  // namespace sluice::config::nginx