#include "middleware/headers.h"

namespace sluice::middleware {

namespace {

struct VarName {
  std::string_view name;
  HeaderVar var;
};
constexpr VarName kVars[] = {{"request_id", HeaderVar::RequestId},
                             {"client_ip", HeaderVar::ClientIp},
                             {"host", HeaderVar::Host},
                             {"scheme", HeaderVar::Scheme},
                             {"route", HeaderVar::Route},
                             {"pool", HeaderVar::Pool}};

}  // namespace

bool HeaderTemplate::parse(std::string_view s, bool allowPool, std::string& err) {
  pieces.clear();
  std::string text;
  for (size_t i = 0; i < s.size();) {
    if (s[i] != '{') {
      text.push_back(s[i++]);
      continue;
    }
    const size_t close = s.find('}', i);
    if (close == std::string_view::npos) {
      err =
          "unclosed '{' (placeholders: {request_id}, {client_ip}, {host}, {scheme}, {route}, "
          "{pool})";
      return false;
    }
    const std::string_view name = s.substr(i + 1, close - i - 1);
    HeaderVar var = HeaderVar::None;
    for (const auto& v : kVars)
      if (v.name == name) var = v.var;
    if (var == HeaderVar::None) {
      err = "unknown placeholder {" + std::string(name) +
            "} (known: {request_id}, {client_ip}, {host}, {scheme}, {route}, {pool})";
      return false;
    }
    if (var == HeaderVar::Pool && !allowPool) {
      err =
          "{pool} is only known in response values (the pool is chosen after the request "
          "middleware ran)";
      return false;
    }
    if (!text.empty()) pieces.push_back({std::move(text), HeaderVar::None});
    text.clear();
    pieces.push_back({{}, var});
    i = close + 1;
  }
  if (!text.empty() || pieces.empty()) pieces.push_back({std::move(text), HeaderVar::None});
  return true;
}

void HeaderTemplate::expand(const RequestContext& ctx, std::string& out) const {
  out.clear();
  for (const Piece& p : pieces) {
    switch (p.var) {
      case HeaderVar::None:
        out.append(p.text);
        break;
      case HeaderVar::RequestId:
        out.append(ctx.requestId);
        break;
      case HeaderVar::ClientIp:
        out.append(ctx.clientIp);
        break;
      case HeaderVar::Host:
        out.append(ctx.host);
        break;
      case HeaderVar::Scheme:
        out.append(ctx.tls ? "https" : "http");
        break;
      case HeaderVar::Route:
        out.append(ctx.routeName);
        break;
      case HeaderVar::Pool:
        out.append(ctx.poolName.empty() ? "-" : ctx.poolName);  // answered before a pool
        break;
    }
  }
}

void applyHeaderEdits(const HeaderEdits& edits, const RequestContext& ctx,
                      http::HeaderMap& headers) {
  thread_local std::string value;
  // A literal value is added as it is; a template is expanded into a reused buffer.
  auto add = [&](const HeaderEdit& e) {
    if (e.value.literal()) {
      headers.add(e.name, e.value.pieces.empty() ? "" : e.value.pieces[0].text);
      return;
    }
    e.value.expand(ctx, value);
    headers.add(e.name, value);
  };
  for (const auto& name : edits.remove) headers.remove(name);
  for (const auto& e : edits.set) {
    headers.remove(e.name);
    add(e);
  }
  for (const auto& e : edits.add) add(e);
}

namespace {

class HeadersFilter final : public Filter {
 public:
  explicit HeadersFilter(const HeadersPolicy& p) : p_(p) {}

  Status onRequestHeaders(RequestContext& ctx) override {
    if (!p_.request.empty()) applyHeaderEdits(p_.request, ctx, ctx.request->headers);
    return Status::Continue;
  }

  void onResponseHeaders(RequestContext& ctx, http::ResponseHead& head) override {
    applyHeaderEdits(p_.response, ctx, head.headers);
    for (const auto& [name, value] : p_.defaults)
      if (!head.headers.has(name)) head.headers.add(name, value);
  }

 private:
  const HeadersPolicy& p_;
};

}  // namespace

Filter* HeadersFactory::create(FilterArena& arena, FilterCallbacks&) const {
  return arena.make<HeadersFilter>(policy_);
}

}  // namespace sluice::middleware
