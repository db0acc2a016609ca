#!/usr/bin/env python3
"""A tiny demo origin for the quickstart: answers every request with who it is.

Usage: demo_backend.py PORT NAME [BIND_ADDRESS]   (binds 127.0.0.1 unless told otherwise)
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(length) if length else b""
        body = json.dumps({
            "backend": NAME,
            "method": self.command,
            "path": self.path,
            "request_id": self.headers.get("X-Request-Id"),
            "x_forwarded_for": self.headers.get("X-Forwarded-For"),
            "received_bytes": len(body_in),
        }, indent=2).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    PORT, NAME = int(sys.argv[1]), sys.argv[2]
    BIND = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    ThreadingHTTPServer((BIND, PORT), Handler).serve_forever()
