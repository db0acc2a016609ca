// A [[route]]'s own answers instead of a pool: `return` (a fixed status, redirect or body) and
// `static` (files from a directory). Called by loadRoute (route_section.cpp).
#include <algorithm>
#include <string>

#include <sys/stat.h>

#include "config/sections.h"

namespace sluice::config {

namespace {

// A location template: literal text and {host}, {uri}, {scheme}. Returns an error or "".
std::string checkLocationTemplate(std::string_view tpl) {
  for (size_t i = 0; i < tpl.size(); ++i) {
    if (tpl[i] != '{') continue;
    const size_t close = tpl.find('}', i);
    const std::string_view name =
        tpl.substr(i, close == std::string_view::npos ? std::string_view::npos : close - i + 1);
    if (name != "{host}" && name != "{uri}" && name != "{scheme}")
      return "unknown placeholder '" + std::string(name) +
             "' (expected {host}, {uri} or {scheme}; write '{' as %7B)";
    i = close;
  }
  return {};
}

}  // namespace

// return = { status = 301, location = "https://{host}{uri}" } or
// return = { status = 200, body = "ok", content_type = "text/plain" }
void loadReturn(LoadContext& ctx, const toml::node& n, const std::string& routeWhat,
                RouteConfig& rc) {
  const std::string what = routeWhat + ".return";
  const auto* t = ctx.tableOf(n, what);
  if (t == nullptr) return;
  ctx.checkKeys(*t, {"status", "location", "body", "content_type"}, {}, "in " + what);
  ReturnConfig& r = rc.ret;
  r.enabled = true;
  r.pos = posOf(n);
  if (const auto* v = ctx.required(*t, "status", r.pos, what, "e.g. status = 301")) {
    if (auto x = ctx.getInt(*v, what + ".status", 200, 599)) r.status = int(*x);
  }
  const bool redirect = r.status >= 300 && r.status <= 399;
  if (const auto* v = t->get("location")) {
    if (auto s = ctx.getString(*v, what + ".location")) {
      std::string err = checkLocationTemplate(*s);
      if (r.status != 0 && !redirect) {
        ctx.error(posOf(*v), what + ".location: only allowed with a 3xx status");
      } else if (s->empty() || hasSpaceOrControl(*s)) {
        ctx.error(posOf(*v), what +
                                 ".location: must be non-empty, without spaces or control "
                                 "characters");
      } else if (!err.empty()) {
        ctx.error(posOf(*v), what + ".location: " + err);
      } else {
        r.location = *s;
      }
    }
  } else if (redirect) {
    ctx.error(r.pos, what + ": a " + std::to_string(r.status) +
                         " needs 'location' (e.g. location = \"https://{host}{uri}\")");
  }
  const auto* bodyNode = t->get("body");
  if (bodyNode != nullptr) {
    if (auto s = ctx.getString(*bodyNode, what + ".body")) {
      if (r.status == 204 || r.status == 304) {
        ctx.error(posOf(*bodyNode), what + ".body: a " + std::to_string(r.status) + " has no body");
      } else {
        r.body = *s;
      }
    }
  }
  if (const auto* v = t->get("content_type")) {
    if (auto s = ctx.getString(*v, what + ".content_type")) {
      if (bodyNode == nullptr) {
        ctx.error(posOf(*v), what + ".content_type: only allowed with 'body'");
      } else if (s->empty() || s->find_first_of("\r\n") != std::string::npos) {
        ctx.error(posOf(*v), what + ".content_type: must be a non-empty single-line value");
      } else {
        r.contentType = *s;
      }
    }
  } else if (bodyNode != nullptr) {
    r.contentType = "text/plain";
  }
}

namespace {

// A try_files entry: a path template where `$uri` is the only variable ("$uri", "$uri/",
// "/index.html", "$uri.html"); the last entry may also be "=CODE". Returns an error or "".
std::string checkTryFile(std::string_view e, bool last) {
  if (e.empty()) return "must not be empty";
  if (e[0] == '=') {
    if (!last) return "'" + std::string(e) + "': a code (=CODE) is only allowed as the last entry";
    const std::string_view code = e.substr(1);
    if (code.size() != 3 ||
        !std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        code < "200" || code > "599")
      return "'" + std::string(e) + "': expected =CODE with a status 200-599 (e.g. =404)";
    return "";
  }
  if (hasSpaceOrControl(e)) return "'" + std::string(e) + "': no spaces or control characters";
  for (size_t i = e.find('$'); i != std::string_view::npos; i = e.find('$', i + 1)) {
    if (e.compare(i, 4, "$uri") != 0)
      return "'" + std::string(e) + "': only $uri can be used (the request path)";
  }
  if (e[0] != '/' && e.compare(0, 4, "$uri") != 0)
    return "'" + std::string(e) + "': must start with '/' or $uri";
  return "";
}

}  // namespace

// static = { root | alias, index, try_files, cache_control, precompressed, cache_valid }
void loadStatic(LoadContext& ctx, const toml::node& n, const std::string& routeWhat,
                bool regexRoute, RouteConfig& rc) {
  const std::string what = routeWhat + ".static";
  const auto* t = ctx.tableOf(n, what);
  if (t == nullptr) return;
  ctx.checkKeys(
      *t, {"root", "alias", "index", "try_files", "cache_control", "precompressed", "cache_valid"},
      {}, "in " + what);
  StaticConfig& f = rc.files;
  f.enabled = true;
  f.pos = posOf(n);
  const auto* rootNode = t->get("root");
  const auto* aliasNode = t->get("alias");
  if ((rootNode != nullptr) == (aliasNode != nullptr)) {
    ctx.error(f.pos, what + ": use exactly one of 'root' and 'alias' (the directory of the files)");
    return;
  }
  const toml::node& dirNode = rootNode ? *rootNode : *aliasNode;
  const std::string key = rootNode ? "root" : "alias";
  f.alias = aliasNode != nullptr;
  if (f.alias && regexRoute) {
    ctx.error(posOf(dirNode), what +
                                  ".alias: only with 'path' or 'path_exact' (use 'root' with "
                                  "'path_regex')");
  }
  if (auto s = ctx.getString(dirNode, what + "." + key)) {
    if (s->empty() || s->find('\0') != std::string::npos) {
      ctx.error(posOf(dirNode), what + "." + key + ": must be a directory path");
    } else {
      f.dir = ctx.resolvePath(*s);
      while (f.dir.size() > 1 && f.dir.back() == '/') f.dir.pop_back();
      struct stat st {};
      if (::stat(f.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        ctx.warn(posOf(dirNode), what + "." + key + ": '" + f.dir +
                                     "' is not a directory (yet): its requests answer 404");
    }
  }
  if (const auto* v = t->get("index")) {
    if (auto list = ctx.getStringArray(*v, what + ".index")) {
      f.index.clear();
      for (const auto& e : *list) {
        if (e.value.empty() || e.value.find('/') != std::string::npos || e.value == "." ||
            e.value == ".." || hasSpaceOrControl(e.value)) {
          ctx.error(e.pos, what + ".index: '" + e.value + "' must be a file name (no '/')");
        } else {
          f.index.push_back(e.value);
        }
      }
    }
  }
  if (const auto* v = t->get("try_files")) {
    if (auto list = ctx.getStringArray(*v, what + ".try_files")) {
      if (list->empty()) ctx.error(posOf(*v), what + ".try_files: must not be empty");
      for (size_t i = 0; i < list->size(); ++i) {
        const auto& e = (*list)[i];
        std::string err = checkTryFile(e.value, i + 1 == list->size());
        if (!err.empty())
          ctx.error(e.pos, what + ".try_files: " + err);
        else
          f.tryFiles.push_back(e.value);
      }
    }
  }
  if (const auto* v = t->get("cache_control")) {
    if (auto s = ctx.getString(*v, what + ".cache_control")) {
      if (s->empty() || s->find_first_of("\r\n") != std::string::npos)
        ctx.error(posOf(*v), what + ".cache_control: must be a non-empty single-line value");
      else
        f.cacheControl = *s;
    }
  }
  if (const auto* v = t->get("precompressed")) {
    if (auto b = ctx.getBool(*v, what + ".precompressed")) f.precompressed = *b;
  }
  if (const auto* v = t->get("cache_valid")) {
    if (auto d = ctx.getDuration(*v, what + ".cache_valid", true)) {
      if (d->count() > 3600 * 1000)
        ctx.error(posOf(*v), what + ".cache_valid: at most 1h");
      else
        f.cacheValid = *d;
    }
  }
}

}  // namespace sluice::config
