// The converter's listeners: nginx `listen` directives merged per address, TLS (certificates,
// protocols, SNI), HTTP->HTTPS redirects and HSTS lifted to the listener.
#include <algorithm>
#include <cctype>

#include "config/nginx/converter.h"

namespace sluice::config::nginx {

void Converter::listeners() {
  std::map<std::string, size_t> byAddress;
  std::vector<bool> explicitDefault;
  for (size_t i = 0; i < servers_.size(); ++i) {
    for (const auto& [spec, at] : servers_[i].listens) {
      auto it = byAddress.find(spec.address);
      if (it == byAddress.end()) {
        ListenerOut l;
        l.address = spec.address;
        l.port = spec.port;
        l.ipv6 = spec.ipv6;
        l.defaultServer = i;
        l.comments.push_back(from(*at));
        it = byAddress.emplace(spec.address, listeners_.size()).first;
        listeners_.push_back(std::move(l));
        explicitDefault.push_back(false);
      }
      ListenerOut& l = listeners_[it->second];
      l.tls = l.tls || spec.ssl;
      if (std::find(l.servers.begin(), l.servers.end(), i) == l.servers.end())
        l.servers.push_back(i);
      if (spec.defaultServer && !explicitDefault[it->second]) {
        l.defaultServer = i;
        explicitDefault[it->second] = true;
      }
    }
  }
  // Names: http-80, https-443; another address on a port already named adds "v6" ([::]) or
  // the address.
  std::set<std::string> taken;
  for (int pass = 0; pass < 2; ++pass) {
    for (auto& l : listeners_) {
      const bool wildcard = l.address.starts_with("0.0.0.0:");
      if ((pass == 0) != wildcard) continue;  // 0.0.0.0 first: it gets the plain name
      std::string base = (l.tls ? "https-" : "http-") + std::to_string(l.port);
      if (taken.count(base) != 0) {
        const std::string ip = l.address.substr(0, l.address.rfind(':'));
        std::string clean;
        for (char c : ip) {
          if (std::isalnum(static_cast<unsigned char>(c)))
            clean.push_back(c);
          else if (!clean.empty() && clean.back() != '-')
            clean.push_back('-');
        }
        while (!clean.empty() && clean.back() == '-') clean.pop_back();
        base += "-" + (ip == "[::]" || clean.empty() ? std::string("v6") : clean);
      }
      std::string name = base;
      for (int n = 2; taken.count(name) != 0; ++n) name = base + "-" + std::to_string(n);
      taken.insert(name);
      l.name = name;
    }
  }
  // A listener on which every server answers with the same redirect is a redirect_https
  // listener (the HTTP -> HTTPS idiom): a server-level `return`, or on a plain listener the
  // `if ($scheme = http) { return 301 https://... }` of a server that also listens with TLS.
  auto redirectOf = [&](const ServerInfo& s, const ListenerOut& l) -> const ReturnOut* {
    if (s.returnAll)
      return s.returnAll->status >= 300 && s.returnAll->status < 400 ? &*s.returnAll : nullptr;
    if (!l.tls && s.plainRedirect) return &*s.plainRedirect;
    return nullptr;
  };
  for (auto& l : listeners_) {
    const ReturnOut* first = redirectOf(servers_[l.servers.front()], l);
    bool same = first != nullptr;
    for (size_t i : l.servers) {
      const ReturnOut* r = redirectOf(servers_[i], l);
      same = same && r != nullptr && r->location == first->location;
    }
    if (!same) continue;
    const std::string& target = first->location;
    if (!target.starts_with("https://") && target.find("{uri}") == std::string::npos) continue;
    l.redirect = target;
    for (size_t i : l.servers) {
      const ServerInfo& s = servers_[i];
      const ReturnOut* r = redirectOf(s, l);
      const Directive* at = s.returnAll ? s.returnAllAt : s.plainRedirectAt;
      if (r->status != 308)
        tracker_.differs(*at,
                         "this listener answers every request with a redirect "
                         "(redirect_https), which Sluice sends as 308 Permanent Redirect "
                         "instead of " +
                             std::to_string(r->status));
    }
  }
  // An `if ($scheme = http)` redirect is converted when every plain listener of its server
  // became a redirect listener.
  for (ServerInfo& s : servers_) {
    if (!s.plainRedirect) continue;
    bool all = true;
    for (const auto& [spec, at] : s.listens)
      for (const auto& l : listeners_)
        if (l.address == spec.address && !l.tls && l.redirect.empty()) all = false;
    if (all) {
      tracker_.converted(*s.plainRedirectIf);
    } else {
      tracker_.skipBlock(*s.plainRedirectIf,
                         "its plain-HTTP listener is shared with servers that "
                         "do not redirect; Sluice cannot redirect per server");
      s.plainRedirect.reset();
    }
  }
  for (auto& l : listeners_) {
    if (l.tls && l.redirect.empty()) listenerTls(l);
    if (l.tls && !l.redirect.empty()) listenerTls(l);
  }
  // A TLS listener without a certificate cannot be written (nginx refuses it too).
  std::vector<ListenerOut> kept;
  for (auto& l : listeners_) {
    if (l.tls && l.certs.empty()) {
      for (size_t i : l.servers)
        for (const auto& [spec, at] : servers_[i].listens)
          if (spec.address == l.address)
            tracker_.skip(*at, "no usable ssl_certificate for this TLS listener");
      continue;
    }
    kept.push_back(std::move(l));
  }
  listeners_ = std::move(kept);
}

void Converter::listenerTls(ListenerOut& l) {
  std::vector<size_t> order = {l.defaultServer};  // its certificate first: the SNI fallback
  for (size_t i : l.servers)
    if (i != l.defaultServer) order.push_back(i);
  std::string minVersion;
  std::optional<bool> tickets;
  std::optional<int64_t> timeoutMs;
  for (size_t i : order) {
    const Scope& sc = *servers_[i].scope;
    auto certs = sc.all("ssl_certificate");
    auto keys = sc.all("ssl_certificate_key");
    if (certs.size() != keys.size()) {
      for (const auto* c : certs)
        tracker_.skip(*c, "every ssl_certificate needs its ssl_certificate_key");
      continue;
    }
    for (size_t k = 0; k < certs.size(); ++k) {
      const Directive& c = *certs[k];
      const Directive& key = *keys[k];
      if (c.args.size() != 1 || key.args.size() != 1 || c.arg(0).find('$') != std::string::npos ||
          key.arg(0).find('$') != std::string::npos || c.arg(0).starts_with("data:") ||
          key.arg(0).starts_with("engine:")) {
        tracker_.skip(c, "certificates named by variables, data: or engine: are not supported");
        tracker_.skip(key, "certificates named by variables, data: or engine: are not supported");
        continue;
      }
      std::pair<std::string, std::string> pair{resolvePath(c.arg(0), true),
                                               resolvePath(key.arg(0), true)};
      if (std::find(l.certs.begin(), l.certs.end(), pair) == l.certs.end()) {
        l.certs.push_back(pair);
        if (certs.size() > 1 && k > 0)
          tracker_.differs(c,
                           "Sluice picks a certificate by the name the client asks for "
                           "(SNI), not by its key type: with two certificates for the same "
                           "names the first one listed is used");
      }
      tracker_.converted(c);
      tracker_.converted(key);
    }
    if (const Directive* p = sc.last("ssl_protocols")) {
      bool v12 = false, v13 = false;
      std::vector<std::string> old;
      for (const Arg& a : p->args) {
        if (a.text == "TLSv1.2")
          v12 = true;
        else if (a.text == "TLSv1.3")
          v13 = true;
        else
          old.push_back(a.text);
      }
      const std::string mv = v12 ? "1.2" : v13 ? "1.3" : "1.2";
      if (minVersion.empty() || mv < minVersion) minVersion = mv;
      if (!old.empty())
        tracker_.differs(*p, "Sluice accepts TLS 1.2 and 1.3 only; older versions are refused");
      else
        tracker_.converted(*p);
    }
    if (const Directive* t = sc.last("ssl_session_tickets")) {
      const bool on = t->args.size() == 1 && t->arg(0) == "on";
      if (tickets && *tickets != on)
        tracker_.differs(*t,
                         "Sluice sets session tickets per listener; the first server's "
                         "setting is used");
      else
        tracker_.converted(*t);
      if (!tickets) tickets = on;
    }
    if (const Directive* t = sc.last("ssl_session_timeout")) {
      // nginx reads whole seconds (a bare number, or with units down to "s").
      const auto ms = t->args.size() == 1 ? parseTimeMs(t->arg(0)) : std::nullopt;
      if (!ms || *ms < 1000 || *ms > 24 * 3600 * 1000 || *ms % 1000 != 0) {
        tracker_.skip(*t, "Sluice's session_timeout takes whole seconds from 1s to 24h");
      } else {
        if (timeoutMs && *timeoutMs != *ms)
          tracker_.differs(*t,
                           "Sluice sets the session lifetime per listener; the first server's "
                           "setting is used");
        else
          tracker_.converted(*t);
        if (!timeoutMs) timeoutMs = *ms;
      }
    }
    if (const Directive* c = sc.last("ssl_session_cache")) {
      if (c->args.size() == 1 && (c->arg(0) == "off" || c->arg(0) == "none"))
        tracker_.differs(*c,
                         "Sluice always keeps a session cache (20,000 sessions shared by "
                         "every worker)");
      else
        tracker_.converted(*c);
    }
  }
  if (!minVersion.empty() && minVersion != "1.2") l.minVersion = minVersion;
  if (tickets && !*tickets) l.sessionTickets = false;
  if (timeoutMs && *timeoutMs != 300000) l.sessionTimeoutMs = timeoutMs;  // both default to 5m
}

// add_header Strict-Transport-Security "..." always, set once for every server of a TLS
// listener (and overridden by none of their locations), is the listener's `hsts`.
void Converter::liftHsts() {
  auto stsOf = [&](const ServerInfo& s) -> const Directive* {
    for (const Directive* d : s.scope->all("add_header")) {
      const std::string name = asciiLower(d->args.empty() ? "" : d->arg(0));
      if (d->args.size() == 3 && d->arg(2) == "always" && name == "strict-transport-security" &&
          d->arg(1).find("max-age=") != std::string::npos && findVariables(d->arg(1)).empty() &&
          d->arg(1).find_first_of("\r\n") == std::string::npos)
        return d;
    }
    return nullptr;
  };
  auto serverOk = [&](const ServerInfo& s) {
    for (const auto& [spec, at] : s.listens)
      if (!spec.ssl) return false;
    for (const Directive* loc : s.locations)
      for (const Directive& c : loc->children)
        if (c.name == "add_header") return false;
    return stsOf(s) != nullptr;
  };
  std::vector<bool> candidate(listeners_.size(), false);
  for (size_t k = 0; k < listeners_.size(); ++k) {
    const ListenerOut& l = listeners_[k];
    if (!l.tls || !l.redirect.empty()) continue;
    bool ok = true;
    std::string value;
    for (size_t i : l.servers) {
      const ServerInfo& s = servers_[i];
      if (!serverOk(s)) {
        ok = false;
        break;
      }
      const std::string v = stsOf(s)->arg(1);
      if (!value.empty() && v != value) ok = false;
      value = v;
    }
    candidate[k] = ok;
  }
  // A server's header moves to its listeners only if every one of them takes it.
  for (size_t k = 0; k < listeners_.size(); ++k) {
    if (!candidate[k]) continue;
    bool all = true;
    for (size_t i : listeners_[k].servers)
      for (const auto& [spec, at] : servers_[i].listens)
        for (size_t j = 0; j < listeners_.size(); ++j)
          if (listeners_[j].address == spec.address && !candidate[j]) all = false;
    if (!all) continue;
    for (size_t i : listeners_[k].servers) {
      const Directive* d = stsOf(servers_[i]);
      listeners_[k].hsts = d->arg(1);
      liftedHsts_.insert(d);
      tracker_.converted(*d);
    }
  }
}
}  // namespace sluice::config::nginx
