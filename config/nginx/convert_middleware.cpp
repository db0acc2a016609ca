// A location's middleware: limit_req -> rate_limit, and the header directives (add_header,
// proxy_set_header, proxy_hide_header, more) -> a headers middleware, shared between routes
// that end up with the same one.
#include <cctype>

#include "config/nginx/converter.h"

namespace sluice::config::nginx {

namespace {

const std::vector<VarMapping> kHeaderVars = {{"remote_addr", "{client_ip}"},
                                             {"binary_remote_addr", "{client_ip}"},
                                             {"host", "{host}"},
                                             {"scheme", "{scheme}"},
                                             {"request_id", "{request_id}"}};

// Headers the proxy owns: Sluice refuses to set or remove them in a headers middleware.
bool proxyOwned(const std::string& lname) {
  return lname == "content-length" || lname == "transfer-encoding" || lname == "connection" ||
         lname == "keep-alive" || lname == "proxy-connection" || lname == "te" ||
         lname == "trailer" || lname == "upgrade" || lname == "expect" || lname == "host";
}

bool isToken(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

}  // namespace

void Converter::middlewareOf(const Scope& sc, bool answered, bool proxied, RouteOut& r) {
  // limit_req runs after the rewrite phase: a return answers before it.
  if (!answered) rateLimits(sc, r);
  headerPolicy(sc, proxied, r);
}

void Converter::rateLimits(const Scope& sc, RouteOut& r) {
  for (const Directive* d : sc.all("limit_req")) {
    std::string zone;
    uint64_t burst = 0;
    bool nodelay = false;
    bool bad = false;
    for (const Arg& a : d->args) {
      if (a.text.starts_with("zone="))
        zone = a.text.substr(5);
      else if (a.text.starts_with("burst=")) {
        auto b = parseSize(a.text.substr(6));
        if (!b || a.text.find_first_not_of("0123456789", 6) != std::string::npos || *b > 1000000)
          bad = true;
        else
          burst = *b;
      } else if (a.text == "nodelay") {
        nodelay = true;
      } else {
        bad = true;  // delay=N, dry_run ...
      }
    }
    auto it = zones_.find(zone);
    if (it == zones_.end()) {
      tracker_.skip(*d, "no limit_req_zone named '" + zone + "'");
      continue;
    }
    if (bad) {
      tracker_.skip(*d, "only zone=, burst= and nodelay are converted");
      continue;
    }
    const Zone& z = it->second;
    if (!z.keyError.empty()) {
      tracker_.skip(*d, z.keyError);
      tracker_.skip(*z.d, z.keyError);
      continue;
    }
    std::string rate;
    uint64_t n = 0;
    if (z.perSecond != 0) {
      rate = std::to_string(z.perSecond) + "/s";
      n = z.perSecond;
    } else if (z.perMinute % 60 == 0) {
      rate = std::to_string(z.perMinute / 60) + "/s";
      n = z.perMinute / 60;
    } else {
      rate = std::to_string(z.perMinute) + "/m";
      n = z.perMinute;
    }
    if (n == 1)
      tracker_.converted(*z.d);
    else
      tracker_.differs(*z.d, "Sluice's bucket holds rate + burst requests at once (" +
                                 std::to_string(n) +
                                 " + burst) where nginx's holds burst + 1; "
                                 "the refill rate is the same");
    std::vector<std::string> diffs;
    if (!nodelay && burst > 0)
      diffs.push_back(
          "without nodelay nginx delays the requests over the rate (up to burst); "
          "Sluice answers them at once while the bucket has room (as nodelay)");
    std::string status = "503";
    if (const Directive* st = sc.last("limit_req_status")) {
      if (st->args.size() == 1) status = st->arg(0);
      tracker_.converted(*st);
    }
    if (status != "429")
      diffs.push_back(
          "Sluice answers 429 Too Many Requests (with Retry-After) where nginx "
          "answered " +
          status);
    MiddlewareOut mw;
    mw.name = zone + (burst != 0 ? "-burst" + std::to_string(burst) : "");
    mw.comments.push_back(from(*z.d));
    mw.keys = {{"type", tomlString("rate_limit")},
               {"rate", tomlString(rate)},
               {"burst", std::to_string(burst)},
               {"key", tomlString(z.key)},
               {"store", tomlString("local")}};
    const std::string name = uniqueMiddleware(mw);
    auto [prev, fresh] = zoneBursts_.emplace(zone, burst);
    if (!fresh && prev->second != burst)
      diffs.push_back(
          "nginx shares the zone's counters between every location; Sluice keeps "
          "one bucket per middleware, and this burst needs its own");
    r.middleware.push_back(name);
    tracker_.outcome(*d, diffs);
  }
}

void Converter::headerPolicy(const Scope& sc, bool proxied, RouteOut& r) {
  std::vector<std::pair<std::string, std::string>> requestSet, responseAdd;
  std::vector<std::string> requestRemove, responseRemove;
  std::string unknown;
  if (proxied) {
    for (const Directive* d : sc.all("proxy_set_header")) {
      if (d->args.size() != 2) {
        tracker_.skip(*d, "expected a name and a value");
        continue;
      }
      const std::string& name = d->arg(0);
      const std::string& value = d->arg(1);
      const std::string ln = asciiLower(name);
      auto builtIn = [&](std::initializer_list<std::string_view> same, const std::string& what) {
        for (auto v : same)
          if (value == v) {
            tracker_.converted(*d);
            return;
          }
        tracker_.differs(*d, what);
      };
      if (ln == "host") {
        if (value == "$proxy_host" || value == "$upstream_addr")
          tracker_.differs(*d,
                           "Sluice forwards the client's Host header; it cannot send the "
                           "upstream's name");
        else
          builtIn({"$host", "$http_host"},
                  "Sluice forwards the client's Host header as sent; it "
                  "cannot be set to '" +
                      value + "'");
      } else if (ln == "x-forwarded-for") {
        builtIn({"$proxy_add_x_forwarded_for"},
                "Sluice appends the client address to X-Forwarded-For itself");
      } else if (ln == "x-forwarded-proto") {
        builtIn({"$scheme"}, "Sluice sets X-Forwarded-Proto to the client connection's scheme");
      } else if (ln == "x-forwarded-host") {
        builtIn({"$host", "$http_host", "$server_name"},
                "Sluice sets X-Forwarded-Host to the client's Host header");
      } else if (ln == "x-request-id") {
        builtIn({"$request_id"},
                "Sluice sets X-Request-Id itself (kept from the client when "
                "sane, else generated)");
      } else if (ln == "upgrade") {
        builtIn({"$http_upgrade"}, "Sluice forwards WebSocket upgrades itself");
      } else if (ln == "connection") {
        bool idiom = value.empty() || asciiLower(value) == "upgrade" ||
                     asciiLower(value) == "keep-alive" ||
                     (value.starts_with("$") && upgradeMaps_.count(value.substr(1)) != 0);
        if (idiom)
          tracker_.converted(*d);
        else
          tracker_.differs(*d,
                           "Sluice manages Connection to the backend itself (keep-alive, "
                           "WebSocket upgrades)");
      } else if (proxyOwned(ln) || !isToken(name)) {
        tracker_.skip(*d, "Sluice manages " + name + " itself; it cannot be set");
      } else if (value.empty()) {
        requestRemove.push_back(name);
        tracker_.converted(*d);
      } else if (auto v = translateVariables(value, kHeaderVars, unknown);
                 v && v->find_first_of("\r\n") == std::string::npos &&
                 value.find_first_of("{}") == std::string::npos) {
        requestSet.emplace_back(name, *v);
        tracker_.converted(*d);
      } else {
        tracker_.skip(*d, v ? "the value has characters Sluice's templates cannot carry"
                            : "the value uses " + unknown +
                                  "; Sluice's header templates have "
                                  "$remote_addr, $host, $scheme and $request_id only");
      }
    }
    for (const Directive* d : sc.all("proxy_hide_header")) {
      if (d->args.size() == 1 && isToken(d->arg(0)) && !proxyOwned(asciiLower(d->arg(0)))) {
        responseRemove.push_back(d->arg(0));
        tracker_.converted(*d);
      } else {
        tracker_.skip(*d, "Sluice manages this header itself");
      }
    }
  }
  for (const Directive* d : sc.all("add_header")) {
    if (liftedHsts_.count(d) != 0) continue;  // the listener's hsts
    const bool always = d->args.size() == 3 && d->arg(2) == "always";
    if (d->args.size() != 2 && !always) {
      tracker_.skip(*d, "expected a name, a value and optionally always");
      continue;
    }
    const std::string& name = d->arg(0);
    const std::string& value = d->arg(1);
    if (r.stat && asciiLower(name) == "cache-control" && r.stat->cacheControl.empty() &&
        findVariables(value).empty() && value.find_first_of("\r\n") == std::string::npos) {
      r.stat->cacheControl = value;
      tracker_.converted(*d);
      continue;
    }
    auto v = translateVariables(value, kHeaderVars, unknown);
    if (proxyOwned(asciiLower(name)) || !isToken(name)) {
      tracker_.skip(*d, "Sluice manages " + name + " itself");
    } else if (!v || value.find_first_of("{}") != std::string::npos ||
               v->find_first_of("\r\n") != std::string::npos) {
      tracker_.skip(*d, v ? "the value has characters Sluice's templates cannot carry"
                          : "the value uses " + unknown +
                                "; Sluice's header templates have $remote_addr, $host, $scheme "
                                "and $request_id only");
    } else {
      responseAdd.emplace_back(name, *v);
      if (always)
        tracker_.converted(*d);
      else
        tracker_.differs(*d,
                         "without always nginx adds it to 2xx and 3xx answers only; Sluice "
                         "adds it to every answer of the route");
    }
  }
  if (requestSet.empty() && requestRemove.empty() && responseAdd.empty() && responseRemove.empty())
    return;
  auto table = [](const std::vector<std::pair<std::string, std::string>>& kv) {
    std::string s = "{ ";
    for (size_t i = 0; i < kv.size(); ++i)
      s += (i ? ", " : "") + tomlString(kv[i].first) + " = " + tomlString(kv[i].second);
    return s + " }";
  };
  auto list = [](const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + tomlString(v[i]);
    return s + "]";
  };
  MiddlewareOut mw;
  mw.name = "headers-" + r.hint;
  mw.keys.emplace_back("type", tomlString("headers"));
  if (!requestSet.empty()) mw.keys.emplace_back("request_set", table(requestSet));
  if (!requestRemove.empty()) mw.keys.emplace_back("request_remove", list(requestRemove));
  if (!responseAdd.empty()) mw.keys.emplace_back("response_add", table(responseAdd));
  if (!responseRemove.empty()) mw.keys.emplace_back("response_remove", list(responseRemove));
  r.middleware.push_back(uniqueMiddleware(mw));
}

std::string Converter::uniqueMiddleware(MiddlewareOut m) {
  std::string identity;
  for (const auto& [k, v] : m.keys) identity += k + "=" + v + "\n";
  for (const MiddlewareOut& e : middleware_)
    if (e.identity == identity) return e.name;
  m.identity = identity;
  std::string base;
  for (char c : m.name) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')
      base.push_back(c);
    else if (!base.empty() && base.back() != '-')
      base.push_back('-');
  }
  while (!base.empty() && base.back() == '-') base.pop_back();
  if (base.empty()) base = "mw";
  std::string name = base;
  for (int n = 2;; ++n) {
    bool taken = false;
    for (const MiddlewareOut& e : middleware_) taken = taken || e.name == name;
    if (!taken) break;
    name = base + "-" + std::to_string(n);
  }
  m.name = name;
  middleware_.push_back(std::move(m));
  return name;
}

}  // namespace sluice::config::nginx
