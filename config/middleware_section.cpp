// [middleware.NAME]: the rules every middleware table follows (valid name, a known `type`,
// file order). The table itself is parsed by its type's parser, found by `type` in the list
// the loader was given (config/middleware_types.h).
#include <string>

#include "config/sections.h"

namespace sluice::config {

namespace {

// "\"rate_limit\" or \"jwt\"" (every known type, in list order).
std::string typeList(MiddlewareParsers types) {
  std::string out;
  for (size_t i = 0; i < types.size(); ++i) {
    if (i > 0) out += i + 1 == types.size() ? " or " : ", ";
    out += "\"" + std::string(types[i].type) + "\"";
  }
  return out;
}

const MiddlewareParser* findType(MiddlewareParsers types, std::string_view name) {
  for (const auto& t : types)
    if (t.type == name) return &t;
  return nullptr;
}

// The parser of the table's `type`, or nullptr after reporting a missing or unknown type.
const MiddlewareParser* typeOf(LoadContext& ctx, const toml::table& t, const std::string& what,
                               SourcePos pos) {
  MiddlewareParsers types = ctx.middlewareTypes();
  const auto* typeNode = ctx.required(t, "type", pos, what, "(" + typeList(types) + ")");
  if (typeNode == nullptr) return nullptr;
  auto type = ctx.getString(*typeNode, what + ".type");
  if (!type) return nullptr;
  if (const auto* parser = findType(types, *type)) return parser;
  if (types.empty()) {
    ctx.error(posOf(*typeNode),
              what + ".type: unknown type '" + *type + "' (no middleware type is available)");
  } else {
    ctx.error(posOf(*typeNode),
              what + ".type: expected " + typeList(types) + ", got '" + *type + "'");
  }
  return nullptr;
}

void loadOne(LoadContext& ctx, const std::string& name, const toml::node& mn,
             const toml::table& t) {
  MiddlewareTable table{ctx, t, name, "middleware." + name, {}, posOf(mn)};
  const MiddlewareParser* parser = typeOf(ctx, t, table.what, table.pos);
  if (parser == nullptr) return;
  table.type = parser->type;
  MiddlewareSettingsPtr settings = parser->parse(table);
  if (settings == nullptr) return;
  ctx.middlewareNames[name] = settings;
  ctx.config().middleware.push_back(
      MiddlewareConfig{name, std::string(parser->type), std::move(settings), table.pos});
}

}  // namespace

void loadMiddleware(LoadContext& ctx, const toml::node& n) {
  forEachNamedTable(ctx, n, "middleware", "middleware",
                    [&](const std::string& name, const toml::node& mn, const toml::table* t) {
                      // Declared even when invalid, so routes naming it get no second error.
                      ctx.middlewareNames[name] = nullptr;
                      if (t != nullptr) loadOne(ctx, name, mn, *t);
                    });
  sortByPosition(ctx.config().middleware);
}

}  // namespace sluice::config
