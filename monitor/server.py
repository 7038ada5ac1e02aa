"""The HTTP endpoint on ``metrics.listen``: ``/metrics``, ``/healthz``, ``/readyz``, and the status page
(:mod:`monitor.web.app`: ``/``, ``/streams/...``, ``/api/...``, ``/snapshots/...``) when it is on.

* ``/metrics``: Prometheus text format of the daemon's own registry.
* ``/healthz``: 200 ``ok`` while the process serves requests (liveness).
* ``/readyz``: 200 ``ready`` once the engine is loaded and at least one stream is up (delivering
  frames); otherwise 503 with the reason. Frames rather than scored windows: a stream is producing
  as soon as it decodes, and the first score follows within one window (7 frames) plus a batch wait.

The endpoint may face a network (``0.0.0.0`` for a remote Prometheus), so it is bounded: at most
:data:`MAX_CONNECTIONS` open connections (:data:`MAX_CONNECTIONS_PER_CLIENT` per client address, so one
misbehaving host cannot lock out the scraper), each request line and its headers must arrive within
:data:`REQUEST_TIMEOUT_S` in total (a slowloris client that drips bytes is cut off; an idle keep-alive
connection closes after the same time), and a response must be taken within :data:`WRITE_TIMEOUT_S`.
A connection over the cap is answered 503 and closed at once, without a thread. Client errors
(a reset, a timeout) are dropped silently and anything else is one log line: never a traceback on
stderr.
"""
from __future__ import annotations

import io
import logging
import socket
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from monitor.web.app import WebApp

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], tuple[bool, str]]

MAX_CONNECTIONS = 64
MAX_CONNECTIONS_PER_CLIENT = 16
REQUEST_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
REFUSED_LOG_INTERVAL_S = 60.0
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = MAX_CONNECTIONS
    registry: CollectorRegistry
    readiness: ReadinessCheck
    web: WebApp | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.Lock()
        self._open: Counter[str] = Counter()
        self.refused = 0
        self._refused_logged_at = float("-inf")
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        client = str(client_address[0])
        with self._slots:
            busy = sum(self._open.values()) >= MAX_CONNECTIONS or self._open[client] >= MAX_CONNECTIONS_PER_CLIENT
            if not busy:
                self._open[client] += 1
        if busy:
            self._refuse(request, client)
            return
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self._release(client)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(str(client_address[0]))

    def _release(self, client: str) -> None:
        with self._slots:
            self._open[client] -= 1
            if self._open[client] <= 0:
                del self._open[client]

    def _refuse(self, request: Any, client: str) -> None:
        try:
            request.setblocking(False)
            request.send(_BUSY)
        except OSError:
            pass
        self.shutdown_request(request)
        self.refused += 1
        now = time.monotonic()
        if now - self._refused_logged_at >= REFUSED_LOG_INTERVAL_S:
            self._refused_logged_at = now
            log.warning("HTTP connection refused: too many open connections", extra={
                "event": "http_refused", "client": client, "refused_total": self.refused,
                "max_connections": MAX_CONNECTIONS, "max_per_client": MAX_CONNECTIONS_PER_CLIENT})

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Instead of socketserver's traceback on stderr: nothing for a client's own failure, else one line."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        log.warning("HTTP request failed", extra={"event": "http_error", "client": str(client_address[0]),
                                                  "error": f"{type(exc).__name__}: {exc}"})


class _DeadlineReader(io.RawIOBase):
    """The connection's socket as a raw stream whose reads all share one deadline (a total, not per read)."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.deadline = time.monotonic() + REQUEST_TIMEOUT_S

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request not complete within the request timeout")
        self.connection.settimeout(remaining)
        return self.connection.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = time.monotonic() + REQUEST_TIMEOUT_S  # idle time before it counts too
        super().handle_one_request()

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send(200, b"ok\n")
        elif path == "/readyz":
            ready, reason = self.server.readiness()
            self._send(200 if ready else 503, (reason + "\n").encode())
        elif self.server.web is not None and (response := self.server.web.handle(self.path, self.headers.get("Authorization"))):
            self._send(response.status, response.body, response.content_type, response.headers)
        elif path == "/":
            self._send(200, b"vqa-monitor: /metrics /healthz /readyz\n")
        else:
            self._send(404, b"not found\n")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.connection.settimeout(WRITE_TIMEOUT_S)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence per-request lines
        pass  # also BaseHTTPRequestHandler's error lines (bad request, timeout): a client's problem

    def send_response(self, code: int, message: str | None = None) -> None:
        if self.request_version == "HTTP/0.9":  # never an HTTP/0.9 answer (a body without a status line)
            self.request_version = "HTTP/1.0"
            self.close_connection = True
        super().send_response(code, message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.connection.settimeout(WRITE_TIMEOUT_S)
        super().send_error(code, message, explain)


class MetricsServer:
    """Serves the endpoints on a background thread. Raises OSError from the constructor on bind errors."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, readiness: ReadinessCheck,
                 web: WebApp | None = None) -> None:
        server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6}) if ":" in host else _Server
        self._server = server_class((host, port), _Handler)
        self._server.registry = registry
        self._server.readiness = readiness
        self._server.web = web
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
