"""JWT identity ([middleware.NAME] type = "jwt") against product.md: Authorization: Bearer
tokens verified (HS256, RS256), 401 unauthorized on a missing (required) or invalid token,
required = false, and rate limits keyed on a verified claim (jwt:sub)."""

import base64
import hashlib
import hmac
import json
import subprocess
import time

import pytest

from sluicetest import assert_proxy_error, http_request

SECRET = "test-secret-0123456789"


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(payload, secret=SECRET, alg="HS256", header=None):
    h = b64(json.dumps(header or {"alg": alg, "typ": "JWT"}))
    p = b64(json.dumps(payload))
    sig = hmac.new(secret.encode() if isinstance(secret, str) else secret,
                   f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64(sig)}"


def rs256(payload, key_path):
    h = b64(json.dumps({"alg": "RS256", "typ": "JWT"}))
    p = b64(json.dumps(payload))
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key_path)],
                         input=f"{h}.{p}".encode(), capture_output=True, check=True).stdout
    return f"{h}.{p}.{b64(sig)}"


def jwt_toml(name, **kw):
    lines = [f"[middleware.{name}]", 'type = "jwt"']
    for k, v in kw.items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, list):
            lines.append(f"{k} = {json.dumps(v)}")
        else:
            lines.append(f'{k} = "{v}"')
    return "\n".join(lines) + "\n"


def start(make_sluice, backend, extra, middleware):
    s = make_sluice()
    cfg = s.config(routes=[{"name": "r", "path": "/", "pool": "p", "middleware": middleware}],
                   pools={"p": {"backends": [backend.address]}}, extra=extra)
    s.start(cfg)
    return s


def get(s, token=None, headers=None):
    h = list(headers or [])
    if token is not None:
        h.append(("Authorization", f"Bearer {token}"))
    return http_request(s.port(), "GET", "/", h)


def claims(**extra):
    now = int(time.time())
    c = {"sub": "user-1", "iss": "https://auth.test", "aud": "api", "exp": now + 300}
    c.update(extra)
    return c


@pytest.fixture
def hs_proxy(backend, make_sluice):
    return start(make_sluice, backend,
                 jwt_toml("auth", algorithms=["HS256"], secret=SECRET,
                          issuer="https://auth.test", audience="api"), ["auth"])


def test_valid_token_passes(hs_proxy, backend):
    r = get(hs_proxy, hs256(claims()))
    assert r.status == 200, r
    assert len(backend.requests) == 1
    # The token is forwarded untouched; the backend does its own authorization if it wants.
    assert backend.requests[0].header("authorization").startswith("Bearer ")


def test_missing_token_401(hs_proxy, backend):
    r = get(hs_proxy)
    assert_proxy_error(r, 401, "unauthorized")
    assert r.header("www-authenticate", "").startswith("Bearer")
    r = get(hs_proxy, headers=[("Authorization", "Basic dTpw")])
    assert_proxy_error(r, 401, "unauthorized")
    assert backend.requests == []


@pytest.mark.parametrize("token", [
    pytest.param(lambda: hs256(claims(), secret="wrong-secret"), id="wrong-signature"),
    pytest.param(lambda: hs256(claims(exp=int(time.time()) - 120)), id="expired"),
    pytest.param(lambda: hs256(claims(nbf=int(time.time()) + 600)), id="not-yet-valid"),
    pytest.param(lambda: hs256(claims(iss="https://evil.test")), id="wrong-issuer"),
    pytest.param(lambda: hs256(claims(aud="other")), id="wrong-audience"),
    pytest.param(lambda: hs256(claims(), alg="HS512"), id="alg-not-allowed"),
    pytest.param(lambda: b64('{"alg":"none","typ":"JWT"}') + "." + b64(json.dumps(claims())) + ".",
                 id="alg-none"),
    pytest.param(lambda: "not.a.jwt", id="garbage"),
])
def test_invalid_tokens_401(hs_proxy, backend, token):
    r = get(hs_proxy, token())
    assert_proxy_error(r, 401, "unauthorized")
    assert "invalid_token" in r.header("www-authenticate", "")
    assert backend.requests == []


def test_expiry_leeway(hs_proxy):
    # exp a few seconds ago is still inside the small clock-skew leeway.
    assert get(hs_proxy, hs256(claims(exp=int(time.time()) - 5))).status == 200


def test_optional_token(backend, make_sluice):
    s = start(make_sluice, backend,
              jwt_toml("auth", algorithms=["HS256"], secret=SECRET, required=False), ["auth"])
    assert get(s).status == 200  # no token: passes
    assert get(s, hs256({"sub": "x"})).status == 200
    assert_proxy_error(get(s, hs256({"sub": "x"}, secret="nope")), 401, "unauthorized")


def test_rs256_and_algorithm_confusion(backend, make_sluice, tmp_path):
    key = tmp_path / "jwt.key"
    pub = tmp_path / "jwt.pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(key)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True,
                   capture_output=True)
    s = start(make_sluice, backend, jwt_toml("auth", algorithms=["RS256"], public_key=str(pub)),
              ["auth"])
    assert get(s, rs256({"sub": "r"}, key)).status == 200
    # HS256 "signed" with the public key's PEM bytes must not verify.
    forged = hs256({"sub": "admin"}, secret=pub.read_bytes())
    assert_proxy_error(get(s, forged), 401, "unauthorized")
    assert len(backend.requests) == 1


def test_rate_limit_keyed_on_verified_sub(backend, make_sluice):
    extra = (jwt_toml("auth", algorithms=["HS256"], secret=SECRET, required=False)
             + '[middleware.per-user]\ntype = "rate_limit"\nkey = "jwt:sub"\nrate = "2/h"\n'
               'store = "local"\n')
    s = start(make_sluice, backend, extra, ["auth", "per-user"])
    alice, bob = hs256({"sub": "alice"}), hs256({"sub": "bob"})
    assert [get(s, alice).status for _ in range(3)] == [200, 200, 429]
    assert get(s, bob).status == 200  # another user, another bucket
    # A request without a token is keyed on the client IP (its own bucket).
    assert [get(s).status for _ in range(3)] == [200, 200, 429]
    # An unverifiable token never reaches the limiter's key: it is refused first.
    assert_proxy_error(get(s, hs256({"sub": "alice"}, secret="x")), 401, "unauthorized")
