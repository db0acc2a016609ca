// type = "headers": request and response header edits at the edge, and the "security" preset.
// Request edits (remove, then set, then add) happen before the request goes upstream; response
// edits (the same order, then the preset's headers the response does not have yet) apply to
// the backend's responses and to every answer the proxy makes itself on the route (errors,
// 429s, CORS preflights). Values are templates: literal text with {request_id}, {client_ip},
// {host}, {scheme}, {route} and, in response values, {pool}.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "middleware/filter.h"

namespace sluice::middleware {

enum class HeaderVar : uint8_t { None, RequestId, ClientIp, Host, Scheme, Route, Pool };

// A header value: literal pieces and variables.
struct HeaderTemplate {
  struct Piece {
    std::string text;  // when var == None
    HeaderVar var = HeaderVar::None;
  };
  std::vector<Piece> pieces;

  // Parses `s`; false with `err` on an unknown or unclosed {placeholder}. `allowPool`: {pool}
  // is known (response values only: the pool is chosen after the request middleware).
  bool parse(std::string_view s, bool allowPool, std::string& err);
  // The value for this request (`out` is overwritten).
  void expand(const RequestContext& ctx, std::string& out) const;
  bool literal() const {
    return pieces.size() <= 1 && (pieces.empty() || pieces[0].var == HeaderVar::None);
  }
};

struct HeaderEdit {
  std::string name;
  HeaderTemplate value;
};

struct HeaderEdits {
  std::vector<std::string> remove;
  std::vector<HeaderEdit> set;  // replaces every existing field of that name
  std::vector<HeaderEdit> add;  // adds a field
  bool empty() const { return remove.empty() && set.empty() && add.empty(); }
};

struct HeadersPolicy {
  HeaderEdits request, response;
  // preset = "security": set on responses that do not have them.
  std::vector<std::pair<std::string, std::string>> defaults;
};

// Applies `edits` to `headers` for this request.
void applyHeaderEdits(const HeaderEdits& edits, const RequestContext& ctx,
                      http::HeaderMap& headers);

class HeadersFactory final : public FilterFactory {
 public:
  HeadersFactory(std::string name, HeadersPolicy policy)
      : name_(std::move(name)), policy_(std::move(policy)) {}
  Filter* create(FilterArena& arena, FilterCallbacks& callbacks) const override;
  std::string_view name() const override { return name_; }

 private:
  std::string name_;
  HeadersPolicy policy_;
};

}  // namespace sluice::middleware
