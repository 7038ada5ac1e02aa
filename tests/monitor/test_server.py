"""monitor.server: every route and method against a real server on 127.0.0.1, in-process."""
from __future__ import annotations

import http.client
import socket
from typing import Callable, Iterator

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from monitor.metrics import Metrics
from monitor.server import MAX_CONNECTIONS_PER_CLIENT, MetricsServer
from servers import Scrape

TIMEOUT_S = 5.0


class Readiness:
    """What the daemon's readiness check answers, set by the test."""

    def __init__(self) -> None:
        self.answer = (False, "not ready: engine loading")

    def __call__(self) -> tuple[bool, str]:
        return self.answer


@pytest.fixture
def serve() -> Iterator[Callable[..., MetricsServer]]:
    started: list[MetricsServer] = []

    def factory(host: str = "127.0.0.1", port: int = 0, readiness: Readiness | None = None) -> MetricsServer:
        registry = CollectorRegistry()
        Metrics(registry).stream("cam").frames.inc(3)
        server = MetricsServer(host, port, registry, readiness or Readiness())
        started.append(server)
        server.start()
        return server

    yield factory
    for server in started:
        server.stop()


def request(server: MetricsServer, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    host, port = server.address
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_metrics_serves_the_registry_in_prometheus_text_format(serve) -> None:
    status, headers, body = request(serve(), "GET", "/metrics")
    assert status == 200
    assert headers["content-type"] == CONTENT_TYPE_LATEST
    assert int(headers["content-length"]) == len(body)
    scrape = Scrape(body.decode())
    assert scrape.get("vqa_frames_decoded_total", stream="cam") == 3
    assert scrape.get("vqa_config_last_reload_successful") == 1


def test_healthz_answers_ok_whatever_the_readiness(serve) -> None:
    assert request(serve(), "GET", "/healthz")[::2] == (200, b"ok\n")


def test_readyz_follows_the_readiness_check_with_its_reason(serve) -> None:
    readiness = Readiness()
    server = serve(readiness=readiness)
    assert request(server, "GET", "/readyz")[::2] == (503, b"not ready: engine loading\n")
    readiness.answer = (True, "ready: 1 of 1 streams up")
    assert request(server, "GET", "/readyz")[::2] == (200, b"ready: 1 of 1 streams up\n")


def test_root_lists_the_endpoints(serve) -> None:
    assert request(serve(), "GET", "/")[::2] == (200, b"vqa-monitor: /metrics /healthz /readyz\n")


def test_a_query_string_does_not_change_the_route(serve) -> None:
    server = serve()
    assert request(server, "GET", "/healthz?verbose=1")[::2] == (200, b"ok\n")
    assert request(server, "GET", "/metrics?name[]=vqa_aqs")[0] == 200


@pytest.mark.parametrize("path", ["/nope", "/metrics/", "/healthz/x", "/metricsz", "/readyz.html"])
def test_unknown_paths_are_404(serve, path: str) -> None:
    status, headers, body = request(serve(), "GET", path)
    assert (status, body) == (404, b"not found\n")
    assert headers["content-type"] == "text/plain; charset=utf-8"


def test_head_sends_the_get_headers_without_a_body(serve) -> None:
    server = serve()
    _, get_headers, get_body = request(server, "GET", "/healthz")
    status, headers, body = request(server, "HEAD", "/healthz")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == get_headers["content-length"] == str(len(get_body))
    assert request(server, "HEAD", "/nope")[:3:2] == (404, b"")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_not_implemented(serve, method: str) -> None:
    assert request(serve(), method, "/metrics")[0] == 501


def test_one_connection_carries_several_requests(serve) -> None:
    host, port = serve().address
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    try:
        for path, status in [("/healthz", 200), ("/nope", 404), ("/metrics", 200), ("/readyz", 503)]:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            assert response.status == status, path
            assert not response.will_close
    finally:
        connection.close()


def test_an_http_0_9_request_gets_a_status_line(serve) -> None:
    with socket.create_connection(serve().address, timeout=TIMEOUT_S) as sock:
        sock.sendall(b"GET /healthz\r\n\r\n")  # no version: HTTP/0.9, answered without a status line by default
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b"\r\n\r\nok\n")


def test_a_client_over_its_connection_cap_is_refused_while_another_is_served(serve) -> None:
    server = serve()
    host, port = server.address
    idle = [socket.create_connection((host, port), timeout=TIMEOUT_S) for _ in range(MAX_CONNECTIONS_PER_CLIENT)]
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as over:
            assert _read_all(over).startswith(b"HTTP/1.1 503 ")
        with socket.create_connection((host, port), timeout=TIMEOUT_S, source_address=("127.0.0.2", 0)) as other:
            other.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            assert _read_all(other).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in idle:
            sock.close()


def test_address_is_the_bound_port_and_stop_closes_it(serve) -> None:
    server = serve()
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=TIMEOUT_S).close()


def test_a_port_in_use_raises_oserror_from_the_constructor(serve) -> None:
    _, port = serve().address
    with pytest.raises(OSError):
        MetricsServer("127.0.0.1", port, CollectorRegistry(), Readiness())


def test_an_ipv6_address_is_served(serve) -> None:
    try:
        server = serve(host="::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    assert server.address[0] == "::1"
    assert request(server, "GET", "/healthz")[::2] == (200, b"ok\n")


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (each recv bounded by the socket's timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
