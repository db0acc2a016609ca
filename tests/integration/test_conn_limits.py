"""Connection caps: server.max_connections (each worker holds its share; over it a new
connection is reset at once), listener max_connections_per_ip (counted over all workers), both
changed by a reload, and a low open-file limit (accept pauses instead of spinning, and takes
connections again once descriptors are free)."""

import os
import resource
import socket
import threading
import time

from sluicetest import ConnectionClosed, RawClient, build_request, free_port, wait_until

REFUSED = "sluice_connections_refused_total"


def served(port, source=None):
    """A connection that got a 200 for GET / (kept open), or None when Sluice closed it."""
    try:
        c = RawClient(port, source=source, timeout=5)
    except ConnectionResetError:  # the reset came before connect() returned
        return None
    try:
        c.send(build_request("GET", "/"))
        r = c.read_response()
    except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
        c.close()
        return None
    assert r.status == 200, r
    return c


def refused(port, source=None):
    """True when a new connection is reset by Sluice without an answer, at once."""
    try:
        c = RawClient(port, source=source, timeout=5)
    except ConnectionResetError:  # the reset came before connect() returned
        return True
    try:
        return c.is_closed(timeout=2.0)
    finally:
        c.close()


def connect(port):
    """A plain TCP connection (no request), or None when it was reset during connect()."""
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=5)
    except ConnectionResetError:
        return None


def cpu_seconds(pid):
    """User + system CPU time of the whole process so far (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def low_nofile(n):
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return limit


def test_over_max_connections_a_new_connection_is_closed_and_the_others_go_on(proxy, backend):
    s = proxy(backend, server={"max_connections": 3})
    port = s.port()
    held = [served(port) for _ in range(3)]
    assert all(held)
    assert refused(port)
    assert refused(port)
    for c in held:  # the connections already open are not disturbed
        assert c.request(target="/again").status == 200
    m = s.metrics()
    assert m.value(REFUSED, listener="web", reason="max_connections") == 2
    assert m.value("sluice_connections_active", listener="web") == 3
    wait_until(lambda: "this worker's share of server.max_connections is in use" in s.stderr(),
               message="the refusal to be logged")
    # One goes away: its place is free for the next client.
    held.pop().close()
    wait_until(lambda: s.metrics().value("sluice_connections_active", listener="web") == 2,
               message="the closed connection to be counted out")
    assert served(port) is not None
    for c in held:
        c.close()


def test_max_connections_per_ip_counts_one_address_over_all_workers(proxy, backend):
    port = free_port()
    s = proxy(backend, server={"workers": 2},
              listeners=[{"name": "web", "listen": f"127.0.0.1:{port}",
                          "max_connections_per_ip": 2}])
    # Six tries from one address land on either worker (SO_REUSEPORT hashes the source port):
    # exactly two are served, because the count is shared by the workers.
    first = [served(port, source="127.0.0.1") for _ in range(6)]
    kept = [c for c in first if c]
    assert len(kept) == 2
    # Another address has its own places.
    second = [served(port, source="127.0.0.2") for _ in range(3)]
    assert len([c for c in second if c]) == 2
    m = s.metrics()
    assert m.value(REFUSED, listener="web", reason="per_ip") == 5
    assert m.value(REFUSED, listener="web", reason="max_connections") == 0
    wait_until(lambda: "listener.max_connections_per_ip reached" in s.stderr(),
               message="the refusal to be logged")
    # The connections of 127.0.0.1 still work; closing one frees a place for that address.
    assert kept[0].request(target="/x").status == 200
    kept.pop().close()
    again = wait_until(lambda: served(port, source="127.0.0.1"), timeout=5,
                       message="a place for 127.0.0.1 after one of its connections closed")
    for c in kept + [again] + [c for c in second if c]:
        c.close()


def test_reload_changes_both_caps(make_sluice, backend):
    s = make_sluice()
    port = free_port()
    pools = {"p": {"backends": [backend.address]}}
    routes = [{"name": "r", "path": "/", "pool": "p"}]

    def cfg(max_conns, per_ip=None):
        lst = {"name": "web", "listen": f"127.0.0.1:{port}"}
        if per_ip is not None:
            lst["max_connections_per_ip"] = per_ip
        return s.config(routes=routes, pools=pools, listeners=[lst],
                        server={"max_connections": max_conns})

    s.start(cfg(1))
    one = served(port)
    assert one and refused(port)
    assert s.reload(cfg(3)) == "ok"
    more = [served(port), served(port)]
    assert all(more) and refused(port)
    # Lowering the cap closes nothing that is open; new connections wait for the count to drop.
    assert s.reload(cfg(2)) == "ok"
    assert refused(port)
    for c in [one] + more:
        assert c.request(target="/still").status == 200
    # Turning the per-address cap on counts the connections accepted from then on.
    for c in more:
        c.close()
    wait_until(lambda: s.metrics().value("sluice_connections_active", listener="web") == 1,
               message="two closed connections to be counted out")
    assert s.reload(cfg(100, per_ip=1)) == "ok"
    new = served(port, source="127.0.0.3")
    assert new is not None and refused(port, source="127.0.0.3")
    m = s.metrics()
    assert m.value(REFUSED, listener="web", reason="max_connections") == 3
    assert m.value(REFUSED, listener="web", reason="per_ip") == 1
    one.close()
    new.close()


def test_default_max_connections_follows_a_low_fd_limit(make_sluice, backend):
    s = make_sluice()
    s.start(s.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                     pools={"p": {"backends": [backend.address]}}),
            preexec_fn=low_nofile(64))
    # "auto": (64 - 64 reserved) / 2, at least 16.
    wait_until(lambda: '"max_connections":"16","fd_limit":"64"' in s.stderr(),
               message="the startup line with the derived max_connections")
    port = s.port()
    cpu0 = cpu_seconds(s.pid)
    clients = [c for c in (connect(port) for _ in range(40)) if c]
    wait_until(lambda: s.metrics().value(REFUSED, listener="web", reason="max_connections") == 24,
               message="24 of 40 connections refused")
    assert s.metrics().value("sluice_connections_active", listener="web") == 16
    assert s.metrics().value(REFUSED, listener="web", reason="fd_limit") == 0
    assert cpu_seconds(s.pid) - cpu0 < 0.5
    for c in clients:
        c.close()
    wait_until(lambda: served(s.port()), message="a connection served after the clients left")


def test_out_of_descriptors_accept_pauses_and_resumes_without_spinning(make_sluice, backend):
    s = make_sluice()
    # A cap above what 64 descriptors allow: accept(2) itself runs out (EMFILE). Two workers:
    # libuv's own accept loop could spin when one worker's spare descriptor was taken by the
    # other (uv__emfile_trick), which is what the connect storm below provoked.
    s.start(s.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                     pools={"p": {"backends": [backend.address]}},
                     server={"max_connections": 1000, "workers": 2}),
            preexec_fn=low_nofile(64))
    wait_until(lambda: "server.max_connections is above the open-file limit" in s.stderr(),
               message="the warning about max_connections above the fd limit")
    port = s.port()
    clients = [connect(port) for _ in range(100)]
    assert all(clients)  # nothing is refused: the connections wait in the backlog
    wait_until(lambda: "accept paused: out of file descriptors" in s.stderr(), timeout=10,
               message="the accept pause to be logged")
    storm_end = time.monotonic() + 1.0

    def storm():
        while time.monotonic() < storm_end:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:  # reset, or the backlog is full
                pass

    threads = [threading.Thread(target=storm) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Descriptors stay exhausted while the clients hold their connections: measure the CPU the
    # process uses over one second (a loop retrying accept() would use all of it).
    cpu0 = cpu_seconds(s.pid)
    time.sleep(1.0)
    used = cpu_seconds(s.pid) - cpu0
    assert used < 0.2, f"{used:.2f}s of CPU in 1s while out of descriptors"
    s.check_alive()
    for c in clients:
        c.close()
    # The waiting connections are taken and dropped as descriptors come back; then new ones
    # are served again.
    wait_until(lambda: served(port), timeout=10, message="a connection served again")
    m = s.metrics()
    assert m.value(REFUSED, listener="web", reason="fd_limit") >= 1
    assert m.value(REFUSED, listener="web", reason="max_connections") == 0
    s.check_alive()


def test_defer_accept_keeps_a_silent_connection_in_the_kernel_and_a_reload_turns_it_off(
        make_sluice, backend):
    # On by default: the kernel hands a connection over once the client sent something, so a
    # connection that sent nothing is not Sluice's yet (no descriptor, not counted), and the
    # request it sends later is served as usual. Off: taken as soon as it is connected.
    s = make_sluice()
    port = free_port()
    pools = {"p": {"backends": [backend.address]}}
    routes = [{"name": "r", "path": "/", "pool": "p"}]

    def cfg(defer=None):
        lst = {"name": "web", "listen": f"127.0.0.1:{port}"}
        if defer is not None:
            lst["defer_accept"] = defer
        return s.config(routes=routes, pools=pools, listeners=[lst],
                        server={"workers": 1, "client_header_timeout": "2s"})

    def active():
        return s.metrics().value("sluice_connections_active", listener="web")

    s.start(cfg())
    silent = connect(port)
    talker = served(port)  # connected after the silent one: the accept queue is in order
    assert silent and talker
    assert active() == 1
    silent.sendall(build_request("GET", "/late"))
    assert silent.recv(4096).startswith(b"HTTP/1.1 200 ")
    wait_until(lambda: active() == 2, message="the late talker to be counted")
    # One that never sends is handed over after about a second, then the header timeout ends
    # it (silently: it never sent a byte).
    mute = connect(port)
    t0 = time.monotonic()
    mute.settimeout(10)
    assert mute.recv(4096) == b""
    assert 2.0 <= time.monotonic() - t0 < 8.0
    for c in (silent, talker, mute):
        c.close()
    wait_until(lambda: active() == 0, message="the connections to be counted out")

    assert s.reload(cfg(defer=False)) == "ok"
    silent = connect(port)
    wait_until(lambda: active() == 1, message="a silent connection taken at once")
    silent.sendall(build_request("GET", "/"))
    assert silent.recv(4096).startswith(b"HTTP/1.1 200 ")
    silent.close()
