// [[listener]] and its [listener.tls] table.
#include <unistd.h>

#include <chrono>
#include <string>

#include "config/sections.h"
#include "tls/tls_context.h"

namespace sluice::config {

namespace {

void loadCertificate(LoadContext& ctx, const toml::node& n, const std::string& w,
                     ListenerTls& tls) {
  const auto* ct = n.as_table();
  if (ct == nullptr) {
    ctx.error(posOf(n), w + ": expected a table { cert = ..., key = ... }");
    return;
  }
  ctx.checkKeys(*ct, {"cert", "key", "ocsp"}, {}, "in " + w);
  TlsCertificateConfig c;
  c.pos = posOf(n);
  if (const auto* v = ctx.required(*ct, "cert", c.pos, w)) {
    if (auto s = ctx.getString(*v, w + ".cert")) c.cert = ctx.resolvePath(*s);
  }
  if (const auto* v = ctx.required(*ct, "key", c.pos, w)) {
    if (auto s = ctx.getString(*v, w + ".key")) c.key = ctx.resolvePath(*s);
  }
  if (const auto* v = ct->get("ocsp")) {
    if (auto s = ctx.getString(*v, w + ".ocsp")) c.ocsp = ctx.resolvePath(*s);
  }
  if (!c.cert.empty() && !c.key.empty()) {
    std::string err;
    if (!tls::checkCertificatePair(c.cert, c.key, err)) ctx.error(c.pos, w + ": " + err);
  }
  if (!c.ocsp.empty() && access(c.ocsp.c_str(), R_OK) != 0)
    ctx.error(c.pos, w + ".ocsp: cannot read " + c.ocsp);
  tls.certificates.push_back(std::move(c));
}

void loadAlpn(LoadContext& ctx, const toml::node& v, const std::string& what, ListenerTls& tls) {
  const auto* a = v.as_array();
  if (a == nullptr) {
    ctx.error(posOf(v), what + ".alpn: expected an array like [\"http/1.1\"]");
    return;
  }
  tls.alpn.clear();
  for (size_t i = 0; i < a->size(); ++i) {
    auto s = ctx.getString((*a)[i], what + ".alpn[" + std::to_string(i) + "]");
    if (!s) continue;
    if (*s != "http/1.1" && *s != "http/1.0")
      ctx.error(posOf((*a)[i]), what +
                                    ".alpn: only \"http/1.1\" (and \"http/1.0\") can be "
                                    "served, got '" +
                                    *s + "'");
    else
      tls.alpn.push_back(*s);
  }
}

void loadListenerTls(LoadContext& ctx, const toml::node& n, const std::string& what,
                     ListenerTls& tls) {
  const auto* t = ctx.tableOf(n, what, "listener.tls");
  if (t == nullptr) return;
  ctx.checkKeys(
      *t, {"certificates", "min_version", "alpn", "hsts", "session_tickets", "session_timeout"}, {},
      "in [listener.tls]");
  tls.enabled = true;
  tls.pos = posOf(n);
  if (const auto* certs = ctx.required(*t, "certificates", tls.pos, what)) {
    const auto* arr = certs->as_array();
    if (arr == nullptr || arr->empty()) {
      ctx.error(posOf(*certs), what +
                                   ".certificates: expected a non-empty array of "
                                   "{ cert = \"...\", key = \"...\" } tables");
    } else {
      for (size_t i = 0; i < arr->size(); ++i)
        loadCertificate(ctx, (*arr)[i], what + ".certificates[" + std::to_string(i) + "]", tls);
    }
  }
  if (const auto* v = t->get("min_version")) {
    if (auto s = ctx.getString(*v, what + ".min_version")) {
      if (*s == "1.2" || *s == "1.3")
        tls.minVersion = *s;
      else
        ctx.error(posOf(*v), what + ".min_version: expected \"1.2\" or \"1.3\", got '" + *s + "'");
    }
  }
  if (const auto* v = t->get("alpn")) loadAlpn(ctx, *v, what, tls);
  if (const auto* v = t->get("hsts")) {
    if (auto s = ctx.getString(*v, what + ".hsts")) {
      if (!s->empty() && s->find("max-age=") == std::string::npos)
        ctx.error(posOf(*v), what +
                                 ".hsts: expected a Strict-Transport-Security value such as "
                                 "\"max-age=31536000\"");
      else if (s->find_first_of("\r\n") != std::string::npos)
        ctx.error(posOf(*v), what + ".hsts: must be one line");
      else
        tls.hsts = *s;
    }
  }
  if (const auto* v = t->get("session_tickets")) {
    if (auto b = ctx.getBool(*v, what + ".session_tickets")) tls.sessionTickets = *b;
  }
  if (const auto* v = t->get("session_timeout")) {
    // OpenSSL keeps session lifetimes in whole seconds; TLS 1.3 caps a ticket at 7 days, and a
    // session kept longer than a day mostly widens what a stolen one gives away.
    if (auto d = ctx.getDuration(*v, what + ".session_timeout", false)) {
      if (*d < std::chrono::seconds(1) || *d > std::chrono::hours(24) || d->count() % 1000 != 0)
        ctx.error(posOf(*v), what + ".session_timeout: expected whole seconds from 1s to 24h");
      else
        tls.sessionTimeout = *d;
    }
  }
}

void loadListener(LoadContext& ctx, NameRules& names, const toml::table& t, const std::string& what,
                  SourcePos pos) {
  ctx.checkKeys(
      t, {"name", "listen", "redirect_https", "max_connections_per_ip", "defer_accept", "tls"}, {},
      "in [[listener]]");
  ListenerConfig lc;
  lc.pos = pos;
  lc.name = names.nameKey(t, lc.pos, what);
  if (const auto* v = ctx.required(t, "listen", lc.pos, what)) {
    if (ctx.getListen(*v, what + ".listen", lc.listen)) {
      std::string owner = lc.name.empty() ? what : "listener '" + lc.name + "'";
      ctx.claimListenAddress(lc.listen, owner, posOf(*v), what + ".listen");
    }
  }
  if (const auto* v = t.get("redirect_https")) {
    if (auto s = ctx.getString(*v, what + ".redirect_https")) {
      if (s->find("{uri}") == std::string::npos && !s->starts_with("https://")) {
        ctx.error(posOf(*v), what +
                                 ".redirect_https: expected an https:// URL or a template "
                                 "containing {uri} (e.g. \"https://{host}{uri}\"), got '" +
                                 *s + "'");
      } else {
        lc.redirectHttps = *s;
      }
    }
  }
  if (const auto* v = t.get("max_connections_per_ip")) {
    // 0 = no cap (the default).
    if (auto n = ctx.getInt(*v, what + ".max_connections_per_ip", 0, kMaxConnectionsLimit))
      lc.maxConnectionsPerIp = uint32_t(*n);
  }
  if (const auto* v = t.get("defer_accept")) {
    if (auto b = ctx.getBool(*v, what + ".defer_accept")) lc.deferAccept = *b;
  }
  if (const auto* v = t.get("tls")) loadListenerTls(ctx, *v, what + ".tls", lc.tls);
  if (lc.tls.enabled && !lc.redirectHttps.empty())
    ctx.warn(lc.pos, what + ": redirect_https on a TLS listener redirects HTTPS to itself");
  ctx.config().listeners.push_back(std::move(lc));
}

}  // namespace

void loadListeners(LoadContext& ctx, const toml::node& n) {
  NameRules names(ctx, "listener");
  forEachArrayTable(ctx, n, "listener",
                    [&](const toml::table& t, const std::string& what, SourcePos pos) {
                      loadListener(ctx, names, t, what, pos);
                    });
}

}  // namespace sluice::config
