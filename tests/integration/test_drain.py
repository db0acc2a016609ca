"""drain_timeout: after a split pool's weight drops to 0 (admin API or reload), its WebSocket
tunnels and keep-alive upstream connections are closed once that time has passed; requests
in flight finish and their connections are not pooled; going back above 0 in time drains
nothing; a pool another route still sends traffic to is left alone.

Real binary, real backend threads on loopback. The pool of a tunnel or request is forced
with the split's override header, so each test knows which backend holds what.
"""

import json
import threading
import time

import pytest

from sluicetest import RawClient, Response, build_request, wait_until

from test_split import backends, put_split, split_route, who

WS_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]


def drain_route(stable=50, canary=50, timeout="300ms", **kw):
    return split_route([("stable", stable), ("canary", canary)], name="app",
                       override_header="X-Pool", drain_timeout=timeout, **kw)


def start(make_sluice, bes, routes, workers=1):
    s = make_sluice()
    pools = {n: {"backends": [b.address]} for n, b in bes.items()}
    s.start(s.config(routes=routes, pools=pools, server={"workers": workers}))
    return s, pools


def ws_backends(make_backend):
    bes = backends(make_backend, "stable", "canary")
    for be in bes.values():
        be.on("/ws", Response(action="upgrade"))
    return bes


def open_tunnel(s, pool):
    c = RawClient(s.port(), timeout=10)
    c.send(build_request("GET", "/ws", WS_HEADERS + [("X-Pool", pool)]))
    r = c.read_response()
    assert r.status == 101, r
    echo(c, b"hello " + pool.encode())
    return c


def echo(c, msg):
    c.send(msg)
    assert c.recv_exact(len(msg)) == msg


def drain_events(s):
    out = []
    for line in s.stderr().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("msg") == "pool drained":
            out.append(e)
    return out


def stays(pred, seconds, message):
    """`pred` holds the whole time (polled): for things that must NOT happen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert pred(), message
        time.sleep(0.02)


@pytest.mark.parametrize("workers", [1, 2])
def test_tunnel_through_the_drained_pool_closes_after_drain_timeout(make_backend, make_sluice,
                                                                    workers):
    # With 2 workers the tunnels may sit on either; every worker reports, one event is logged.
    bes = ws_backends(make_backend)
    s, _ = start(make_sluice, bes, [drain_route()], workers=workers)
    canary, stable = open_tunnel(s, "canary"), open_tunnel(s, "stable")
    try:
        t0 = time.monotonic()
        assert put_split(s, "app", {"canary": 0})[0] == 200
        echo(canary, b"still open right after the PUT")
        assert canary.wait_closed(5) is not None, "the canary's tunnel must be closed"
        elapsed = time.monotonic() - t0
        assert 0.3 <= elapsed < 2.0, elapsed
        # The backend side is closed too, and the baseline's tunnel is untouched.
        wait_until(lambda: "client-eof" in bes["canary"].upgrade_events, 5,
                   message="canary backend sees the tunnel close")
        wait_until(lambda: drain_events(s), 5, message="the pool drained event")
        echo(stable, b"baseline tunnel still works")
        assert bes["stable"].upgrade_events == []
    finally:
        canary.close()
        stable.close()
    [event] = drain_events(s)
    assert event["level"] == "info"
    assert (event["route"], event["pool"], event["tunnels"]) == ("app", "canary", "1"), event
    # The tunnel's access line is written when it ends: a 101 on the canary.
    s.wait_access(lambda e: e.get("pool") == "canary" and e.get("status") == 101)


def test_keep_alive_connections_to_the_drained_pool_are_closed(make_backend, make_sluice):
    bes = backends(make_backend, "stable", "canary")
    s, _ = start(make_sluice, bes, [drain_route()])
    with RawClient(s.port()) as c:
        for pool in ("canary", "stable", "canary", "stable"):
            assert who(c, "/", {"X-Pool": pool})[0] == pool
    # One pooled upstream connection each (the client's connection is gone, Sluice's stay).
    assert bes["canary"].open_connections == 1 and bes["stable"].open_connections == 1
    t0 = time.monotonic()
    assert put_split(s, "app", {"canary": 0})[0] == 200
    wait_until(lambda: bes["canary"].open_connections == 0, 5,
               message="the canary's idle keep-alive connection closed")
    assert time.monotonic() - t0 >= 0.3
    wait_until(lambda: drain_events(s), 5, message="the pool drained event")
    [event] = drain_events(s)
    assert (event["pool"], event["tunnels"], event["connections"]) == ("canary", "0", "1"), event
    assert bes["stable"].open_connections == 1
    # The stable pool's connection is still the pooled one; the canary still answers an
    # override (on a new connection).
    with RawClient(s.port()) as c:
        assert who(c)[0] == "stable"
        assert who(c, "/", {"X-Pool": "canary"})[0] == "canary"
    assert bes["stable"].accepted == 1
    assert bes["canary"].accepted == 2


def test_a_request_in_flight_finishes_and_its_connection_is_not_pooled(make_backend,
                                                                       make_sluice):
    bes = backends(make_backend, "stable", "canary")
    bes["canary"].on("/slow", Response(body=b"slow answer", delay=1.5))
    s, _ = start(make_sluice, bes, [drain_route()])
    answers = []

    def slow_request():
        with RawClient(s.port()) as c:
            answers.append(c.request("GET", "/slow", [("X-Pool", "canary")]))

    t = threading.Thread(target=slow_request)
    t.start()
    try:
        bes["canary"].wait_requests(1)
        assert put_split(s, "app", {"canary": 0})[0] == 200
        wait_until(lambda: drain_events(s), 5, message="the pool drained event")
        assert bes["canary"].open_connections == 1, "the busy connection is not cut"
    finally:
        t.join(10)
    [r] = answers
    assert r.status == 200 and r.body == b"slow answer"
    # Released after its response: closed, not put back in the idle pool.
    wait_until(lambda: bes["canary"].open_connections == 0, 5,
               message="the canary connection closed on release")
    [event] = drain_events(s)
    assert (event["pool"], event["in_flight"], event["connections"]) == ("canary", "1", "0")


def test_raising_the_weight_before_the_timeout_drains_nothing(make_backend, make_sluice):
    bes = ws_backends(make_backend)
    s, _ = start(make_sluice, bes, [drain_route(timeout="1s")])
    tunnel = open_tunnel(s, "canary")
    try:
        with RawClient(s.port()) as c:
            assert who(c, "/", {"X-Pool": "canary"})[0] == "canary"
        assert bes["canary"].open_connections == 2  # the tunnel and a pooled connection
        assert put_split(s, "app", {"canary": 0})[0] == 200
        assert not tunnel.is_closed(0.5)
        assert put_split(s, "app", {"canary": 50})[0] == 200
        # Well past the first drop's deadline: nothing was drained.
        assert not tunnel.is_closed(1.0)
        echo(tunnel, b"still here")
        assert bes["canary"].open_connections == 2
        assert drain_events(s) == []
        # The same drop, left alone this time, does drain (the control).
        assert put_split(s, "app", {"canary": 0})[0] == 200
        assert tunnel.wait_closed(5) is not None
        wait_until(lambda: bes["canary"].open_connections == 0, 5,
                   message="the canary's connections closed")
    finally:
        tunnel.close()
    [event] = wait_until(lambda: drain_events(s), 5, message="the pool drained event")
    assert (event["tunnels"], event["connections"]) == ("1", "1"), event


def test_a_pool_another_route_sends_traffic_to_is_not_drained_until_a_reload_frees_it(
        make_backend, make_sluice):
    bes = backends(make_backend, "stable", "canary")
    plain = dict(name="legacy", path="/legacy/", pool="canary")
    s, pools = start(make_sluice, bes, [drain_route(), plain])
    with RawClient(s.port()) as c:
        assert who(c, "/legacy/x")[0] == "canary"
    assert bes["canary"].open_connections == 1
    assert put_split(s, "app", {"canary": 0})[0] == 200
    stays(lambda: bes["canary"].open_connections == 1, 1.0,
          "a pool the plain route 'legacy' uses must not be drained")
    assert drain_events(s) == []
    # A reload drops the plain route and keeps the canary at 0 in the file: now it drains.
    assert s.reload(s.config(routes=[drain_route(canary=0)], pools=pools)) == "ok"
    wait_until(lambda: bes["canary"].open_connections == 0, 5,
               message="the canary's connection closed after the reload")
    [event] = wait_until(lambda: drain_events(s), 5, message="the pool drained event")
    assert (event["route"], event["pool"], event["connections"]) == ("app", "canary", "1")


def test_no_drain_without_drain_timeout(make_backend, make_sluice):
    bes = backends(make_backend, "stable", "canary")
    route = split_route([("stable", 50), ("canary", 50)], name="app", override_header="X-Pool")
    s, _ = start(make_sluice, bes, [route])
    with RawClient(s.port()) as c:
        assert who(c, "/", {"X-Pool": "canary"})[0] == "canary"
    assert put_split(s, "app", {"canary": 0})[0] == 200
    stays(lambda: bes["canary"].open_connections == 1, 0.6,
          "without drain_timeout the pooled connection stays")
    assert drain_events(s) == []
