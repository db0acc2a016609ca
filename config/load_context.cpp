#include "config/load_context.h"

#include <algorithm>
#include <sstream>

#include "config/units.h"

namespace sluice::config {

namespace {

bool contains(Keys keys, std::string_view key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

bool isValidName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Identity of a bound address for duplicate detection: family + address bytes + port, so
// "[::]:80" and "[0::0]:80" compare equal.
std::string listenKey(const HostPort& hp) {
  sockaddr_storage ss;
  socklen_t len = 0;
  if (!toSockaddr(hp, ss, len)) return formatHostPort(hp);
  return std::string(reinterpret_cast<const char*>(&ss), len);
}

}  // namespace

SourcePos toPos(const toml::source_region& r) {
  // Implicitly created tables have no position; point at the top of the file instead of 0:0
  // so every message keeps the FILE:LINE:COL shape.
  if (r.begin.line == 0) return {1, 1};
  return {static_cast<int>(r.begin.line), static_cast<int>(r.begin.column)};
}

SourcePos posOf(const toml::node& n) {
  return toPos(n.source());
}

std::string typeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      return "a date/time";
    default:
      return "nothing";
  }
}

std::string lineRef(SourcePos p) {
  return "line " + std::to_string(p.line);
}

bool hasSpaceOrControl(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f) return true;
  }
  return false;
}

bool isHttpToken(std::string_view s) {
  static constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    kSpecials.find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

LoadContext::LoadContext(std::string file, MiddlewareParsers middlewareTypes)
    : file_(std::move(file)), middlewareTypes_(middlewareTypes) {}

void LoadContext::error(SourcePos p, std::string msg) {
  errors_.push_back({file_, p.line, p.col, std::move(msg)});
}

void LoadContext::warn(SourcePos p, std::string msg) {
  warnings_.push_back({file_, p.line, p.col, std::move(msg)});
}

LoadResult LoadContext::finish() {
  sortByPosition(errors_);
  sortByPosition(warnings_);
  LoadResult r;
  if (errors_.empty()) {
    cfg_.file = file_;
    r.config = std::move(cfg_);
  }
  r.errors = std::move(errors_);
  r.warnings = std::move(warnings_);
  return r;
}

void LoadContext::checkKeys(const toml::table& t, Keys known, Keys later,
                            const std::string& where) {
  for (auto&& kv : t) {
    std::string_view key = kv.first.str();
    if (contains(known, key)) continue;
    std::string msg = "unknown key '" + std::string(key) + "' " + where;
    if (contains(later, key)) msg += " (not supported in this version)";
    error(toPos(kv.first.source()), std::move(msg));
  }
}

const toml::node* LoadContext::required(const toml::table& t, std::string_view key,
                                        SourcePos tablePos, const std::string& what,
                                        std::string_view hint) {
  const toml::node* v = t.get(key);
  if (v == nullptr) {
    std::string msg = what + ": missing required key '" + std::string(key) + "'";
    if (!hint.empty()) msg += " " + std::string(hint);
    error(tablePos, std::move(msg));
  }
  return v;
}

const toml::table* LoadContext::tableOf(const toml::node& n, const std::string& what,
                                        std::string_view shape) {
  const auto* t = n.as_table();
  if (t == nullptr) {
    error(posOf(n), what + ": expected a table ([" + std::string(shape.empty() ? what : shape) +
                        "]), got " + typeName(n));
  }
  return t;
}

std::optional<std::string> LoadContext::getString(const toml::node& n, const std::string& what) {
  const auto* s = n.as_string();
  if (s == nullptr) {
    error(posOf(n), what + ": expected a string, got " + typeName(n));
    return std::nullopt;
  }
  std::string out, err;
  if (!interpolateEnv(s->get(), out, err)) {
    error(posOf(n), what + ": " + err);
    return std::nullopt;
  }
  return out;
}

std::optional<std::string> LoadContext::getTypedString(const toml::node& n, const std::string& what,
                                                       std::string_view expected) {
  if (!n.is_string()) {
    error(posOf(n), what + ": expected " + std::string(expected) + ", got " + typeName(n));
    return std::nullopt;
  }
  return getString(n, what);
}

std::optional<int64_t> LoadContext::getInt(const toml::node& n, const std::string& what, int64_t lo,
                                           int64_t hi) {
  const auto* i = n.as_integer();
  if (i == nullptr) {
    error(posOf(n), what + ": expected an integer, got " + typeName(n));
    return std::nullopt;
  }
  int64_t v = i->get();
  if (v < lo || v > hi) {
    error(posOf(n), what + ": must be between " + std::to_string(lo) + " and " +
                        std::to_string(hi) + ", got " + std::to_string(v));
    return std::nullopt;
  }
  return v;
}

std::optional<std::vector<LoadContext::PosString>> LoadContext::getStringArray(
    const toml::node& n, const std::string& what) {
  const auto* arr = n.as_array();
  if (arr == nullptr) {
    error(posOf(n), what + ": expected an array of strings, got " + typeName(n));
    return std::nullopt;
  }
  std::vector<PosString> out;
  for (size_t i = 0; i < arr->size(); ++i) {
    if (auto s = getString((*arr)[i], what + "[" + std::to_string(i) + "]"))
      out.push_back({*s, posOf((*arr)[i])});
  }
  return out;
}

std::optional<std::vector<std::pair<LoadContext::PosString, std::string>>>
LoadContext::getStringTable(const toml::node& n, const std::string& what) {
  const auto* t = n.as_table();
  if (t == nullptr) {
    error(posOf(n),
          what + ": expected a table like { \"X-Name\" = \"value\" }, got " + typeName(n));
    return std::nullopt;
  }
  std::vector<std::pair<PosString, std::string>> out;
  for (auto&& kv : *t) {
    const std::string key(kv.first.str());
    if (auto s = getString(kv.second, what + "." + key))
      out.push_back({{key, toPos(kv.first.source())}, *s});
  }
  // toml++ keeps tables sorted by key; file order reads better in messages and is what a
  // user expects for edits.
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.first.pos.line != b.first.pos.line ? a.first.pos.line < b.first.pos.line
                                                : a.first.pos.col < b.first.pos.col;
  });
  return out;
}

std::optional<double> LoadContext::getNumber(const toml::node& n, const std::string& what,
                                             double lo, double hi) {
  double v = 0;
  if (const auto* f = n.as_floating_point()) {
    v = f->get();
  } else if (const auto* i = n.as_integer()) {
    v = double(i->get());
  } else {
    error(posOf(n), what + ": expected a number, got " + typeName(n));
    return std::nullopt;
  }
  if (!(v >= lo && v <= hi)) {  // NaN fails too
    std::ostringstream msg;
    msg << what << ": must be between " << lo << " and " << hi << ", got " << v;
    error(posOf(n), msg.str());
    return std::nullopt;
  }
  return v;
}

std::optional<bool> LoadContext::getBool(const toml::node& n, const std::string& what) {
  const auto* b = n.as_boolean();
  if (b == nullptr) {
    error(posOf(n), what + ": expected a boolean (true or false), got " + typeName(n));
    return std::nullopt;
  }
  return b->get();
}

std::optional<Duration> LoadContext::getDuration(const toml::node& n, const std::string& what,
                                                 bool allowZero) {
  // A bare number is ambiguous (seconds? milliseconds?), so durations are strings only.
  auto s = getTypedString(n, what, "a duration string such as \"2s\"");
  if (!s) return std::nullopt;
  auto d = parseDuration(*s);
  if (!d) {
    error(posOf(n), what + ": invalid duration '" + *s +
                        "' (expected e.g. \"250ms\", \"2s\", \"5m\", \"1h\")");
    return std::nullopt;
  }
  if (!allowZero && d->count() == 0) {
    error(posOf(n), what + ": must be greater than 0");
    return std::nullopt;
  }
  return d;
}

// Sizes are strings ("16k"); a plain non-negative integer is also taken as bytes, since
// `max_body_size = 0` is the natural way to write "unlimited".
std::optional<uint64_t> LoadContext::getSize(const toml::node& n, const std::string& what) {
  if (const auto* i = n.as_integer()) {
    if (i->get() < 0) {
      error(posOf(n), what + ": must not be negative");
      return std::nullopt;
    }
    return static_cast<uint64_t>(i->get());
  }
  auto s = getTypedString(n, what, "a size string such as \"16k\"");
  if (!s) return std::nullopt;
  auto v = parseSize(*s);
  if (!v) {
    error(posOf(n), what + ": invalid size '" + *s + "' (expected e.g. \"512\", \"16k\", \"1m\")");
  }
  return v;
}

bool LoadContext::getListen(const toml::node& n, const std::string& what, HostPort& out) {
  auto s = getString(n, what);
  if (!s) return false;
  std::string err;
  if (!parseHostPort(*s, out, err)) {
    error(posOf(n), what + ": " + err);
    return false;
  }
  if (!isIpLiteral(out.host)) {
    error(posOf(n), what +
                        ": host must be an IP address (e.g. \"0.0.0.0:8080\" or "
                        "\"[::]:8080\"), got '" +
                        out.host + "'");
    return false;
  }
  return true;
}

std::string LoadContext::resolvePath(const std::string& p) const {
  if (p.empty() || p[0] == '/') return p;
  size_t slash = file_.rfind('/');
  return slash == std::string::npos ? p : file_.substr(0, slash + 1) + p;
}

void LoadContext::claimListenAddress(const HostPort& hp, const std::string& owner, SourcePos p,
                                     const std::string& what) {
  if (const auto* first = listenAddrs_.claim(listenKey(hp), {owner, p})) {
    error(p, what + ": address " + formatHostPort(hp) + " is already used by " + first->first +
                 " (" + lineRef(first->second) + ")");
  }
}

std::string NameRules::nameKey(const toml::table& t, SourcePos tablePos, const std::string& what) {
  const toml::node* v = ctx_.required(t, "name", tablePos, what);
  if (v == nullptr) return {};
  auto s = ctx_.getString(*v, what + ".name");
  if (!s) return {};
  if (s->empty()) {
    ctx_.error(posOf(*v), what + ".name: must not be empty");
  } else if (const SourcePos* first = seen_.claim(*s, posOf(*v))) {
    ctx_.error(posOf(*v), what + ".name: duplicate " + kind_ + " name '" + *s +
                              "' (first used at " + lineRef(*first) + ")");
  }
  return *s;
}

void NameRules::tableKey(const toml::key& key) {
  if (isValidName(key.str())) return;
  ctx_.error(toPos(key.source()), "invalid " + kind_ + " name '" + std::string(key.str()) +
                                      "' (allowed: letters, digits, '_', '.', '-')");
}

void MiddlewareTable::checkKeys(Keys known) const {
  ctx.checkKeys(table, known, {},
                "in [middleware." + name + "] (type = \"" + std::string(type) + "\")");
}

}  // namespace sluice::config
