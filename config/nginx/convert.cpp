// The converter's top level: the main, events and http contexts, the settings Sluice keeps
// once for the whole process ([server], [log]), server blocks, listeners (TLS, HTTP->HTTPS
// redirects) and the host groups that stand for nginx's server_name matching.
#include <algorithm>
#include <cctype>
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

// What nginx does with directives the converter has nothing to write for: fate and reason.
struct Known {
  std::string_view name;
  Fate fate;
  std::string_view why;
};

constexpr Known kKnown[] = {
    // no effect: Sluice does this itself, or it tunes nginx internals
    {"sendfile", Fate::NoEffect, "Sluice has no sendfile setting"},
    {"tcp_nopush", Fate::NoEffect, "Sluice sets its socket options itself"},
    {"tcp_nodelay", Fate::NoEffect, "Sluice always sets TCP_NODELAY"},
    {"types_hash_max_size", Fate::NoEffect, "nginx hash table sizing"},
    {"types_hash_bucket_size", Fate::NoEffect, "nginx hash table sizing"},
    {"server_names_hash_bucket_size", Fate::NoEffect, "nginx hash table sizing"},
    {"server_names_hash_max_size", Fate::NoEffect, "nginx hash table sizing"},
    {"variables_hash_max_size", Fate::NoEffect, "nginx hash table sizing"},
    {"variables_hash_bucket_size", Fate::NoEffect, "nginx hash table sizing"},
    {"proxy_headers_hash_max_size", Fate::NoEffect, "nginx hash table sizing"},
    {"proxy_headers_hash_bucket_size", Fate::NoEffect, "nginx hash table sizing"},
    {"server_tokens", Fate::NoEffect, "Sluice sends no version of its own in answers"},
    {"keepalive_requests", Fate::NoEffect,
     "Sluice does not cap the requests per client connection"},
    {"reset_timedout_connection", Fate::NoEffect, "Sluice closes timed-out connections itself"},
    {"open_file_cache", Fate::NoEffect, "nginx file descriptor cache"},
    {"open_file_cache_valid", Fate::NoEffect, "nginx file descriptor cache"},
    {"open_file_cache_min_uses", Fate::NoEffect, "nginx file descriptor cache"},
    {"open_file_cache_errors", Fate::NoEffect, "nginx file descriptor cache"},
    {"output_buffers", Fate::NoEffect, "nginx buffer sizing"},
    {"aio", Fate::NoEffect, "nginx file I/O tuning"},
    {"directio", Fate::NoEffect, "nginx file I/O tuning"},
    {"client_body_buffer_size", Fate::NoEffect, "Sluice streams request bodies"},
    {"client_header_buffer_size", Fate::NoEffect,
     "Sluice limits the whole request head with max_header_size"},
    {"client_body_temp_path", Fate::NoEffect, "Sluice never writes bodies to disk"},
    {"proxy_temp_path", Fate::NoEffect, "Sluice never writes bodies to disk"},
    {"fastcgi_temp_path", Fate::NoEffect, "Sluice never writes bodies to disk"},
    {"uwsgi_temp_path", Fate::NoEffect, "Sluice never writes bodies to disk"},
    {"scgi_temp_path", Fate::NoEffect, "Sluice never writes bodies to disk"},
    {"proxy_buffering", Fate::NoEffect, "Sluice streams responses with backpressure"},
    {"proxy_request_buffering", Fate::NoEffect, "Sluice streams request bodies"},
    {"proxy_buffers", Fate::NoEffect, "Sluice streams responses with backpressure"},
    {"proxy_buffer_size", Fate::NoEffect, "Sluice streams responses with backpressure"},
    {"proxy_busy_buffers_size", Fate::NoEffect, "Sluice streams responses with backpressure"},
    {"proxy_max_temp_file_size", Fate::NoEffect, "Sluice never writes bodies to disk"},
    {"proxy_temp_file_write_size", Fate::NoEffect, "Sluice never writes bodies to disk"},
    {"log_not_found", Fate::NoEffect, "Sluice logs every request in its access log"},
    {"resolver", Fate::NoEffect,
     "Sluice resolves backend host names with the system resolver, again every "
     "resolve_interval (5s)"},
    {"resolver_timeout", Fate::NoEffect, "Sluice uses the system resolver"},
    {"ssl_prefer_server_ciphers", Fate::NoEffect, "Sluice always prefers its own order"},
    {"ssl_ciphers", Fate::NoEffect,
     "Sluice's TLS 1.2 suites are fixed: ECDHE with AES-GCM or ChaCha20-Poly1305"},
    {"ssl_ecdh_curve", Fate::NoEffect, "Sluice uses OpenSSL's default groups"},
    {"ssl_dhparam", Fate::NoEffect, "Sluice uses ECDHE only"},
    {"ssl_buffer_size", Fate::NoEffect, "TLS record sizing is Sluice's"},
    {"ssl_stapling_verify", Fate::NoEffect, "Sluice staples from a file (ocsp = ...)"},
    {"ssl_trusted_certificate", Fate::NoEffect, "Sluice staples from a file (ocsp = ...)"},
    {"default_type", Fate::NoEffect, "only used for return bodies, and no location needs it"},
    {"charset_types", Fate::NoEffect, "no charset conversion in Sluice"},
    {"msie_padding", Fate::NoEffect, "nginx error page detail"},
    {"ignore_invalid_headers", Fate::NoEffect, "Sluice refuses malformed header names itself"},
    {"merge_slashes", Fate::NoEffect, "Sluice matches the path as sent (see the migration guide)"},
    {"lingering_close", Fate::NoEffect, "Sluice lingers on close itself"},
    {"lingering_time", Fate::NoEffect, "Sluice lingers on close itself"},
    {"lingering_timeout", Fate::NoEffect, "Sluice lingers on close itself"},
    {"client_header_buffer_size", Fate::NoEffect, "see max_header_size"},
    {"limit_req_log_level", Fate::NoEffect, "Sluice logs limited requests in the access log"},
    {"server_name_in_redirect", Fate::NoEffect, "Sluice writes redirect targets as given"},
    {"port_in_redirect", Fate::NoEffect, "Sluice writes redirect targets as given"},
    {"absolute_redirect", Fate::NoEffect, "Sluice writes redirect targets as given"},
    {"index", Fate::NoEffect, "no static location uses it"},
    {"root", Fate::NoEffect, "no static location uses it"},
    {"proxy_http_version", Fate::NoEffect, "Sluice always talks HTTP/1.1 to backends"},
    {"satisfy", Fate::NoEffect, "no access rules are converted"},
    {"etag", Fate::NoEffect, "static answers carry Sluice's own validators"},
    {"if_modified_since", Fate::NoEffect, "static answers follow Sluice's own rules"},
    {"chunked_transfer_encoding", Fate::NoEffect, "Sluice frames answers itself"},
    {"postpone_output", Fate::NoEffect, "nginx output tuning"},
    {"send_lowat", Fate::NoEffect, "nginx socket tuning"},
    {"gzip_vary", Fate::NoEffect, "only with gzip"},
    {"gzip_proxied", Fate::NoEffect, "only with gzip"},
    {"gzip_comp_level", Fate::NoEffect, "only with gzip"},
    {"gzip_buffers", Fate::NoEffect, "only with gzip"},
    {"gzip_http_version", Fate::NoEffect, "only with gzip"},
    {"gzip_min_length", Fate::NoEffect, "only with gzip"},
    {"gzip_types", Fate::NoEffect, "only with gzip"},
    {"gzip_disable", Fate::NoEffect, "only with gzip"},
    // change behaviour: said loudly
    {"gzip", Fate::NotConverted,
     "Sluice does not compress responses (compress in the backend, or precompress static "
     "files with gzip_static)"},
    {"gunzip", Fate::NotConverted, "Sluice does not decompress responses"},
    {"allow", Fate::NotConverted,
     "Sluice has no IP allow/deny lists: these requests are no longer filtered"},
    {"deny", Fate::NotConverted,
     "Sluice has no IP allow/deny lists: these requests are no longer filtered"},
    {"auth_basic", Fate::NotConverted,
     "Sluice has no basic authentication: these requests are no longer checked (use the jwt "
     "middleware, or check in the backend)"},
    {"auth_basic_user_file", Fate::NotConverted, "Sluice has no basic authentication"},
    {"auth_request", Fate::NotConverted, "Sluice has no subrequest authentication"},
    {"ssl_client_certificate", Fate::NotConverted, "Sluice does not verify client certificates"},
    {"ssl_verify_client", Fate::NotConverted, "Sluice does not verify client certificates"},
    {"ssl_verify_depth", Fate::NotConverted, "Sluice does not verify client certificates"},
    {"ssl_stapling", Fate::NotConverted,
     "Sluice staples OCSP only from a file: add ocsp = \"FILE.der\" to the certificate"},
    {"ssl_early_data", Fate::NotConverted, "Sluice does not accept TLS 1.3 early data"},
    {"error_page", Fate::NotConverted,
     "Sluice answers errors itself (JSON bodies); custom error pages are not supported"},
    {"proxy_intercept_errors", Fate::NotConverted, "Sluice passes backend errors through"},
    {"proxy_cache", Fate::NotConverted, "Sluice does not cache responses"},
    {"proxy_cache_path", Fate::NotConverted, "Sluice does not cache responses"},
    {"proxy_cache_valid", Fate::NotConverted, "Sluice does not cache responses"},
    {"proxy_cache_key", Fate::NotConverted, "Sluice does not cache responses"},
    {"proxy_cache_bypass", Fate::NotConverted, "Sluice does not cache responses"},
    {"proxy_no_cache", Fate::NotConverted, "Sluice does not cache responses"},
    {"proxy_cache_use_stale", Fate::NotConverted, "Sluice does not cache responses"},
    {"proxy_cache_lock", Fate::NotConverted, "Sluice does not cache responses"},
    {"proxy_cache_methods", Fate::NotConverted, "Sluice does not cache responses"},
    {"proxy_cache_min_uses", Fate::NotConverted, "Sluice does not cache responses"},
    {"proxy_cache_revalidate", Fate::NotConverted, "Sluice does not cache responses"},
    {"proxy_cache_background_update", Fate::NotConverted, "Sluice does not cache responses"},
    {"real_ip_header", Fate::NotConverted,
     "Sluice does not take the client address from a header yet (server.trusted_proxies is "
     "accepted but not used)"},
    {"set_real_ip_from", Fate::NotConverted,
     "Sluice does not take the client address from a header yet"},
    {"real_ip_recursive", Fate::NotConverted,
     "Sluice does not take the client address from a header yet"},
    {"limit_conn", Fate::NotConverted, "Sluice has no per-key connection limits"},
    {"limit_conn_zone", Fate::NotConverted, "Sluice has no per-key connection limits"},
    {"limit_conn_status", Fate::NotConverted, "Sluice has no per-key connection limits"},
    {"limit_rate", Fate::NotConverted, "Sluice does not throttle response bandwidth"},
    {"limit_rate_after", Fate::NotConverted, "Sluice does not throttle response bandwidth"},
    {"sub_filter", Fate::NotConverted, "Sluice does not rewrite response bodies"},
    {"sub_filter_once", Fate::NotConverted, "Sluice does not rewrite response bodies"},
    {"sub_filter_types", Fate::NotConverted, "Sluice does not rewrite response bodies"},
    {"ssi", Fate::NotConverted, "Sluice does not process server-side includes"},
    {"mirror", Fate::NotConverted, "Sluice does not mirror requests"},
    {"proxy_cookie_path", Fate::NotConverted, "Sluice does not rewrite Set-Cookie"},
    {"proxy_cookie_domain", Fate::NotConverted, "Sluice does not rewrite Set-Cookie"},
    {"proxy_set_body", Fate::NotConverted, "Sluice forwards the request body as sent"},
    {"proxy_method", Fate::NotConverted, "Sluice forwards the request method as sent"},
    {"proxy_pass_request_headers", Fate::NotConverted, "Sluice always forwards the headers"},
    {"proxy_pass_request_body", Fate::NotConverted, "Sluice always forwards the body"},
    {"proxy_ignore_headers", Fate::NotConverted, "Sluice acts on no X-Accel-* headers"},
    {"proxy_pass_header", Fate::NotConverted,
     "Sluice passes the backend's Server and Date headers through already"},
    {"proxy_store", Fate::NotConverted, "Sluice does not store responses"},
    {"proxy_ssl_certificate", Fate::NotConverted,
     "Sluice does not present client certificates to backends"},
    {"proxy_ssl_certificate_key", Fate::NotConverted,
     "Sluice does not present client certificates to backends"},
    {"proxy_ssl_protocols", Fate::NotConverted, "Sluice talks TLS 1.2 or 1.3 to backends"},
    {"proxy_ssl_ciphers", Fate::NotConverted, "Sluice uses OpenSSL's defaults to backends"},
    {"proxy_ssl_session_reuse", Fate::NoEffect, "Sluice keeps upstream connections alive"},
    {"proxy_socket_keepalive", Fate::NoEffect, "Sluice's own socket options"},
    {"proxy_send_timeout", Fate::NotConverted,
     "Sluice has no timeout for a backend that stops reading the request (a slow upload is "
     "bounded by server.client_idle_timeout)"},
    {"proxy_next_upstream_timeout", Fate::NotConverted,
     "Sluice bounds retries by their number only"},
    {"autoindex", Fate::NotConverted, "Sluice does not list directories"},
    {"charset", Fate::NotConverted, "Sluice does not add or convert charsets"},
    {"source_charset", Fate::NotConverted, "Sluice does not convert charsets"},
    {"expires", Fate::NotConverted,
     "only converted on static locations (cache_control); add a headers middleware for "
     "proxied ones"},
    {"client_body_timeout", Fate::Differs,
     "Sluice bounds pauses in a request body with server.client_idle_timeout"},
    {"send_timeout", Fate::NotConverted,
     "Sluice has no timeout for a client that stops reading an answer"},
    {"log_format", Fate::NotConverted,
     "Sluice's access log is json or combined; custom formats are not supported"},
    {"open_log_file_cache", Fate::NoEffect, "Sluice keeps its access log open"},
    {"try_files", Fate::NotConverted, "only converted on static locations"},
    {"alias", Fate::NotConverted, "only converted on static locations"},
    {"gzip_static", Fate::NoEffect, "no static location uses it"},
    {"limit_req_status", Fate::NoEffect, "no location uses limit_req"},
    {"add_trailer", Fate::NotConverted, "Sluice adds no trailers"},
    {"more_set_headers", Fate::NotConverted, "headers-more is not converted"},
    {"more_clear_headers", Fate::NotConverted, "headers-more is not converted"},
    {"stub_status", Fate::NotConverted,
     "Sluice's counters are on the admin listener: add [admin] listen = ... and read /metrics"},
    {"internal", Fate::NotConverted, "internal locations are only reached by internal redirects"},
    {"access_log", Fate::Differs, "Sluice has one access log"},
    {"error_log", Fate::Differs, "Sluice has one event log, on stderr"},
    {"keepalive_timeout", Fate::Differs, "Sluice has one client_idle_timeout"},
    {"client_header_timeout", Fate::Differs, "Sluice has one client_header_timeout"},
    {"large_client_header_buffers", Fate::Differs, "Sluice has one max_header_size"},
    {"ssl_session_cache", Fate::NoEffect,
     "Sluice always keeps a shared cache of 20,000 sessions for every worker"},
    {"ssl_session_tickets", Fate::NoEffect, "set on the listener"},
    {"ssl_session_timeout", Fate::NoEffect, "no TLS listener uses it"},
    {"ssl_protocols", Fate::NoEffect, "no TLS listener uses it"},
    {"ssl_certificate", Fate::NoEffect, "no TLS listener uses it"},
    {"ssl_certificate_key", Fate::NoEffect, "no TLS listener uses it"},
    {"proxy_set_header", Fate::NoEffect, "no proxied location uses it"},
    {"add_header", Fate::NoEffect, "no location uses it"},
    {"proxy_hide_header", Fate::NoEffect, "no proxied location uses it"},
    {"proxy_connect_timeout", Fate::NoEffect, "no proxied location uses it"},
    {"proxy_read_timeout", Fate::NoEffect, "no proxied location uses it"},
    {"proxy_next_upstream", Fate::NoEffect, "no proxied location uses it"},
    {"proxy_next_upstream_tries", Fate::NoEffect, "no proxied location uses it"},
    {"proxy_redirect", Fate::NoEffect, "no proxied location uses it"},
    {"proxy_ssl_verify", Fate::NoEffect, "no HTTPS backend uses it"},
    {"proxy_ssl_trusted_certificate", Fate::NoEffect, "no HTTPS backend uses it"},
    {"proxy_ssl_name", Fate::NoEffect, "no HTTPS backend uses it"},
    {"proxy_ssl_server_name", Fate::NoEffect, "no HTTPS backend uses it"},
    {"limit_req", Fate::NoEffect, "no location uses it"},
    {"client_max_body_size", Fate::Converted, ""},
};

const Known* known(std::string_view name) {
  for (const Known& k : kKnown)
    if (k.name == name) return &k;
  return nullptr;
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
    std::vector<const Directive*> found;
    std::function<void(const std::vector<Directive>&)> collect = [&](const auto& list) {
      for (const Directive& c : list) {
        if (c.name == g.name) found.push_back(&c);
        if (c.block && (c.name == "server" || c.name == "location" || c.name == "if"))
          collect(c.children);
      }
    };
    collect(http_->children);
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

void Converter::bodySize() {
  // client_max_body_size: Sluice has one limit for everything, so the largest effective one
  // is kept (no upload that worked starts failing). nginx's default (1m) is effective in
  // every server that neither it nor the http level sets.
  std::vector<const Directive*> found;
  std::function<void(const std::vector<Directive>&)> collect = [&](const auto& list) {
    for (const Directive& c : list) {
      if (c.name == "client_max_body_size") found.push_back(&c);
      if (c.block && (c.name == "server" || c.name == "location" || c.name == "if"))
        collect(c.children);
    }
  };
  collect(http_->children);
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

// ---- servers ---------------------------------------------------------------------------

void Converter::server(const Directive& d) {
  ServerInfo s;
  s.d = &d;
  s.scope = std::make_unique<Scope>(httpScope_.get());
  tracker_.converted(d);
  for (const Directive& c : d.children) {
    const std::string& n = c.name;
    if (n == "listen") {
      ListenSpec spec;
      std::vector<std::string> args;
      for (const Arg& a : c.args) args.push_back(a.text);
      std::string err;
      if (!parseListen(args, spec, err)) {
        tracker_.skip(c, err);
        continue;
      }
      std::vector<std::string> notes;
      if (spec.http2)
        notes.push_back(
            "HTTP/2 is not supported yet: clients speak HTTP/1.1 (ALPN offers "
            "http/1.1)");
      if (!spec.unsupported.empty()) {
        std::string list;
        for (const auto& u : spec.unsupported) list += (list.empty() ? "" : ", ") + u;
        notes.push_back("parameters left out: " + list);
      }
      if (spec.ipv6 && !spec.ipv6only)
        notes.push_back(
            "ipv6only=off: Sluice's IPv6 listeners accept IPv6 only; add a "
            "listener for 0.0.0.0 as well");
      if (spec.localhost) notes.push_back("'localhost' is written as 127.0.0.1");
      tracker_.outcome(c, notes);
      s.listens.emplace_back(spec, &c);
    } else if (n == "server_name") {
      serverNames(s, c);
    } else if (n == "location") {
      if (c.block) s.locations.push_back(&c);
    } else if (n == "rewrite" || n == "return" || n == "if" || n == "set" || n == "break") {
      continue;  // the rewrite phase, in order (serverRewritePhase)
    } else if (n == "ssl" && c.args.size() == 1) {
      if (c.arg(0) == "on") {
        for (auto& l : s.listens) l.first.ssl = true;
        s.sslOn = true;
      }
      tracker_.converted(c);
    } else if (n == "error_log") {
      errorLog(c, false);
    } else {
      s.scope->add(c);
    }
  }
  if (s.sslOn)
    for (auto& l : s.listens) l.first.ssl = true;
  if (s.listens.empty()) {
    bool any = false;
    for (const Directive& c : d.children) any = any || c.name == "listen";
    if (!any) {
      ListenSpec spec;
      spec.address = "0.0.0.0:80";
      spec.port = 80;
      spec.ssl = s.sslOn;
      s.listens.emplace_back(spec, &d);
      tracker_.differs(d,
                       "no listen directive: nginx listens on *:80 when started as root "
                       "(*:8000 otherwise); the listener is 0.0.0.0:80");
    }
  }
  if (s.label.empty()) s.label = "server-" + std::to_string(d.at.line);
  serverRewritePhase(s);
  servers_.push_back(std::move(s));
}

void Converter::serverNames(ServerInfo& s, const Directive& d) {
  std::vector<std::string> problems;
  for (const Arg& a : d.args) {
    std::string n = a.text;
    std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
    if (n.empty() || n == "_") continue;  // requests without Host / the catch-all convention
    if (n.starts_with("~")) {
      problems.push_back("'" + a.text + "' (regular-expression names are not supported)");
      continue;
    }
    if (n.find('$') != std::string::npos) {
      problems.push_back("'" + a.text + "' (variables are not supported)");
      continue;
    }
    std::vector<std::string> names;
    if (n.starts_with(".")) {
      names = {n.substr(1), "*" + n};
    } else {
      names = {n};
    }
    for (const std::string& h : names) {
      if (h.ends_with(".*") || h.find('*', h.starts_with("*.") ? 1 : 0) != std::string::npos) {
        problems.push_back("'" + a.text + "' (only leading wildcards *.domain are supported)");
        continue;
      }
      if (!isRouteHost(h)) {
        problems.push_back("'" + a.text + "' (not a host name Sluice routes on)");
        continue;
      }
      if (std::find(s.hosts.begin(), s.hosts.end(), h) == s.hosts.end()) s.hosts.push_back(h);
    }
  }
  if (s.label.empty() && !s.hosts.empty()) s.label = s.hosts.front();
  if (problems.empty()) {
    tracker_.converted(d);
    return;
  }
  std::string list;
  for (const auto& p : problems) list += (list.empty() ? "" : ", ") + p;
  if (s.hosts.empty())
    tracker_.skip(d, list);
  else
    tracker_.differs(d, "names left out: " + list);
}

// The server-level rewrite phase runs for every request before any location is chosen: a
// `return` first in it answers everything; `rewrite`s become pattern routes (locations.cpp).
void Converter::serverRewritePhase(ServerInfo& s) {
  for (const Directive& c : s.d->children) {
    const std::string& n = c.name;
    if (n != "rewrite" && n != "return" && n != "if" && n != "set" && n != "break") continue;
    if (s.returnAll) {
      tracker_.noEffect(c, "never reached: the return at " + display(s.returnAllAt->at) +
                               " answers every request first");
      continue;
    }
    if (n == "return") {
      RouteOut r;
      if (returnRoute(s, c, *s.scope, r)) {
        s.returnAll = r.ret;
        s.returnAllAt = &c;
      }
    } else if (n == "rewrite") {
      s.rewrites.push_back(&c);
    } else if (n == "if") {
      if (!schemeRedirect(s, c))
        tracker_.skipBlock(c,
                           "if blocks are not converted (Sluice routes on host, path and "
                           "method only)");
    } else {
      tracker_.skip(c, "variables and rewrite-phase control are not converted");
    }
  }
}

// if ($scheme = http) { return 301 https://$host$request_uri; } in a server that listens with
// and without TLS: the redirect of its plain listeners (decided in listeners()).
bool Converter::schemeRedirect(ServerInfo& s, const Directive& c) {
  std::string cond;
  for (const Arg& a : c.args) cond += a.text;
  const bool plainOnly = cond == "($scheme=http)" || cond == "($scheme!=https)" ||
                         cond == "($scheme=\"http\")" || cond == "($scheme!=\"https\")";
  bool tls = false, plain = false;
  for (const auto& [spec, at] : s.listens) (spec.ssl ? tls : plain) = true;
  if (!plainOnly || !tls || !plain || c.children.size() != 1 || c.children[0].name != "return")
    return false;
  RouteOut r;
  if (!returnRoute(s, c.children[0], *s.scope, r) || r.ret->location.empty()) return false;
  s.plainRedirect = r.ret;
  s.plainRedirectAt = &c.children[0];
  s.plainRedirectIf = &c;
  return true;
}

// ---- listeners -------------------------------------------------------------------------

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
      std::string name = d->args.empty() ? "" : d->arg(0);
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return char(std::tolower(c)); });
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

// ---- host groups -----------------------------------------------------------------------

namespace {

// Does wildcard `w` ("*.example.com") take requests for `name` before `name`'s own group?
bool covers(const std::string& w, const std::string& name) {
  if (!w.starts_with("*.") || w == name) return false;
  const std::string suffix = w.substr(1);  // ".example.com"
  std::string n = name.starts_with("*.") ? name.substr(1) : name;
  if (name.starts_with("*.")) return n.size() > suffix.size() && n.ends_with(suffix);
  return n.size() > suffix.size() && n.ends_with(suffix);
}

}  // namespace

void Converter::hostGroups() {
  auto onContentListener = [&](size_t i) {
    for (const auto& l : listeners_)
      if (l.redirect.empty() && std::find(l.servers.begin(), l.servers.end(), i) != l.servers.end())
        return true;
    return false;
  };
  std::optional<size_t> hostless;
  for (const auto& l : listeners_) {
    if (!l.redirect.empty()) continue;
    if (!hostless) {
      hostless = l.defaultServer;
    } else if (l.defaultServer != *hostless) {
      const ServerInfo& s = servers_[l.defaultServer];
      tracker_.differs(*s.d, "default server of " + l.address +
                                 ": Sluice's routes are not per listener; requests whose Host "
                                 "no server_name matches go to the routes without host, which "
                                 "come from the server at " +
                                 display(servers_[*hostless].d->at));
    }
  }
  std::map<std::string, size_t> claimed;
  std::vector<std::vector<std::string>> names(servers_.size());
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (!onContentListener(i)) continue;
    for (const auto& h : servers_[i].hosts) {
      auto [it, fresh] = claimed.emplace(h, i);
      if (fresh) {
        names[i].push_back(h);
      } else if (it->second != i) {
        for (const Directive& c : servers_[i].d->children)
          if (c.name == "server_name")
            tracker_.differs(c, "'" + h + "' is also a name of the server at " +
                                    display(servers_[it->second].d->at) +
                                    ": Sluice's routes are not per listener, so that server's "
                                    "routes answer it on every listener");
      }
    }
  }
  // The groups: the default server's routes without host (and under those of its names that
  // another server's wildcard would take first), every other server's under each name.
  std::vector<std::pair<size_t, std::string>> groups;  // (server, host; "" = no host)
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (!onContentListener(i)) continue;
    if (hostless && *hostless == i) {
      groups.emplace_back(i, "");
      for (const auto& h : names[i]) {
        bool covered = false;
        for (size_t j = 0; j < servers_.size(); ++j)
          for (const auto& w : names[j]) covered = covered || (j != i && covers(w, h));
        if (covered) groups.emplace_back(i, h);
      }
    } else {
      for (const auto& h : names[i]) groups.emplace_back(i, h);
      if (names[i].empty())
        tracker_.skipBlock(*servers_[i].d,
                           "this server is not reachable in Sluice: it has no "
                           "server_name of its own and is not the default server");
    }
  }
  for (const auto& [i, host] : groups)
    emitServerRoutes(servers_[i], host, host.empty() && hostless && *hostless == i,
                     groups.size() > 1);
}

RouteOut Converter::catchAll(ServerInfo& s) {
  RouteOut r;
  r.hint = "other";
  r.match = RouteOut::Match::Path;
  r.path = "/";
  r.order = 3;
  if (const Directive* root = s.scope->last("root")) {
    LocationMatch m;
    m.kind = LocationMatch::Kind::Prefix;
    m.path = "/";
    r.comments.push_back("paths no location matches: nginx serves them from the server's root");
    if (staticRoute(nullptr, *s.d, m, *s.scope, r)) return r;
    (void)root;
  }
  ReturnOut ret;
  ret.status = 404;
  r.ret = ret;
  r.stat.reset();
  r.comments = {
      "paths no location of this server matches: nginx answers 404 (from its default "
      "root) and never asks another server"};
  return r;
}

void Converter::emitServerRoutes(ServerInfo& s, const std::string& host, bool hostless,
                                 bool labelled) {
  std::vector<RouteOut> list;
  if (s.returnAll) {
    RouteOut r;
    r.hint = "all";
    r.path = "/";
    r.ret = s.returnAll;
    r.comments.push_back(from(*s.returnAllAt));
    list.push_back(r);
  } else {
    list = s.routes;
    std::stable_sort(list.begin(), list.end(),
                     [](const RouteOut& a, const RouteOut& b) { return a.order < b.order; });
    if (!s.hasRootLocation && (!hostless || s.scope->last("root") != nullptr))
      list.push_back(catchAll(s));
  }
  const std::string label = host.starts_with("*.") ? "any." + host.substr(2) : host;
  for (RouteOut& r : list) {
    r.host = host;
    if (labelled) r.hint = (label.empty() ? std::string("default") : label) + "-" + r.hint;
    if (list.size() == 1 && r.comments.empty()) r.comments.push_back(from(*s.d));
    routes_.push_back(std::move(r));
  }
  if (!list.empty()) {
    std::string what = hostless ? "requests for any other host" : "server_name " + host;
    routes_[routes_.size() - list.size()].comments.insert(
        routes_[routes_.size() - list.size()].comments.begin(),
        "--- " + what + " (server at " + display(s.d->at) + ")");
  }
}

void Converter::unusedUpstreams() {
  for (const auto& [name, info] : upstreams_) {
    if (tracker_.fate(*info.d) != Fate::Unseen) continue;
    tracker_.noEffect(*info.d, "no converted location uses it, so it is not written");
    for (const Directive& c : info.d->children) tracker_.noEffect(c, "its upstream is not used");
  }
}

void Converter::nameRoutes() {
  std::set<std::string> used;
  for (RouteOut& r : routes_) {
    std::string base;
    for (char c : r.hint) {
      const bool ok =
          std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
      if (ok)
        base.push_back(c);
      else if (!base.empty() && base.back() != '-')
        base.push_back('-');
    }
    while (!base.empty() && base.back() == '-') base.pop_back();
    while (!base.empty() && base.front() == '-') base.erase(base.begin());
    if (base.empty()) base = "route";
    std::string name = base;
    for (int n = 2; used.count(name) != 0; ++n) name = base + "-" + std::to_string(n);
    used.insert(name);
    r.name = name;
  }
}

// Directives no part of the converter took: the known ones get their reason.
void Converter::sweep(const std::vector<Directive>& list, bool inHttp) {
  for (const Directive& d : list) {
    if (inHttp && tracker_.fate(d) == Fate::Unseen) {
      if (const Known* k = known(d.name)) {
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
