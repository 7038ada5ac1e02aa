"""The HTTP endpoint under hostile clients, against the real daemon: a flood of idle connections, a
slowloris drip, clients that reset mid-request. /metrics keeps answering, the streams keep their file
descriptors and keep scoring, and nothing but JSON log lines reaches stderr."""
from __future__ import annotations

import json
import resource
import socket
import struct
import time
from typing import Iterator

import pytest

from monitor.server import MAX_CONNECTIONS, REQUEST_TIMEOUT_S
from servers import DaemonProcess, wait_until

pytestmark = pytest.mark.slow
ATTACKER = "127.0.0.2"  # another loopback address: the scraper (127.0.0.1) is a different client
FLOOD = 1000
DAEMON_NOFILE = 256  # far below the flood: the cap on connections must keep the readers' fds free


def connect(port: int, source: str = ATTACKER) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@pytest.fixture
def scoring_daemon(daemon) -> Iterator[DaemonProcess]:
    d = daemon([{"name": "live", "url": "lavfi:testsrc2=size=320x240:rate=25"}])
    assert d.proc is not None
    resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE, (DAEMON_NOFILE, DAEMON_NOFILE))
    d.wait_value("vqa_windows_scored_total", lambda v: v >= 1, timeout=60, stream="live")
    yield d
    assert "Traceback" not in d.logs()
    non_json = [line for line in d.logs().splitlines() if line.strip() and not _is_json(line)]
    assert not non_json, non_json[:5]


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def test_flood_of_idle_connections_does_not_starve_metrics_or_streams(scoring_daemon: DaemonProcess) -> None:
    d = scoring_daemon
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLOOD + 100:
        pytest.skip(f"this test process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, FLOOD + 200)), hard))
    flood: list[socket.socket] = []
    try:
        for _ in range(FLOOD):
            sock = connect(d.port)
            sock.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # half a request, never finished
            flood.append(sock)
        scored = d.value("vqa_windows_scored_total", stream="live")
        for _ in range(5):
            started = time.monotonic()
            assert d.get("/metrics", timeout=5)[0] == 200
            assert time.monotonic() - started < 5
            time.sleep(0.5)
        d.wait_value("vqa_windows_scored_total", lambda v: v > scored, timeout=30, stream="live")
        refused = [e for e in d.events() if e.get("event") == "http_refused"]
        assert refused and refused[0]["max_connections"] == MAX_CONNECTIONS
    finally:
        for sock in flood:
            sock.close()
    assert "Too many open files" not in d.logs()
    assert d.value("vqa_stream_up", stream="live") == 1


def test_slowloris_drip_is_cut_off_within_the_request_timeout(scoring_daemon: DaemonProcess) -> None:
    sock = connect(scoring_daemon.port, source="127.0.0.1")
    started = time.monotonic()
    closed_after = None
    try:
        sock.send(b"GET /metrics HTTP/1.1\r\n")
        while time.monotonic() - started < REQUEST_TIMEOUT_S + 15:
            try:
                sock.send(b"X-a: b\r\n")
                sock.settimeout(1.0)
                if sock.recv(4096) == b"":
                    closed_after = time.monotonic() - started
                    break
            except socket.timeout:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
    finally:
        sock.close()
    assert closed_after is not None and closed_after < REQUEST_TIMEOUT_S + 5


def test_clients_that_reset_or_vanish_leave_no_traceback(scoring_daemon: DaemonProcess) -> None:
    d = scoring_daemon
    for i in range(200):
        sock = connect(d.port, source="127.0.0.1")
        if i % 3 == 0:
            sock.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # then reset before reading the answer
        elif i % 3 == 1:
            sock.send(b"\x16\x03\x01\x02\x00" + bytes(range(256)) * 4)  # a TLS hello / binary junk
        else:
            sock.send(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n")  # an over-long request line
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    wait_until(lambda: d.get("/healthz")[0] == 200, 10, what="healthz after the resets")
    assert d.get("/metrics")[0] == 200
