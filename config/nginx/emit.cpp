// The converted configuration as TOML text: a header that counts the directives and lists
// every warning and note, then [server], [log], listeners, pools, middleware and routes, each
// table with a comment naming the nginx directive it came from.
#include <cctype>
#include <cstdio>

#include "config/nginx/converter.h"

namespace sluice::config::nginx {

namespace {

// Comments are one line: control characters become spaces.
std::string oneLine(std::string_view s) {
  std::string out;
  for (char c : s) out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c);
  return out;
}

void comment(std::string& out, std::string_view text) {
  out += "# " + oneLine(text) + "\n";
}

void kv(std::string& out, const std::string& key, const std::string& value,
        const std::string& note = "") {
  std::string line = key + " = " + value;
  if (!note.empty()) {
    if (line.size() < 36) line.append(36 - line.size(), ' ');
    line += "  # " + oneLine(note);
  }
  out += line + "\n";
}

std::string stringList(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + tomlString(v[i]);
  return s + "]";
}

// A table name part: bare when TOML allows it, else quoted ("127.0.0.1-9000" has dots).
std::string tableKey(const std::string& name) {
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-')
      return tomlString(name);
  return name;
}

std::string noteOf(const std::map<std::string, std::string>& notes, const std::string& key) {
  auto it = notes.find(key);
  return it == notes.end() ? "" : it->second;
}

}  // namespace

std::string tomlString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04X", unsigned(u));
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  return out + "\"";
}

std::string tomlPattern(std::string_view s) {
  for (char c : s)
    if (c == '\'' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return tomlString(s);
  return "'" + std::string(s) + "'";
}

std::string Converter::toml(const ConvertResult& res) const {
  std::string out;
  comment(out,
          "Sluice configuration converted from " + opt_.source + " by " + opt_.generator + ".");
  comment(out, std::to_string(res.directives) +
                   " nginx directives: " + std::to_string(res.converted) + " converted, " +
                   std::to_string(res.notConverted) + " not converted.");
  if (!res.warnings.empty() || !res.notes.empty()) {
    comment(out, "Every directive that was not converted, or that Sluice runs differently, is");
    comment(out, "listed here and on stderr:");
    for (const Diag& w : res.warnings) comment(out, "  " + w.at.str() + ": warning: " + w.message);
    for (const Diag& n : res.notes) comment(out, "  " + n.at.str() + ": note: " + n.message);
  }
  out += "\n[server]\n";
  if (workers_) kv(out, "workers", *workers_, noteOf(serverComments_, "workers"));
  if (pidFile_) kv(out, "pid_file", tomlString(*pidFile_), noteOf(serverComments_, "pid_file"));
  if (shutdownTimeout_)
    kv(out, "shutdown_timeout", tomlString(*shutdownTimeout_),
       noteOf(serverComments_, "shutdown_timeout"));
  if (maxHeader_)
    kv(out, "max_header_size", tomlString(*maxHeader_), noteOf(serverComments_, "max_header_size"));
  if (maxBody_)
    kv(out, "max_body_size", tomlString(*maxBody_), noteOf(serverComments_, "max_body_size"));
  if (headerTimeout_)
    kv(out, "client_header_timeout", tomlString(*headerTimeout_),
       noteOf(serverComments_, "client_header_timeout"));
  if (idleTimeout_)
    kv(out, "client_idle_timeout", tomlString(*idleTimeout_),
       noteOf(serverComments_, "client_idle_timeout"));
  if (!trustedProxies_.empty())
    kv(out, "trusted_proxies", stringList(trustedProxies_),
       noteOf(serverComments_, "trusted_proxies"));
  if (logAccess_ || logFormat_ || logLevel_) {
    out += "\n[log]\n";
    if (logAccess_) kv(out, "access", tomlString(*logAccess_), noteOf(serverComments_, "access"));
    if (logFormat_) kv(out, "format", tomlString(*logFormat_), noteOf(serverComments_, "access"));
    if (logLevel_) kv(out, "level", tomlString(*logLevel_), noteOf(serverComments_, "level"));
  }
  for (const ListenerOut& l : listeners_) {
    out += "\n";
    for (const auto& c : l.comments) comment(out, c);
    out += "[[listener]]\n";
    kv(out, "name", tomlString(l.name));
    kv(out, "listen", tomlString(l.address));
    if (!l.redirect.empty()) kv(out, "redirect_https", tomlString(l.redirect));
    if (l.tls) {
      out += "[listener.tls]\n";
      out += "certificates = [\n";
      for (const auto& [cert, key] : l.certs)
        out += "  { cert = " + tomlString(cert) + ", key = " + tomlString(key) + " },\n";
      out += "]\n";
      if (!l.minVersion.empty()) kv(out, "min_version", tomlString(l.minVersion));
      if (!l.hsts.empty()) kv(out, "hsts", tomlString(l.hsts));
      if (l.sessionTickets) kv(out, "session_tickets", *l.sessionTickets ? "true" : "false");
      if (l.sessionTimeoutMs)
        kv(out, "session_timeout", tomlString(formatDuration(*l.sessionTimeoutMs)));
    }
  }
  for (const std::string& name : poolOrder_) {
    const PoolOut& p = pools_.at(name);
    out += "\n";
    for (const auto& c : p.comments) comment(out, c);
    out += "[pool." + tableKey(p.name) + "]\n";
    out += "backends = [\n";
    for (const BackendOut& be : p.backends) {
      std::string entry = "{ address = " + tomlString(be.address);
      if (be.weight != 1) entry += ", weight = " + std::to_string(be.weight);
      entry += " },";
      if (be.disabled.empty())
        out += "  " + entry + "\n";
      else
        out += "  # " + entry + "  " + oneLine(be.disabled) + "\n";
    }
    out += "]\n";
    if (!p.balance.empty()) kv(out, "balance", tomlString(p.balance));
    if (!p.hashKey.empty()) kv(out, "hash_key", tomlString(p.hashKey));
    if (p.connectMs)
      kv(out, "connect_timeout", tomlString(formatDuration(*p.connectMs)),
         noteOf(p.keyComments, "connect_timeout"));
    if (p.responseMs)
      kv(out, "response_timeout", tomlString(formatDuration(*p.responseMs)),
         noteOf(p.keyComments, "response_timeout"));
    if (p.idleMs)
      kv(out, "idle_timeout", tomlString(formatDuration(*p.idleMs)),
         noteOf(p.keyComments, "idle_timeout"));
    if (p.retries) kv(out, "retries", std::to_string(*p.retries), noteOf(p.keyComments, "retries"));
    if (p.maxConnections) kv(out, "max_connections", std::to_string(*p.maxConnections));
    if (p.tls) {
      kv(out, "tls", "true");
      if (p.tlsVerify)
        kv(out, "tls_verify", *p.tlsVerify ? "true" : "false", noteOf(p.keyComments, "tls_verify"));
      if (!p.tlsCa.empty()) kv(out, "tls_ca", tomlString(p.tlsCa));
      if (!p.tlsServerName.empty()) kv(out, "tls_server_name", tomlString(p.tlsServerName));
    }
    if (p.outlierFailures)
      kv(out, "outlier",
         "{ consecutive_failures = " + std::to_string(*p.outlierFailures) +
             ", ejection_time = " + tomlString(formatDuration(p.outlierMs.value_or(10000))) + " }",
         noteOf(p.keyComments, "outlier"));
  }
  for (const MiddlewareOut& m : middleware_) {
    out += "\n";
    for (const auto& c : m.comments) comment(out, c);
    out += "[middleware." + tableKey(m.name) + "]\n";
    for (const auto& [k, v] : m.keys) kv(out, k, v);
  }
  for (const RouteOut& r : routes_) {
    out += "\n";
    for (const auto& c : r.comments) comment(out, c);
    out += "[[route]]\n";
    kv(out, "name", tomlString(r.name));
    if (!r.host.empty()) kv(out, "host", tomlString(r.host));
    switch (r.match) {
      case RouteOut::Match::Path:
        kv(out, "path", tomlString(r.path));
        break;
      case RouteOut::Match::Exact:
        kv(out, "path_exact", tomlString(r.path));
        break;
      case RouteOut::Match::Regex:
        kv(out, "path_regex", tomlPattern(r.path));
        break;
    }
    if (r.prefixPriority) kv(out, "prefix_priority", "true");
    if (r.stripPrefix) kv(out, "strip_prefix", "true");
    if (!r.rewrite.empty()) kv(out, "rewrite", tomlString(r.rewrite));
    if (r.ret) {
      std::string t = "{ status = " + std::to_string(r.ret->status);
      if (!r.ret->location.empty()) t += ", location = " + tomlString(r.ret->location);
      if (r.ret->hasBody) t += ", body = " + tomlString(r.ret->body);
      if (r.ret->hasBody && !r.ret->contentType.empty())
        t += ", content_type = " + tomlString(r.ret->contentType);
      kv(out, "return", t + " }");
    } else if (r.stat) {
      const StaticOut& s = *r.stat;
      std::string t = "{ ";
      t += s.alias.empty() ? "root = " + tomlString(s.root) : "alias = " + tomlString(s.alias);
      if (!s.index.empty()) t += ", index = " + stringList(s.index);
      if (!s.tryFiles.empty()) t += ", try_files = " + stringList(s.tryFiles);
      if (!s.cacheControl.empty()) t += ", cache_control = " + tomlString(s.cacheControl);
      if (s.precompressed) t += ", precompressed = true";
      kv(out, "static", t + " }");
    } else {
      kv(out, "pool", tomlString(r.pool));
    }
    if (!r.middleware.empty()) kv(out, "middleware", stringList(r.middleware));
  }
  return out;
}

}  // namespace sluice::config::nginx
