"""Test support for Sluice's integration tests: a recording HTTP/1.1 origin (Backend),
a raw-socket HTTP client (RawClient), a runner for the real binary (Sluice), an OTLP/HTTP
JSON trace receiver (OtlpReceiver), and headless Chromium driven over the DevTools protocol
for browser-level (CORS) tests (Browser, run_page).

Only the Python standard library is used.
"""

from .util import Blackhole, free_port, wait_until, pattern_bytes, pattern_sha256, port_is_open, port_refuses
from .backend import Backend, Response, Request
from .client import RawClient, HttpResponse, http_request, build_request, ConnectionClosed
from .checks import assert_proxy_error
from .redis import RedisServer
from .otlp import OtlpReceiver
from .browser import (Browser, BrowserError, PageRun, PageServer, Tab, chromium_path, probe_page,
                      run_page, PROBE_JS, HOSTS)
from .process import (Sluice, SluiceDied, Metrics, render_config, parse_metrics, run_cli,
                      toml_table, SLUICE_BIN)

__all__ = [
    "assert_proxy_error", "RedisServer", "OtlpReceiver", "Blackhole", "free_port", "wait_until", "pattern_bytes", "pattern_sha256", "port_is_open", "port_refuses",
    "Backend", "Response", "Request",
    "RawClient", "HttpResponse", "http_request", "build_request", "ConnectionClosed",
    "Browser", "BrowserError", "PageRun", "PageServer", "Tab", "chromium_path", "probe_page", "run_page",
    "PROBE_JS", "HOSTS",
    "Sluice", "SluiceDied", "Metrics", "render_config", "parse_metrics", "run_cli", "toml_table",
    "SLUICE_BIN",
]
