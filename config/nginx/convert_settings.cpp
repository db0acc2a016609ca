// Settings nginx has per server or location and Sluice once for the whole process: the
// client timeouts, the header and body limits, and the proxies whose X-Forwarded-For is
// believed (set_real_ip_from -> server.trusted_proxies).
#include <algorithm>
#include <functional>

#include "config/nginx/converter.h"
#include "config/units.h"

namespace sluice::config::nginx {

void Converter::globalSettings() {
  // Settings nginx has per server (or location) and Sluice once: the http level's value, else
  // the first one written; every other value gets a warning.
  struct Global {
    const char* name;
    std::optional<std::string>* dst;
    const char* key;
  };
  const Global globals[] = {{"keepalive_timeout", &idleTimeout_, "client_idle_timeout"},
                            {"client_header_timeout", &headerTimeout_, "client_header_timeout"}};
  for (const Global& g : globals) {
    const std::vector<const Directive*> found = everywhere(g.name);
    const Directive* chosen = nullptr;
    for (const Directive* c : found) {
      if (c->args.empty()) continue;
      auto ms = parseTimeMs(c->arg(0));
      if (!ms) {
        tracker_.skip(*c, "invalid time '" + c->arg(0) + "'");
        continue;
      }
      if (*ms == 0 && std::string(g.name) == "keepalive_timeout") {
        tracker_.skip(*c,
                      "Sluice always keeps client connections alive (client_idle_timeout "
                      "bounds the wait)");
        continue;
      }
      if (chosen == nullptr) {
        chosen = c;
        *g.dst = formatDuration(*ms);
        serverComments_[g.key] = display(c->at);
        if (c->args.size() > 1)
          tracker_.differs(*c, "the second value (Keep-Alive: timeout=...) is not sent by Sluice");
        else
          tracker_.converted(*c);
      } else if (parseTimeMs(c->arg(0)) == parseTimeMs(chosen->arg(0))) {
        tracker_.converted(*c);
      } else {
        tracker_.differs(*c, std::string("Sluice has one ") + g.key +
                                 " for every server: " + **g.dst + " from " + display(chosen->at));
      }
    }
  }
  // large_client_header_buffers N SIZE: a head must fit N buffers of SIZE.
  if (const Directive* d = httpScope_->last("large_client_header_buffers")) {
    auto size = d->args.size() == 2 ? parseSize(d->arg(1)) : std::nullopt;
    auto n = d->args.size() == 2 ? parseSize(d->arg(0)) : std::nullopt;
    if (size && n) {
      uint64_t total = std::clamp<uint64_t>(*size * *n, 1024, 1024 * 1024);
      if (total != 32 * 1024) {
        maxHeader_ = formatSize(total);
        serverComments_["max_header_size"] = display(d->at);
      }
      tracker_.differs(*d, "Sluice limits the whole request head to " + formatSize(total) +
                               " (N x SIZE) and answers 431, not each line to SIZE");
    }
  }
}

std::vector<const Directive*> Converter::everywhere(std::string_view name) const {
  std::vector<const Directive*> found;
  std::function<void(const std::vector<Directive>&)> collect = [&](const auto& list) {
    for (const Directive& c : list) {
      if (c.name == name) found.push_back(&c);
      if (c.block && (c.name == "server" || c.name == "location" || c.name == "if"))
        collect(c.children);
    }
  };
  collect(http_->children);
  return found;
}

void Converter::realIp() {
  // nginx's realip module: a request from an address in set_real_ip_from has its client
  // address taken from real_ip_header (default X-Real-IP), each inherited from http to server
  // to location. Sluice's trusted_proxies does this for X-Forwarded-For, once for the whole
  // process, and always skips trusted addresses from the right of the list (nginx's
  // real_ip_recursive on; its default takes the last address). Converted only when every
  // context reads X-Forwarded-For: set at the http level and never overridden otherwise.
  const auto from = everywhere("set_real_ip_from");
  const auto header = everywhere("real_ip_header");
  const auto recursive = everywhere("real_ip_recursive");
  auto atHttp = [this](const Directive* d) {
    return std::any_of(http_->children.begin(), http_->children.end(),
                       [d](const Directive& c) { return &c == d; });
  };
  auto isXff = [](const Directive* d) {
    return d->args.size() == 1 && asciiLower(d->arg(0)) == "x-forwarded-for";
  };
  std::string why;  // set when nothing can be converted
  if (!from.empty()) {
    if (std::none_of(header.begin(), header.end(),
                     [&](const Directive* d) { return atHttp(d) && isXff(d); }))
      why =
          "nginx reads X-Real-IP (real_ip_header's default) where real_ip_header "
          "X-Forwarded-For is not set; Sluice takes the client address only from "
          "X-Forwarded-For, the same way everywhere (set it at the http level)";
    if (!std::all_of(header.begin(), header.end(), isXff))
      why = "Sluice takes the client address only from X-Forwarded-For (server.trusted_proxies)";
  }
  std::vector<std::string> ranges;
  for (const Directive* d : from) {
    Cidr c;
    const std::string a = d->args.size() == 1 ? d->arg(0) : "";
    if (d->args.size() != 1) {
      tracker_.skip(*d, "invalid set_real_ip_from");
    } else if (a.starts_with("unix:")) {
      tracker_.noEffect(*d, "Sluice listens on TCP only");
    } else if (!parseCidr(a, c)) {
      tracker_.skip(*d, "'" + a + "' is not an address or CIDR (host names are not converted)");
    } else if (!why.empty()) {
      tracker_.skip(*d, why);
    } else {
      if (std::find(ranges.begin(), ranges.end(), a) == ranges.end()) ranges.push_back(a);
      if (serverComments_.count("trusted_proxies") == 0)
        serverComments_["trusted_proxies"] = display(d->at);
      std::vector<std::string> diffs;
      if (!atHttp(d))
        diffs.push_back(
            "Sluice trusts these addresses on every listener, not only where this "
            "directive is");
      tracker_.outcome(*d, diffs);
    }
  }
  trustedProxies_ = ranges;
  // The headers and the recursion: converted with the list, else without effect or refused.
  const std::string unused =
      from.empty() ? "no set_real_ip_from uses it" : "no set_real_ip_from address was converted";
  bool recursiveEverywhere = false;
  for (const Directive* d : recursive) {
    if (d->args.size() != 1 || (d->arg(0) != "on" && d->arg(0) != "off"))
      tracker_.skip(*d, "invalid real_ip_recursive");
    else if (atHttp(d) && d->arg(0) == "on")
      recursiveEverywhere = true;
  }
  for (const Directive* d : recursive) {
    if (tracker_.fate(*d) != Fate::Unseen) continue;
    if (ranges.empty())
      tracker_.noEffect(*d, unused);
    else if (d->arg(0) == "on")
      tracker_.converted(*d);
    else
      tracker_.differs(*d,
                       "Sluice skips trusted addresses from the right of X-Forwarded-For "
                       "(as with real_ip_recursive on)");
  }
  const bool allOn = std::all_of(recursive.begin(), recursive.end(), [](const Directive* d) {
    return d->args.size() == 1 && d->arg(0) == "on";
  });
  for (const Directive* d : header) {
    if (!why.empty()) {
      tracker_.skip(*d, why);
    } else if (ranges.empty()) {
      tracker_.noEffect(*d, unused);
    } else if (!recursiveEverywhere || !allOn) {
      // How the list is read: said once per real_ip_header.
      tracker_.differs(*d,
                       "Sluice skips trusted addresses from the right of X-Forwarded-For (as "
                       "with real_ip_recursive on); where that is not on, nginx takes the last "
                       "address");
    } else {
      tracker_.converted(*d);
    }
  }
}

void Converter::bodySize() {
  // client_max_body_size: Sluice has one limit for everything, so the largest effective one
  // is kept (no upload that worked starts failing). nginx's default (1m) is effective in
  // every server that neither it nor the http level sets.
  const std::vector<const Directive*> found = everywhere("client_max_body_size");
  bool defaultApplies = !httpScope_->here("client_max_body_size");
  if (defaultApplies) {
    bool serverWithout = false;
    for (const ServerInfo& s : servers_)
      serverWithout = serverWithout || !s.scope->here("client_max_body_size");
    defaultApplies = serverWithout || servers_.empty();
  }
  std::optional<uint64_t> best;  // 0 = unlimited
  const Directive* bestAt = nullptr;
  if (defaultApplies) best = 1024 * 1024;
  for (const Directive* d : found) {
    auto v = d->args.size() == 1 ? parseSize(d->arg(0)) : std::nullopt;
    if (!v) {
      tracker_.skip(*d, "invalid size");
      continue;
    }
    const bool larger = !best || (*best != 0 && (*v == 0 || *v > *best));
    if (larger) {
      best = *v;
      bestAt = d;
    }
  }
  const std::string chosen = formatSize(best.value_or(1024 * 1024));
  maxBody_ = chosen;
  serverComments_["max_body_size"] =
      bestAt != nullptr ? "the largest client_max_body_size, " + display(bestAt->at)
                        : "nginx's default client_max_body_size";
  for (const Directive* d : found) {
    if (tracker_.fate(*d) == Fate::NotConverted) continue;
    if (formatSize(*parseSize(d->arg(0))) == chosen)
      tracker_.converted(*d);
    else
      tracker_.differs(*d, "Sluice has one max_body_size for every route: " + chosen +
                               " (the largest), so this smaller limit is not enforced");
  }
}

}  // namespace sluice::config::nginx
