"""Outages: a server killed, hung (SIGSTOP) and restarted; a second stream keeps being scored throughout."""
from __future__ import annotations

import time

import pytest

from servers import DaemonProcess, wait_until

pytestmark = pytest.mark.slow
OUTAGE_TIMEOUT = 20.0


def scored(d: DaemonProcess, stream: str) -> float:
    return d.value("vqa_windows_scored_total", stream=stream) or 0.0


def assert_keeps_scoring(d: DaemonProcess, stream: str, before: float, timeout: float = 10.0) -> float:
    return d.wait_value("vqa_windows_scored_total", lambda v: v >= before + 3, timeout=timeout, stream=stream)


def test_rtsp_kill_hang_restart(rtsp_server, daemon, test_clip) -> None:
    server = rtsp_server(pattern="ball")
    d = daemon([{"name": "cam", "url": server.url}, {"name": "healthy", "url": str(test_clip)}])
    d.wait_value("vqa_windows_scored_total", lambda v: v >= 2, timeout=40, stream="cam")
    d.wait_value("vqa_windows_scored_total", lambda v: v >= 2, timeout=20, stream="healthy")

    # 1. killed: the stream ends silently -> down, reconnect attempts counted, the other stream goes on
    healthy = scored(d, "healthy")
    server.kill()
    d.wait_value("vqa_stream_up", lambda v: v == 0, timeout=OUTAGE_TIMEOUT, stream="cam")
    d.wait_value("vqa_stream_reconnects_total", lambda v: v >= 1, timeout=OUTAGE_TIMEOUT, stream="cam")
    assert_keeps_scoring(d, "healthy", healthy)

    # 2. restarted on the same port: back up, scored again
    server.start()
    d.wait_value("vqa_stream_up", lambda v: v == 1, timeout=OUTAGE_TIMEOUT, stream="cam")
    cam = scored(d, "cam")
    assert_keeps_scoring(d, "cam", cam, timeout=OUTAGE_TIMEOUT)

    # 3. hung (SIGSTOP): the read timeout turns it into an outage; the other stream is not stalled
    reconnects = d.value("vqa_stream_reconnects_total", stream="cam")
    healthy = scored(d, "healthy")
    server.pause()
    hung_at = time.monotonic()
    d.wait_value("vqa_stream_up", lambda v: v == 0, timeout=OUTAGE_TIMEOUT, stream="cam")
    detected_s = time.monotonic() - hung_at
    assert_keeps_scoring(d, "healthy", healthy)
    d.wait_value("vqa_stream_reconnects_total", lambda v: v > reconnects, timeout=OUTAGE_TIMEOUT, stream="cam")
    assert detected_s < 2 + 5  # read_timeout_s is 2 in the test config

    # 4. resumed: reconnects and is scored again
    server.resume()
    d.wait_value("vqa_stream_up", lambda v: v == 1, timeout=OUTAGE_TIMEOUT, stream="cam")
    cam = scored(d, "cam")
    assert_keeps_scoring(d, "cam", cam, timeout=OUTAGE_TIMEOUT)
    assert d.value("vqa_stream_up", stream="healthy") == 1

    # 5. SIGTERM while a reader is blocked inside FFmpeg on a hung server: still stops within 5 s
    server.pause()
    time.sleep(0.5)
    assert d.terminate() < 5.0
    server.resume()


def test_hls_producer_restart(hls_server, daemon, test_clip) -> None:
    server = hls_server()
    d = daemon([{"name": "hls", "url": server.url}, {"name": "healthy", "url": str(test_clip)}])
    d.wait_value("vqa_windows_scored_total", lambda v: v >= 2, timeout=40, stream="hls")
    healthy = scored(d, "healthy")
    # Kill the producer and wipe its files: a reconnect cannot be faked by stale segments.
    server.kill_producer(wipe=True)
    d.wait_value("vqa_stream_up", lambda v: v == 0, timeout=30, stream="hls")
    d.wait_value("vqa_stream_reconnects_total", lambda v: v >= 1, timeout=OUTAGE_TIMEOUT, stream="hls")
    assert_keeps_scoring(d, "healthy", healthy)
    server.start_producer()
    d.wait_value("vqa_stream_up", lambda v: v == 1, timeout=30, stream="hls")
    before = scored(d, "hls")
    assert_keeps_scoring(d, "hls", before, timeout=30)
    assert wait_until(lambda: server.segments(), 5)
