"""TLS helpers for the integration tests: test certificates made with the `openssl` CLI, thin
wrappers around `openssl s_client` and `curl`, and a TLS variant of the recording Backend.

    ca = TestCA(tmp_dir)
    cert, key = ca.issue("a", ["a.test", "*.wild.test"], key="ec")
    be = TlsBackend("tb", certfile=..., keyfile=...).start()
"""

import os
import re
import ssl
import subprocess
import threading

from .backend import Backend
from .client import RawClient


def _run(args, **kw):
    out = subprocess.run(args, capture_output=True, timeout=60, **kw)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {out.stderr.decode(errors='replace')}")
    return out


def new_key(path, kind="ec"):
    """Write a private key: kind "ec" (P-256) or "rsa" (2048 bit)."""
    if kind == "ec":
        _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-out", path])
    else:
        _run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
              "-out", path])
    return path


class TestCA:
    """A throw-away certificate authority in `directory`."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory, name="Sluice Test CA"):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.key = new_key(os.path.join(self.dir, "ca.key"), "ec")
        self.cert = os.path.join(self.dir, "ca.pem")
        _run(["openssl", "req", "-x509", "-new", "-key", self.key, "-out", self.cert,
              "-days", "3", "-subj", f"/CN={name}",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        self._serial = 1000

    def issue(self, stem, names, kind="ec", cn=None, ips=(), key_path=None):
        """Issue a server certificate for DNS `names` (and `ips`); returns (cert, key) paths.
        With key_path an existing key is reused."""
        key = key_path or new_key(os.path.join(self.dir, f"{stem}.key"), kind)
        csr = os.path.join(self.dir, f"{stem}.csr")
        cert = os.path.join(self.dir, f"{stem}.pem")
        ext = os.path.join(self.dir, f"{stem}.ext")
        san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{i}" for i in ips])
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    f"subjectAltName={san}\n")
        _run(["openssl", "req", "-new", "-key", key, "-out", csr,
              "-subj", f"/CN={cn or (names[0] if names else stem)}"])
        self._serial += 1
        _run(["openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
              "-set_serial", str(self._serial), "-days", "3", "-out", cert, "-extfile", ext])
        return cert, key


def cert_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def cert_fingerprint(path):
    out = _run(["openssl", "x509", "-in", path, "-noout", "-fingerprint", "-sha256"])
    return out.stdout.decode().strip().split("=", 1)[1]


class SClient:
    """Result of one `openssl s_client` run."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout.decode("utf-8", "replace")
        self.stderr = proc.stderr.decode("utf-8", "replace")
        self.text = self.stdout + "\n" + self.stderr

    def _field(self, pattern):
        m = re.search(pattern, self.text, re.M)
        return m.group(1).strip() if m else None

    @property
    def subject(self):
        # "subject=CN = a.test" (OpenSSL 3) in the certificate summary
        return self._field(r"^subject=(.*)$")

    @property
    def subject_cn(self):
        s = self.subject or ""
        m = re.search(r"CN\s*=\s*([^,/]+)", s)
        return m.group(1).strip() if m else None

    @property
    def protocol(self):
        return self._field(r"^\s*Protocol\s*:\s*(\S+)") or self._field(r"^New, (TLSv[\d.]+)")

    @property
    def reused(self):
        return bool(re.search(r"^Reused, ", self.text, re.M))

    @property
    def new(self):
        return bool(re.search(r"^New, ", self.text, re.M))

    @property
    def alpn(self):
        if re.search(r"^No ALPN negotiated", self.text, re.M):
            return None
        return self._field(r"^ALPN protocol: (\S+)")

    @property
    def summary(self):
        """The s_client "New, TLSv1.2, Cipher is ..." / "Reused, ..." line."""
        m = re.search(r"^((?:New|Reused), .*)$", self.text, re.M)
        return m.group(1) if m else f"(no handshake summary, rc={self.rc})"

    @property
    def cert_der(self):
        """DER of the server certificate printed by s_client (None if there was none)."""
        m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", self.stdout,
                      re.S)
        return ssl.PEM_cert_to_DER_cert(m.group(0)) if m else None

    @property
    def session_ticket(self):
        return "TLS session ticket:" in self.stdout

    @property
    def session_id(self):
        return self._field(r"^\s*Session-ID:[ \t]*(\S*)[ \t]*$")

    @property
    def handshake_ok(self):
        # Not the exit code: s_client also exits 1 when the server closes without a
        # close_notify after the response (checked separately).
        return (self.new or self.reused) and "Cipher is (NONE)" not in self.text

    @property
    def http_status(self):
        m = re.search(r"^HTTP/1\.[01] (\d{3})", self.stdout, re.M)
        return int(m.group(1)) if m else None

    def __repr__(self):
        return f"<SClient rc={self.rc}\n{self.text[-3000:]}>"


def s_client(port, *args, servername=None, request=None, timeout=20, host="127.0.0.1"):
    """Run `openssl s_client` against 127.0.0.1:port. With `request` (bytes), send it after
    the handshake and wait for the server to close (-ign_eof); otherwise stdin is empty and
    the client disconnects right after the handshake."""
    cmd = ["openssl", "s_client", "-connect", f"{host}:{port}"]
    if servername is not None:
        cmd += ["-servername", servername]
    else:
        cmd += ["-noservername"]
    if request is not None:
        cmd += ["-ign_eof"]
    cmd += list(args)
    proc = subprocess.run(cmd, input=request if request is not None else b"",
                          capture_output=True, timeout=timeout)
    return SClient(proc)


def curl(url, *args, timeout=30, include=True):
    """Run curl -sS [-i] ...; returns CompletedProcess (bytes)."""
    return subprocess.run(["curl", "-sS", *(["-i"] if include else []), "--max-time",
                           str(timeout), *args, url],
                          capture_output=True, timeout=timeout + 10)


class TlsBackend(Backend):
    """The recording Backend, serving HTTPS: each accepted connection is wrapped with a
    server-side SSLContext (certfile/keyfile) before the usual request loop. Failed handshakes
    are counted in `.tls_failures` (with the exception text in `.tls_errors`)."""

    def __init__(self, name="tls-backend", *, certfile, keyfile, **kw):
        super().__init__(name, **kw)
        self.ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl_ctx.load_cert_chain(certfile, keyfile)
        self.tls_failures = 0
        self.tls_errors = []
        self.tls_versions = []
        self._tls_lock = threading.Lock()

    def _serve(self, c):
        raw = c.sock
        try:
            raw.settimeout(10)
            c.sock = self.ssl_ctx.wrap_socket(raw, server_side=True)
            c.sock.settimeout(None)
        except (ssl.SSLError, OSError) as e:
            with self._tls_lock:
                self.tls_failures += 1
                self.tls_errors.append(repr(e))
            try:
                raw.close()
            except OSError:
                pass
            return
        with self._tls_lock:
            self.tls_versions.append(c.sock.version())
        super()._serve(c)


def client_context(verify=False, cafile=None, min_version=None, max_version=None, alpn=None):
    """A client SSLContext; by default it does not verify (tests compare certificates)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class TlsRawClient(RawClient):
    """RawClient over TLS (Python's ssl): same request/response helpers, plus `.tls`
    (the SSLSocket) to inspect the negotiated version, certificate and session."""

    def __init__(self, port, servername=None, ctx=None, session=None, host="127.0.0.1",
                 timeout=10.0):
        super().__init__(port, host=host, timeout=timeout)
        self.ctx = ctx or client_context()
        self.sock = self.ctx.wrap_socket(self.sock, server_hostname=servername,
                                         session=session)
        self.tls = self.sock

    def peer_der(self):
        return self.tls.getpeercert(binary_form=True)


def client_hello(servername="a.test", ctx=None):
    """The bytes of a real ClientHello (from Python's ssl through memory BIOs)."""
    ctx = ctx or client_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=servername)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()
