"""Release safety on split routes: automatic rollback (error rate, p99 ratio), progressive
promotion, the promote/rollback/pause/resume admin API, the state file across restarts and
reloads, and two instances sharing release state and counts through Redis.

Real binary, real backend threads, a real redis-server; every request names its backend.
"""

import collections
import json
import os

import pytest

from sluicetest import RawClient, RedisServer, Response, run_cli, wait_until


@pytest.fixture
def redis():
    r = RedisServer().start()
    yield r
    r.stop()


def split_route(arms, name="app", path="/", **kw):
    return dict(name=name, path=path, split=[{"pool": p, "weight": w} for p, w in arms], **kw)


def pools_of(bes):
    return {n: {"backends": [b.address]} for n, b in bes.items()}


def send(s, n, counter=None):
    """n keep-alive requests; returns a Counter of (backend, status)."""
    counter = collections.Counter() if counter is None else counter
    with RawClient(s.port()) as c:
        for _ in range(n):
            r = c.request("GET", "/")
            name = r.json()["backend"] if r.status in (200, 500) and r.body else "?"
            counter[(name, r.status)] += 1
    return counter


def release(s, route="app"):
    status = json.loads(s.admin_get("/admin/status")[2])
    r = [x for x in status["routes"] if x["name"] == route][0]
    return r["live_weights"], r["release"]


def post(s, route, action, query=""):
    st, _, body = s.admin_get(f"/admin/routes/{route}/{action}{query}", method="POST")
    return st, json.loads(body)


# ---- automatic rollback ---------------------------------------------------------------------

def test_failing_canary_is_rolled_back_after_min_requests(make_backend, make_sluice):
    bes = {"stable": make_backend("stable"), "canary": make_backend("canary")}
    bes["canary"].set_default(Response(status=500))
    s = make_sluice()
    route = split_route([("stable", 50), ("canary", 50)],
                        rollback={"max_error_rate": 0.1, "min_requests": 20, "window": "30s"})
    s.start(s.config(routes=[route], pools=pools_of(bes)))
    got = send(s, 200)
    canary_seen = len(bes["canary"].requests)
    # The 20th canary outcome crosses the threshold; the next request already goes to stable.
    assert 20 <= canary_seen <= 23, got
    assert got[("stable", 200)] == 200 - canary_seen
    weights, rel = release(s)
    assert weights == {"stable": 100, "canary": 0}
    assert rel["state"] == "rolled_back" and rel["source"] == "rollback"
    d = rel["last_decision"]
    assert d["action"] == "rollback" and d["pool"] == "canary"
    assert d["reason"].startswith("error rate 1.000 > 0.100"), d
    m = s.metrics()
    assert m.value("sluice_rollbacks_total", route="app", pool="canary") == 1
    assert m.value("sluice_split_weight", route="app", pool="canary") == 0
    wait_until(lambda: "canary rolled back" in s.stderr() + s.stdout(), timeout=5)

    # Restored through the API, the canary is judged afresh and rolled back again.
    st, _, body = s.admin_get("/admin/routes/app/split", method="PUT",
                              body=b'{"stable": 50, "canary": 50}')
    assert st == 200, body
    assert release(s)[1]["state"] == "steady"
    before = len(bes["canary"].requests)
    send(s, 100)
    assert 20 <= len(bes["canary"].requests) - before <= 23
    assert s.metrics().value("sluice_rollbacks_total", route="app", pool="canary") == 2


def test_client_errors_do_not_count_against_the_canary(make_backend, make_sluice):
    bes = {"stable": make_backend("stable"), "canary": make_backend("canary")}
    bes["canary"].set_default(Response(status=404))
    s = make_sluice()
    route = split_route([("stable", 50), ("canary", 50)],
                        rollback={"max_error_rate": 0.05, "min_requests": 10})
    s.start(s.config(routes=[route], pools=pools_of(bes)))
    send(s, 100)
    assert len(bes["canary"].requests) == 50
    assert release(s)[0] == {"stable": 50, "canary": 50}
    assert release(s)[1]["window"]["canary"]["requests"] == 50
    assert release(s)[1]["window"]["canary"]["errors"] == 0


def test_dead_canary_connect_failures_roll_it_back(make_backend, make_sluice):
    from sluicetest import free_port
    stable = make_backend("stable")
    s = make_sluice()
    pools = {"stable": {"backends": [stable.address]},
             "canary": {"backends": [f"127.0.0.1:{free_port()}"], "retries": 0}}
    route = split_route([("stable", 50), ("canary", 50)],
                        rollback={"max_error_rate": 0.5, "min_requests": 5})
    s.start(s.config(routes=[route], pools=pools))
    statuses = collections.Counter()
    with RawClient(s.port()) as c:
        for _ in range(60):
            statuses[c.request("GET", "/").status] += 1
    assert statuses[502] + statuses[503] <= 8, statuses
    assert release(s)[0] == {"stable": 100, "canary": 0}
    # Readiness follows the live weights: the dead canary no longer takes traffic.
    assert s.admin_get("/health/ready")[0] == 200


def test_slow_canary_is_rolled_back_on_the_p99_ratio(make_backend, make_sluice):
    bes = {"stable": make_backend("stable"), "canary": make_backend("canary")}
    bes["canary"].set_default(Response(delay=0.06))
    s = make_sluice()
    route = split_route([("stable", 50), ("canary", 50)],
                        rollback={"max_p99_ratio": 3.0, "min_requests": 20})
    s.start(s.config(routes=[route], pools=pools_of(bes)))
    send(s, 120)
    weights, rel = release(s)
    assert weights == {"stable": 100, "canary": 0}, rel
    assert rel["last_decision"]["reason"].startswith("p99 "), rel
    assert len(bes["canary"].requests) <= 26


# ---- progressive promotion ------------------------------------------------------------------

def test_healthy_canary_is_promoted_through_every_step(make_backend, make_sluice):
    bes = {"stable": make_backend("stable"), "canary": make_backend("canary")}
    s = make_sluice()
    route = split_route([("stable", 95), ("canary", 5)],
                        rollback={"max_error_rate": 0.05, "min_requests": 5},
                        promote={"steps": [5, 25, 50, 100], "interval": "300ms"})
    s.start(s.config(routes=[route], pools=pools_of(bes)))
    _, rel = release(s)
    assert rel["state"] == "promoting" and rel["step"] == 1
    seen_weights = []

    def progressed():
        send(s, 40)
        w, r = release(s)
        if not seen_weights or seen_weights[-1] != w:
            seen_weights.append(w)
        return r["state"] == "complete"

    wait_until(progressed, timeout=30)
    assert [w["canary"] for w in seen_weights] == [5, 25, 50, 100], seen_weights
    weights, rel = release(s)
    assert weights == {"stable": 0, "canary": 100}
    assert rel["source"] == "promote" and rel["step"] == 4
    assert s.metrics().value("sluice_release_step", route="app") == 4
    wait_until(lambda: "release complete" in s.stderr() + s.stdout(), timeout=5)


def test_promotion_waits_for_enough_requests(make_backend, make_sluice):
    bes = {"stable": make_backend("stable"), "canary": make_backend("canary")}
    s = make_sluice()
    route = split_route([("stable", 90), ("canary", 10)],
                        rollback={"max_error_rate": 0.05, "min_requests": 30},
                        promote={"steps": [10, 100], "interval": "100ms"})
    s.start(s.config(routes=[route], pools=pools_of(bes)))
    send(s, 100)  # 10 canary requests: not enough evidence, however long it waits
    wait_until(lambda: release(s)[1]["next_step_in_ms"] == 0, timeout=5)
    assert release(s)[0] == {"stable": 90, "canary": 10}
    send(s, 220)  # 22 more canary requests: 32 >= 30
    wait_until(lambda: release(s)[1]["state"] == "complete", timeout=5)


def test_release_api_promote_pause_resume_rollback(make_backend, make_sluice):
    bes = {"stable": make_backend("stable"), "canary": make_backend("canary")}
    s = make_sluice()
    routes = [split_route([("stable", 100), ("canary", 0)],
                          promote={"steps": [10, 50, 100], "interval": "1h"}),
              split_route([("stable", 100), ("canary", 0)], name="plain-split", path="/x/"),
              dict(name="single", path="/single/", pool="stable")]
    s.start(s.config(routes=routes, pools=pools_of(bes)))
    assert post(s, "app", "resume") == (409, {"error": "not_promoting", "detail":
                                              "the canary takes no traffic: promote starts the "
                                              "release"})
    st, ans = post(s, "app", "promote")
    assert st == 200 and ans["weights"] == {"stable": 90, "canary": 10}
    assert ans["release"]["state"] == "promoting" and ans["release"]["step"] == 1
    assert post(s, "app", "pause")[1]["release"]["paused"] is True
    st, ans = post(s, "app", "promote")  # a manual step while paused stays paused
    assert ans["weights"] == {"stable": 50, "canary": 50} and ans["release"]["paused"] is True
    assert post(s, "app", "resume")[1]["release"]["paused"] is False
    st, ans = post(s, "app", "rollback")
    assert st == 200 and ans["weights"] == {"stable": 100, "canary": 0}
    assert ans["release"]["state"] == "rolled_back" and ans["release"]["source"] == "api"
    assert post(s, "app", "rollback")[0] == 409
    assert s.metrics().value("sluice_rollbacks_total", route="app", pool="canary") == 1
    st, ans = post(s, "app", "promote")  # starts over at the first step
    assert ans["weights"] == {"stable": 90, "canary": 10}
    post(s, "app", "promote")
    st, ans = post(s, "app", "promote")
    assert ans["weights"] == {"stable": 0, "canary": 100}
    assert ans["release"]["state"] == "complete"
    assert post(s, "app", "promote")[1]["error"] == "already_complete"
    # Without [route.promote]: promote flips everything to the canary; pause has nothing to do.
    assert post(s, "plain-split", "pause")[1]["error"] == "no_promote"
    assert post(s, "plain-split", "promote")[1]["weights"] == {"stable": 0, "canary": 100}
    # Refusals.
    assert post(s, "single", "promote")[1]["error"] == "no_split"
    assert post(s, "nope", "rollback")[1]["error"] == "no_such_route"
    assert s.admin_get("/admin/routes/app/promote")[0] == 405
    assert s.admin_get("/admin/routes/app/split", method="POST", body=b"{}")[0] == 405
    assert post(s, "app", "explode")[0] == 404


def test_promote_refuses_an_unhealthy_canary(make_backend, make_sluice):
    bes = {"stable": make_backend("stable"), "canary": make_backend("canary")}
    s = make_sluice()
    s.start(s.config(routes=[split_route([("stable", 100), ("canary", 0)],
                                         promote={"steps": [10, 100], "interval": "1h"})],
                     pools=pools_of(bes)))
    addr = bes["canary"].address
    assert s.admin_get(f"/admin/pools/canary/backends/{addr}/drain", method="POST")[0] == 200
    assert post(s, "app", "promote")[1]["error"] == "pool_unhealthy"
    assert post(s, "app", "promote", "?force=1")[0] == 200


def test_release_config_is_checked(make_sluice, tmp_path):
    s = make_sluice()
    pools = {"a": {"backends": ["127.0.0.1:1"]}, "b": {"backends": ["127.0.0.1:2"]},
             "c": {"backends": ["127.0.0.1:3"]}}
    ab = [("a", 90), ("b", 10)]
    cases = [
        (split_route(ab, rollback={"min_requests": 5}), "set max_error_rate, max_p99_ratio"),
        (split_route(ab, rollback={"max_error_rate": 1.5}), "must be between 0 and 1"),
        (split_route(ab, rollback={"max_error_rate": 0.1, "window": "10ms"}), "100ms and 1h"),
        (split_route(ab, rollback={"max_error_rate": 0.1, "typo": 1}), "unknown key 'typo'"),
        (split_route(ab, promote={"steps": [50, 25]}), "strictly increasing"),
        (split_route(ab, promote={"steps": [0, 100]}), "between 1 and 100"),
        (split_route(ab, promote={"interval": "1m"}), "missing required key 'steps'"),
        (split_route(ab + [("c", 1)], promote={"steps": [100]}), "exactly two pools"),
        (dict(name="x", path="/", pool="a", rollback={"max_error_rate": 0.1}),
         "only allowed on a route with 'split'"),
    ]
    for route, message in cases:
        path = tmp_path / "release.toml"
        path.write_text(s.config(routes=[route], pools=pools))
        r = run_cli(["-t", "-c", str(path)])
        assert r.returncode == 1 and message in r.stderr, (route, r.stderr)
    path = tmp_path / "store.toml"
    path.write_text(s.config(routes=[split_route(ab)], pools=pools,
                             server={"release_store": "redis"}))
    r = run_cli(["-t", "-c", str(path)])
    assert r.returncode == 1 and "needs a [redis] table" in r.stderr, r.stderr


# ---- the state file -------------------------------------------------------------------------

def test_state_file_survives_restart_and_reload(make_backend, make_sluice, tmp_path):
    bes = {"stable": make_backend("stable"), "canary": make_backend("canary")}
    state = tmp_path / "sluice-state.json"
    s = make_sluice()

    def cfg(ws, wc):
        return s.config(routes=[split_route([("stable", ws), ("canary", wc)])],
                        pools=pools_of(bes), server={"state_file": str(state)})

    s.start(cfg(90, 10))
    st, _, _ = s.admin_get("/admin/routes/app/split", method="PUT",
                           body=b'{"stable": 40, "canary": 60}')
    assert st == 200
    saved = json.loads(state.read_text())
    assert saved["routes"]["app"]["weights"] == {"stable": 40, "canary": 60}
    assert saved["routes"]["app"]["file_weights"] == {"stable": 90, "canary": 10}
    assert not os.path.exists(str(state) + ".tmp")
    # A restart takes the saved weights back.
    s.stop()
    s.start(cfg(90, 10))
    weights, rel = release(s)
    assert weights == {"stable": 40, "canary": 60} and rel["source"] == "api"
    assert collections.Counter(n for (n, _), k in send(s, 100).items() for _ in range(k)) == \
        {"stable": 40, "canary": 60}
    # A reload with the same file weights keeps them; changed file weights win.
    assert s.reload(cfg(90, 10)) == "ok"
    assert release(s)[0] == {"stable": 40, "canary": 60}
    assert s.reload(cfg(80, 20)) == "ok"
    assert release(s)[0] == {"stable": 80, "canary": 20}
    assert json.loads(state.read_text())["routes"]["app"]["weights"] == \
        {"stable": 80, "canary": 20}


def test_rollback_survives_a_restart_with_a_state_file(make_backend, make_sluice, tmp_path):
    bes = {"stable": make_backend("stable"), "canary": make_backend("canary")}
    bes["canary"].set_default(Response(status=500))
    state = tmp_path / "state.json"
    s = make_sluice()
    cfg = s.config(routes=[split_route([("stable", 50), ("canary", 50)],
                                       rollback={"max_error_rate": 0.1, "min_requests": 10})],
                   pools=pools_of(bes), server={"state_file": str(state)})
    s.start(cfg)
    send(s, 60)
    wait_until(lambda: state.exists() and
               json.loads(state.read_text())["routes"]["app"]["state"] == "rolled_back",
               timeout=5)
    s.stop()
    s.start(cfg)
    weights, rel = release(s)
    assert weights == {"stable": 100, "canary": 0}
    assert rel["state"] == "rolled_back" and rel["last_decision"]["action"] == "rollback"


def test_broken_state_file_is_ignored_with_a_warning(make_backend, make_sluice, tmp_path):
    bes = {"stable": make_backend("stable"), "canary": make_backend("canary")}
    state = tmp_path / "state.json"
    state.write_text('{"routes": {"app": {"weights": {"stable": "x"}}}}')
    s = make_sluice()
    s.start(s.config(routes=[split_route([("stable", 90), ("canary", 10)])],
                     pools=pools_of(bes), server={"state_file": str(state)}))
    assert release(s)[0] == {"stable": 90, "canary": 10}
    assert "does not fit the route" in s.stderr() + s.stdout()


# ---- two instances sharing Redis ------------------------------------------------------------

def test_two_instances_share_counts_and_roll_back_together(make_backend, make_sluice, redis):
    bes = {"stable": make_backend("stable"), "canary": make_backend("canary")}
    bes["canary"].set_default(Response(status=500))
    route = split_route([("stable", 50), ("canary", 50)],
                        rollback={"max_error_rate": 0.1, "min_requests": 20})
    extra = f'[redis]\nurl = "{redis.url}"\ntimeout = "200ms"\n'
    a, b = make_sluice("a"), make_sluice("b")
    for s in (a, b):
        s.start(s.config(routes=[route], pools=pools_of(bes), extra=extra,
                         server={"release_store": "redis"}))
    # 14 failing canary requests through A: under min_requests on its own.
    send(a, 28)
    assert release(a)[0] == {"stable": 50, "canary": 50}
    wait_until(lambda: release(b)[1]["window"]["canary"]["peer_requests"] == 14, timeout=5)
    # B counts A's 14: its 6th failing canary request makes 20 and rolls back.
    before = len(bes["canary"].requests)
    send(b, 40)
    assert len(bes["canary"].requests) - before <= 8
    assert release(b)[0] == {"stable": 100, "canary": 0}
    # A takes B's decision within a second.
    wait_until(lambda: release(a)[0] == {"stable": 100, "canary": 0}, timeout=2)
    assert release(a)[1]["state"] == "rolled_back"
    before = len(bes["canary"].requests)
    send(a, 20)
    assert len(bes["canary"].requests) == before

    # An API change on one instance reaches the other; Redis down, each keeps its state.
    st, _, _ = a.admin_get("/admin/routes/app/split", method="PUT",
                           body=b'{"stable": 70, "canary": 30}')
    assert st == 200
    wait_until(lambda: release(b)[0] == {"stable": 70, "canary": 30}, timeout=2)
    redis.stop()
    st, _, _ = b.admin_get("/admin/routes/app/split", method="PUT",
                           body=b'{"stable": 90, "canary": 10}')
    assert st == 200
    assert release(b)[0] == {"stable": 90, "canary": 10}
    assert release(a)[0] == {"stable": 70, "canary": 30}
    assert send(a, 10)[("stable", 200)] >= 7


def test_a_new_instance_takes_the_shared_state(make_backend, make_sluice, redis):
    bes = {"stable": make_backend("stable"), "canary": make_backend("canary")}
    route = split_route([("stable", 90), ("canary", 10)])
    extra = f'[redis]\nurl = "{redis.url}"\n'
    a = make_sluice("a")
    a.start(a.config(routes=[route], pools=pools_of(bes), extra=extra,
                     server={"release_store": "redis"}))
    assert post(a, "app", "rollback")[0] == 200
    b = make_sluice("b")
    b.start(b.config(routes=[route], pools=pools_of(bes), extra=extra,
                     server={"release_store": "redis"}))
    wait_until(lambda: release(b)[0] == {"stable": 100, "canary": 0}, timeout=3)
    assert release(b)[1]["state"] == "rolled_back"
