// RouteTable::match with ~50 routes: exact hosts, wildcard hosts and any-host prefixes, some
// with method lists; lookups that hit a deep prefix, an exact path, a wildcard host and a miss
// that falls through to "/".
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "proxy/router/route_table.h"

using sluice::router::Route;
using sluice::router::RouteTable;

namespace {

RouteTable makeTable() {
  std::vector<Route> routes;
  auto add = [&](std::string name, std::string host, std::string path, bool exact,
                 std::vector<std::string> methods = {}) {
    Route r;
    r.name = std::move(name);
    r.nameId = uint32_t(routes.size());
    r.host = std::move(host);
    r.path = std::move(path);
    r.exact = exact;
    r.methods = std::move(methods);
    routes.push_back(std::move(r));
  };
  // 30 any-host API prefixes of varying depth.
  const char* svcs[] = {"users", "orders", "billing", "search", "cart", "catalog",
                        "auth",  "admin",  "reports", "media",  "chat", "notify",
                        "geo",   "pay",    "export"};
  for (const char* s : svcs) {
    add(std::string("api-") + s, "", std::string("/api/v1/") + s + "/", false);
    add(std::string("api2-") + s, "", std::string("/api/v2/") + s + "/", false,
        {"GET", "POST"});
  }
  // 8 exact paths.
  auto cat = [](const char* a, int i, const char* b) {
    std::string s = a;
    s += char('0' + i);
    s += b;
    return s;
  };
  for (int i = 0; i < 8; ++i) add(cat("exact", i, ""), "", cat("/health/", i, ""), true);
  // 6 exact-host routes and 4 wildcard-host routes.
  for (int i = 0; i < 6; ++i) add(cat("host", i, ""), cat("h", i, ".example.com"), "/", false);
  for (int i = 0; i < 4; ++i)
    add(cat("wild", i, ""), cat("*.t", i, ".example.org"), "/app/", false);
  add("static", "", "/static/", false);
  add("root", "", "/", false);
  RouteTable t;
  t.build(std::move(routes));
  return t;
}

void BM_RouteTable_Match(benchmark::State& state, std::string host, std::string path,
                         std::string method, std::string expect) {
  RouteTable t = makeTable();
  const Route* r = t.match(host, path, method);
  if (!r || r->name != expect) {
    state.SkipWithError(("unexpected route for " + path).c_str());
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(t.match(host, path, method));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_RouteTable_Match, prefix_hit, "app.example.com",
                  "/api/v1/orders/12345/items", "GET", "api-orders");
BENCHMARK_CAPTURE(BM_RouteTable_Match, prefix_method, "app.example.com",
                  "/api/v2/export/x", "POST", "api2-export");
BENCHMARK_CAPTURE(BM_RouteTable_Match, exact_path, "app.example.com", "/health/7", "GET",
                  "exact7");
BENCHMARK_CAPTURE(BM_RouteTable_Match, exact_host, "h3.example.com", "/anything", "GET", "host3");
BENCHMARK_CAPTURE(BM_RouteTable_Match, wildcard_host, "a.b.t2.example.org", "/app/x", "GET",
                  "wild2");
BENCHMARK_CAPTURE(BM_RouteTable_Match, fallthrough_root, "app.example.com", "/index.html",
                  "GET", "root");

}  // namespace
