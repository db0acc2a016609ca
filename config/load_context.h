// What every section of the config loader shares: the Config being filled, the error and
// warning lists (FILE:LINE:COL positions), typed getters that report a wrong value with its
// position, unknown-key checks, the naming rules, and the cross-section facts (declared pools
// and middleware, which routes use them, claimed listen addresses). Used by config/*_section.cpp
// and by the middleware types' table parsers (config/middleware_types.h).
#pragma once

#include <toml++/toml.h>

#include <algorithm>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/loader.h"
#include "config/middleware_types.h"
#include "config/schema.h"

namespace sluice::config {

using Keys = std::initializer_list<std::string_view>;

SourcePos toPos(const toml::source_region& r);
SourcePos posOf(const toml::node& n);
std::string typeName(const toml::node& n);  // "a table", "a string", ...
std::string lineRef(SourcePos p);           // "line 12"
bool hasSpaceOrControl(std::string_view s);
// An HTTP token (RFC 9110 tchar+): method and header-name syntax.
bool isHttpToken(std::string_view s);

// Orders anything with a `pos` by file position (toml++ tables iterate in key order, the
// schema promises file order).
template <class T>
void sortByPosition(std::vector<T>& v) {
  std::stable_sort(v.begin(), v.end(), [](const T& a, const T& b) {
    return a.pos.line != b.pos.line ? a.pos.line < b.pos.line : a.pos.col < b.pos.col;
  });
}

// Remembers the first value claimed for each key.
template <class V>
class FirstSeen {
 public:
  // nullptr the first time `key` is claimed (`v` is remembered), else the earlier value.
  const V* claim(const std::string& key, V v) {
    auto [it, inserted] = seen_.emplace(key, std::move(v));
    return inserted ? nullptr : &it->second;
  }

 private:
  std::map<std::string, V> seen_;
};

class LoadContext {
 public:
  LoadContext(std::string file, MiddlewareParsers middlewareTypes);

  const std::string& file() const { return file_; }
  Config& config() { return cfg_; }
  const Config& config() const { return cfg_; }
  MiddlewareParsers middlewareTypes() const { return middlewareTypes_; }

  void error(SourcePos p, std::string msg);
  void warn(SourcePos p, std::string msg);
  // Sorts errors and warnings by position; the Config only when there is no error.
  LoadResult finish();

  // Reports keys of `t` that are not `known`. `later` are keys product.md documents but this
  // version does not implement: still errors (silently ignoring a rate limit or a TLS block
  // would be worse), with a hint that says why.
  void checkKeys(const toml::table& t, Keys known, Keys later, const std::string& where);
  // t[key], or nullptr after "WHAT: missing required key 'KEY'[ HINT]" at `tablePos`.
  const toml::node* required(const toml::table& t, std::string_view key, SourcePos tablePos,
                             const std::string& what, std::string_view hint = {});
  // n as a table, or nullptr after "WHAT: expected a table ([SHAPE]), got ..." (SHAPE
  // defaults to WHAT).
  const toml::table* tableOf(const toml::node& n, const std::string& what,
                             std::string_view shape = {});

  std::optional<std::string> getString(const toml::node& n, const std::string& what);
  std::optional<int64_t> getInt(const toml::node& n, const std::string& what, int64_t lo,
                                int64_t hi);
  // An array of strings, each with its position (an error per element that is not a string;
  // nullopt when `n` is not an array).
  struct PosString {
    std::string value;
    SourcePos pos;
  };
  std::optional<std::vector<PosString>> getStringArray(const toml::node& n,
                                                       const std::string& what);
  // A table of string values, { "Name" = "value", ... }, in file order.
  std::optional<std::vector<std::pair<PosString, std::string>>> getStringTable(
      const toml::node& n, const std::string& what);
  // An integer or a float within [lo, hi].
  std::optional<double> getNumber(const toml::node& n, const std::string& what, double lo,
                                  double hi);
  std::optional<bool> getBool(const toml::node& n, const std::string& what);
  std::optional<Duration> getDuration(const toml::node& n, const std::string& what, bool allowZero);
  std::optional<uint64_t> getSize(const toml::node& n, const std::string& what);
  // A listen address: the host must be an IP literal because it is bound, not resolved.
  bool getListen(const toml::node& n, const std::string& what, HostPort& out);

  // Relative paths (certificates, keys, CA bundles) are taken from the config file's directory.
  std::string resolvePath(const std::string& p) const;

  // Every bound address has one owner ("[admin]", "listener 'web'").
  void claimListenAddress(const HostPort& hp, const std::string& owner, SourcePos p,
                          const std::string& what);

  // Cross-section facts, filled by the pool and middleware sections, read by routes.
  std::map<std::string, SourcePos> poolNames;  // every declared pool, valid or not
  std::set<std::string> usedPools;
  // Every declared middleware, valid or not -> its settings (nullptr when invalid).
  std::map<std::string, MiddlewareSettingsPtr> middlewareNames;
  std::set<std::string> usedMiddleware;

 private:
  // n's string, or nullopt after "WHAT: expected EXPECTED, got <type>" when it is not one.
  std::optional<std::string> getTypedString(const toml::node& n, const std::string& what,
                                            std::string_view expected);

  std::string file_;
  MiddlewareParsers middlewareTypes_;
  Config cfg_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
  FirstSeen<std::pair<std::string, SourcePos>> listenAddrs_;  // key -> owner, pos
};

// The naming rules of every named section, in one place:
//   [[listener]], [[route]]: a required `name` key, non-empty, unique within its kind;
//   [pool.NAME], [middleware.NAME]: the table key, made of letters, digits, '_', '.', '-'.
class NameRules {
 public:
  NameRules(LoadContext& ctx, std::string kind) : ctx_(ctx), kind_(std::move(kind)) {}

  // The `name` of array element `what` ("listener[0]"); as written even when it is
  // reported (empty or duplicate), "" when missing or not a string.
  std::string nameKey(const toml::table& t, SourcePos tablePos, const std::string& what);
  // Reports a table key that is not a valid name.
  void tableKey(const toml::key& key);

 private:
  LoadContext& ctx_;
  std::string kind_;
  FirstSeen<SourcePos> seen_;
};

// Walks [[KIND]]: fn(table, what = "KIND[i]", pos) for each element that is a table; the
// section itself and the other elements are reported as errors.
template <class Fn>
void forEachArrayTable(LoadContext& ctx, const toml::node& n, const std::string& kind, Fn fn) {
  const auto* arr = n.as_array();
  if (arr == nullptr) {
    ctx.error(posOf(n),
              kind + ": expected an array of tables ([[" + kind + "]]), got " + typeName(n));
    return;
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& el = (*arr)[i];
    std::string what = kind + "[" + std::to_string(i) + "]";
    if (const auto* t = el.as_table()) {
      fn(*t, what, posOf(el));
    } else {
      ctx.error(posOf(el), what + ": expected a table, got " + typeName(el));
    }
  }
}

// Walks [KIND.NAME] (`plural` names them in the message for a KIND that is not a table):
// fn(name, node, table) for every entry after its name was checked; table is nullptr (and
// reported) when the entry is not a table.
template <class Fn>
void forEachNamedTable(LoadContext& ctx, const toml::node& n, const std::string& kind,
                       std::string_view plural, Fn fn) {
  const auto* all = n.as_table();
  if (all == nullptr) {
    ctx.error(posOf(n), kind + ": expected a table of " + std::string(plural) + " ([" + kind +
                            ".NAME]), got " + typeName(n));
    return;
  }
  NameRules names(ctx, kind);
  for (auto&& kv : *all) {
    names.tableKey(kv.first);
    std::string name(kv.first.str());
    fn(name, kv.second, ctx.tableOf(kv.second, kind + "." + name));
  }
}

// [middleware.NAME] of a type, as handed to that type's parser (config/middleware_types.h).
struct MiddlewareTable {
  LoadContext& ctx;
  const toml::table& table;
  std::string name;  // "auth"
  std::string what;  // "middleware.auth", the prefix of every message
  std::string_view type;
  SourcePos pos;  // of the table

  // Unknown keys (`known` lists "type" too), reported "in [middleware.NAME] (type = \"TYPE\")".
  void checkKeys(Keys known) const;
  // table[key], or nullptr after "middleware.NAME: missing required key 'KEY'[ HINT]".
  const toml::node* required(std::string_view key, std::string_view hint = {}) const {
    return ctx.required(table, key, pos, what, hint);
  }
};

}  // namespace sluice::config
