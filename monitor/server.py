"""The HTTP endpoint on ``metrics.listen``: ``/metrics``, ``/healthz``, ``/readyz``.

* ``/metrics``: Prometheus text format of the daemon's own registry.
* ``/healthz``: 200 ``ok`` while the process serves requests (liveness).
* ``/readyz``: 200 ``ready`` once the engine is loaded and at least one stream is up (delivering
  frames); otherwise 503 with the reason. Frames rather than scored windows: a stream is producing
  as soon as it decodes, and the first score follows within one window (7 frames) plus a batch wait.
"""
from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], tuple[bool, str]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    registry: CollectorRegistry
    readiness: ReadinessCheck


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send(200, b"ok\n")
        elif path == "/readyz":
            ready, reason = self.server.readiness()
            self._send(200 if ready else 503, (reason + "\n").encode())
        elif path == "/":
            self._send(200, b"vqa-monitor: /metrics /healthz /readyz\n")
        else:
            self._send(404, b"not found\n")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence per-request lines
        pass


class MetricsServer:
    """Serves the endpoints on a background thread. Raises OSError from the constructor on bind errors."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, readiness: ReadinessCheck) -> None:
        server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6}) if ":" in host else _Server
        self._server = server_class((host, port), _Handler)
        self._server.registry = registry
        self._server.readiness = readiness
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
