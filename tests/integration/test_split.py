"""Traffic splits: weighted canary and blue-green routes, sticky keys (header, cookie, ip,
jwt claim, Sluice's own cohort cookie), shared cohorts across routes, QA overrides, canary steps
through a reload that move only baseline users, and the loader's rules.

Real binary, real backend threads on loopback; every request names the backend that answered.
"""

import collections
import json
import re
import threading

from sluicetest import RawClient, run_cli, wait_until

from test_jwt import hs256, jwt_toml


def backends(make_backend, *names):
    return {n: make_backend(n) for n in names}


def split_route(arms, name="r", path="/", **kw):
    return dict(name=name, path=path,
                split=[{"pool": p, "weight": w} for p, w in arms], **kw)


def start(make_sluice, bes, routes, extra=""):
    s = make_sluice()
    pools = {n: {"backends": [b.address]} for n, b in bes.items()}
    s.start(s.config(routes=routes, pools=pools, extra=extra))
    return s


def who(c, target="/", headers=None):
    """The backend that answered one request on keep-alive client `c`, and the response."""
    r = c.request("GET", target, list((headers or {}).items()))
    assert r.status == 200, r
    return r.json()["backend"], r


def placements(s, keys, header="X-User", target="/"):
    with RawClient(s.port()) as c:
        return {k: who(c, target, {header: k})[0] for k in keys}


def test_weighted_split_exact_proportions(make_backend, make_sluice):
    bes = backends(make_backend, "stable", "canary")
    s = start(make_sluice, bes, [split_route([("stable", 90), ("canary", 10)])])
    with RawClient(s.port()) as c:
        got = collections.Counter(who(c)[0] for _ in range(200))
    assert got == {"stable": 180, "canary": 20}
    m = s.metrics()
    assert m.value("sluice_split_requests_total", route="r", pool="canary") == 20
    assert m.value("sluice_split_requests_total", route="r", pool="stable") == 180


def test_sticky_header_keys_stay_and_spread_by_weight(make_backend, make_sluice):
    bes = backends(make_backend, "stable", "canary")
    s = start(make_sluice, bes,
              [split_route([("stable", 80), ("canary", 20)], sticky="header:X-User")])
    keys = [f"user-{i}" for i in range(1000)]
    first = placements(s, keys)
    again = placements(s, keys)
    assert first == again, "a key changed sides while the weights held"
    share = sum(1 for v in first.values() if v == "canary") / len(keys)
    assert abs(share - 0.20) <= 0.03, share
    # No key: the round robin (exact) takes over.
    with RawClient(s.port()) as c:
        got = collections.Counter(who(c)[0] for _ in range(50))
    assert got == {"stable": 40, "canary": 10}


def test_canary_step_moves_only_baseline_users(make_backend, make_sluice):
    bes = backends(make_backend, "stable", "canary")
    pools = {n: {"backends": [b.address]} for n, b in bes.items()}
    s = make_sluice()

    def cfg(canary_weight):
        route = split_route([("stable", 100 - canary_weight), ("canary", canary_weight)],
                            sticky="cookie:sid")
        return s.config(routes=[route], pools=pools)

    s.start(cfg(5))
    keys = [f"s{i}" for i in range(1000)]

    def place():
        with RawClient(s.port()) as c:
            return {k: who(c, "/", {"Cookie": f"theme=dark; sid={k}"})[0] for k in keys}

    before = place()
    assert s.reload(cfg(25)) == "ok"
    after = place()
    back = [k for k in keys if before[k] == "canary" and after[k] != "canary"]
    assert back == [], "users left the canary when its weight went up"
    moved = sum(1 for k in keys if before[k] == "stable" and after[k] == "canary") / len(keys)
    assert abs(moved - 0.20) <= 0.03, moved


def test_cohort_puts_a_user_on_the_same_side_of_two_routes(make_backend, make_sluice):
    bes = backends(make_backend, "web-a", "web-b", "api-a", "api-b")
    routes = [split_route([("web-a", 70), ("web-b", 30)], name="web", path="/",
                          sticky="header:X-User", cohort="release-42"),
              split_route([("api-a", 70), ("api-b", 30)], name="api", path="/api/",
                          sticky="header:X-User", cohort="release-42")]
    s = start(make_sluice, bes, routes)
    keys = [f"u{i}" for i in range(300)]
    web = placements(s, keys, target="/")
    api = placements(s, keys, target="/api/x")
    for k in keys:
        assert web[k][-1] == api[k][-1], (k, web[k], api[k])
    assert 0.2 < sum(1 for v in web.values() if v == "web-b") / len(keys) < 0.4


def test_auto_cohort_cookie_issued_once_and_honoured(make_backend, make_sluice):
    bes = backends(make_backend, "stable", "canary")
    s = start(make_sluice, bes, [split_route([("stable", 50), ("canary", 50)], sticky="auto")])
    sides = collections.Counter()
    with RawClient(s.port()) as c:
        for _ in range(40):
            side, r = who(c)
            cookie = r.header("set-cookie")
            assert cookie is not None, r.headers
            m = re.match(r"sluice_cohort=([0-9a-f]{32}); Path=/; Max-Age=31536000; HttpOnly; "
                         r"SameSite=Lax$", cookie)
            assert m, cookie
            # The user comes back with the cookie: same side, no new cookie.
            for _ in range(3):
                side2, r2 = who(c, "/", {"Cookie": f"sluice_cohort={m.group(1)}"})
                assert side2 == side
                assert r2.header("set-cookie") is None, r2.headers
            sides[side] += 1
    assert set(sides) == {"stable", "canary"}, sides


def test_overrides_force_a_pool_of_the_split(make_backend, make_sluice):
    bes = backends(make_backend, "blue", "green")
    s = start(make_sluice, bes,
              [split_route([("blue", 100), ("green", 0)], sticky="ip",
                           override_header="X-Release", override_cookie="release")])
    with RawClient(s.port()) as c:
        assert who(c)[0] == "blue"
        assert who(c, "/", {"X-Release": "green"})[0] == "green"
        assert who(c, "/", {"Cookie": "a=1; release=green"})[0] == "green"
        assert who(c, "/", {"X-Release": "blue", "Cookie": "release=green"})[0] == "blue"
        # A name that is not in the split is ignored.
        assert who(c, "/", {"X-Release": "purple"})[0] == "blue"


def test_blue_green_flip_by_reload_on_a_kept_alive_connection(make_backend, make_sluice):
    bes = backends(make_backend, "blue", "green")
    pools = {n: {"backends": [b.address]} for n, b in bes.items()}
    s = make_sluice()

    def cfg(blue, green):
        return s.config(routes=[split_route([("blue", blue), ("green", green)])], pools=pools)

    s.start(cfg(100, 0))
    with RawClient(s.port()) as c:
        assert {who(c)[0] for _ in range(20)} == {"blue"}
        assert s.reload(cfg(0, 100)) == "ok"
        assert {who(c)[0] for _ in range(20)} == {"green"}


def test_jwt_claim_steers_the_split(make_backend, make_sluice):
    bes = backends(make_backend, "stable", "canary")
    route = split_route([("stable", 50), ("canary", 50)], sticky="jwt:sub")
    route["middleware"] = ["auth"]
    s = start(make_sluice, bes, [route],
              extra=jwt_toml("auth", algorithms=["HS256"], secret="test-secret-0123456789"))
    sides = {}
    with RawClient(s.port()) as c:
        for i in range(60):
            token = hs256({"sub": f"user-{i}"})
            got = {who(c, "/", {"Authorization": f"Bearer {token}"})[0] for _ in range(3)}
            assert len(got) == 1, got
            sides[i] = got.pop()
    assert set(sides.values()) == {"stable", "canary"}


def test_split_config_errors(make_sluice, tmp_path):
    s = make_sluice()
    pools = {"a": {"backends": ["127.0.0.1:9"]}, "b": {"backends": ["127.0.0.1:9"]}}
    cases = [
        (dict(name="r", path="/", pool="a", split=[{"pool": "a", "weight": 1}]),
         "use exactly one of 'pool', 'split', 'return' and 'static'"),
        (dict(name="r", path="/", pool="a", sticky="ip"),
         "route[0].sticky: only allowed on a route with 'split'"),
        (split_route([("a", 1), ("nope", 1)]), "no pool named 'nope'"),
        (split_route([("a", 1), ("a", 2)]), "'a' is listed twice"),
        (split_route([("a", 0), ("b", 0)]), "every weight is 0"),
        (split_route([("a", 1), ("b", 1)], sticky="cookie"), "expected \"ip\""),
        (dict(name="r", path="/", pool="a", drain_timeout="30s"),
         "route[0].drain_timeout: only allowed on a route with 'split'"),
        (split_route([("a", 1), ("b", 1)], drain_timeout="soon"),
         "route[0].drain_timeout: invalid duration 'soon'"),
        (split_route([("a", 1), ("b", 1)], drain_timeout=30),
         "route[0].drain_timeout: expected a duration string"),
    ]
    for route, message in cases:
        path = tmp_path / "split.toml"
        path.write_text(s.config(routes=[route], pools=pools))
        r = run_cli(["-t", "-c", str(path)])
        assert r.returncode == 1 and message in r.stderr, (route, r.stderr)
    # drain_timeout on a split is fine ("0s" is the same as leaving it out).
    for timeout in ("30s", "0s"):
        path = tmp_path / "split.toml"
        path.write_text(s.config(routes=[split_route([("a", 1), ("b", 1)],
                                                     drain_timeout=timeout)], pools=pools))
        r = run_cli(["-t", "-c", str(path)])
        assert r.returncode == 0, (timeout, r.stderr)


# ---- live weights through the admin API ----------------------------------------------------

def put_split(s, route, weights, query=""):
    st, _, body = s.admin_get(f"/admin/routes/{route}/split{query}", method="PUT",
                              body=json.dumps(weights).encode() if isinstance(weights, dict)
                              else weights)
    return st, json.loads(body)


def test_blue_green_flip_through_the_api_under_keep_alive_load(make_backend, make_sluice):
    bes = backends(make_backend, "blue", "green")
    s = start(make_sluice, bes, [split_route([("blue", 100), ("green", 0)], name="app")])
    seen, errors, stop = [], [], threading.Event()

    def load():
        with RawClient(s.port()) as c:
            while not stop.is_set():
                try:
                    seen.append(who(c)[0])
                except Exception as e:  # noqa: BLE001 - any failure is a finding
                    errors.append(repr(e))
                    return

    t = threading.Thread(target=load)
    t.start()
    try:
        wait_until(lambda: len(seen) >= 50, timeout=10)
        st, answer = put_split(s, "app", {"blue": 0, "green": 100})
        assert st == 200, answer
        assert answer["route"] == "app" and answer["weights"] == {"blue": 0, "green": 100}
        assert answer["release"]["source"] == "api" and answer["release"]["state"] == "steady"
        flipped_at = len(seen)
        wait_until(lambda: len(seen) >= flipped_at + 50, timeout=10)
    finally:
        stop.set()
        t.join(10)
    assert errors == []
    # At most the one request in flight during the PUT still went to blue.
    assert set(seen[flipped_at + 1:]) == {"green"}, collections.Counter(seen[flipped_at + 1:])
    m = s.metrics()
    assert m.value("sluice_split_weight", route="app", pool="green") == 100
    assert m.value("sluice_split_weight", route="app", pool="blue") == 0
    status = json.loads(s.admin_get("/admin/status")[2])
    app = [r for r in status["routes"] if r["name"] == "app"][0]
    assert app["live_weights"] == {"blue": 0, "green": 100}
    assert app["split"] == [{"pool": "blue", "weight": 100}, {"pool": "green", "weight": 0}]


def test_put_split_refuses_bad_requests_and_unhealthy_targets(make_backend, make_sluice):
    bes = backends(make_backend, "blue", "green")
    s = start(make_sluice, bes, [split_route([("blue", 100), ("green", 0)], name="app"),
                                 dict(name="plain", path="/plain/", pool="blue")])
    assert put_split(s, "nope", {"blue": 1})[0] == 404
    assert put_split(s, "plain", {"blue": 1})[0] == 404
    assert put_split(s, "app", {"purple": 1}) == (404, {"error": "no_such_pool",
                                                        "detail": "purple"})
    for bad in [b"", b"{", b"[]", b"{}", b'{"blue": -1}', b'{"blue": "1"}', b'{"blue": 1} x']:
        assert put_split(s, "app", bad)[0] == 400, bad
    assert put_split(s, "app", {"blue": 0})[1] == {"error": "all_weights_zero"}
    assert s.admin_get("/admin/routes/app/split")[0] == 405
    # A drained green has no usable backend: raising it from 0 needs ?force=1.
    addr = bes["green"].address
    assert s.admin_get(f"/admin/pools/green/backends/{addr}/drain", method="POST")[0] == 200
    st, answer = put_split(s, "app", {"blue": 0, "green": 100})
    assert st == 409 and answer["error"] == "pool_unhealthy", answer
    assert put_split(s, "app", {"blue": 0, "green": 100}, "?force=1")[0] == 200


def test_reload_reapplies_the_files_weights(make_backend, make_sluice):
    bes = backends(make_backend, "blue", "green")
    pools = {n: {"backends": [b.address]} for n, b in bes.items()}
    s = make_sluice()
    cfg = s.config(routes=[split_route([("blue", 100), ("green", 0)], name="app")], pools=pools)
    s.start(cfg)
    assert put_split(s, "app", {"blue": 0, "green": 100})[0] == 200
    with RawClient(s.port()) as c:
        assert who(c)[0] == "green"
        assert s.reload(cfg) == "ok"
        assert {who(c)[0] for _ in range(10)} == {"blue"}
