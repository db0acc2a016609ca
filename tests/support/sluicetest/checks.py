"""Assertions shared by the integration tests."""

import json


def assert_proxy_error(resp, status, code, closed=None):
    """A proxy-generated error: given status, JSON body exactly {"error", "request_id"}."""
    assert resp.status == status, f"expected {status} {code}, got {resp.status}: {resp.body[:300]!r}"
    ctype = (resp.header("content-type") or "").lower()
    assert ctype.startswith("application/json"), f"Content-Type {ctype!r}"
    try:
        doc = json.loads(resp.body)
    except ValueError:
        raise AssertionError(f"error body is not JSON: {resp.body[:300]!r}")
    assert set(doc) == {"error", "request_id"}, f"error body keys: {doc}"
    assert doc["error"] == code, f"expected error {code!r}, got {doc}"
    assert isinstance(doc["request_id"], str) and doc["request_id"], doc
    rid = resp.header("x-request-id")
    if rid is not None:
        assert rid == doc["request_id"], f"X-Request-Id {rid!r} != body {doc['request_id']!r}"
    if closed:
        assert resp.connection_close, f"expected Connection: close on {status}: {resp.headers}"
    return doc
