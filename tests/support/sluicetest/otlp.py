"""A small OTLP/HTTP JSON receiver: a ThreadingHTTPServer that records every POSTed body
(parsed JSON) and answers a configurable status (200 by default)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .util import bound_socket, wait_until


class OtlpReceiver:
    def __init__(self, host="127.0.0.1", port=0, status=200):
        self.status = status
        self.posts = []  # [(path, content_type, parsed json)]
        self.attempts = 0  # every POST, whatever was answered
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as collectors do

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with receiver._lock:
                    receiver.attempts += 1
                    status = receiver.status
                    if status == 200:
                        receiver.posts.append((self.path, self.headers.get("Content-Type"),
                                               json.loads(body)))
                answer = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer((host, port), Handler, bind_and_activate=False)
        self._server.socket.close()
        self._server.socket = bound_socket(host, port)  # not a port free_port() handed out
        self._server.server_address = self._server.socket.getsockname()
        self._server.server_activate()
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://{host}:{self.port}/v1/traces"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def spans(self):
        """Every span received so far, each with its resource attributes under "_resource"."""
        out = []
        with self._lock:
            posts = list(self.posts)
        for _, _, body in posts:
            for rs in body.get("resourceSpans", []):
                res = {a["key"]: a["value"] for a in rs.get("resource", {}).get("attributes", [])}
                for ss in rs.get("scopeSpans", []):
                    for s in ss.get("spans", []):
                        s = dict(s)
                        s["_resource"] = res
                        s["_scope"] = ss.get("scope", {})
                        out.append(s)
        return out

    def wait_spans(self, pred, count=1, timeout=10.0):
        """Wait until `count` received spans satisfy pred; returns them."""
        found = []

        def have():
            found[:] = [s for s in self.spans() if pred(s)]
            return len(found) >= count

        wait_until(have, timeout, message=f"{count} matching span(s)")
        return list(found)


def attrs(span):
    """{key: python value} of a span's attributes (intValue as int)."""
    out = {}
    for a in span.get("attributes", []):
        v = a["value"]
        if "intValue" in v:
            out[a["key"]] = int(v["intValue"])
        else:
            out[a["key"]] = v.get("stringValue")
    return out
