"""The reader's pure helpers, without a stream: reconnect backoff and the FFmpeg options it opens with.
(Readers against real servers: test_outages.py and test_daemon_e2e.py.)"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from monitor.config import StreamConfig
from monitor.ingest import backoff_delay, open_options

JITTER = 0.2  # up to 20 % on top of the delay


def test_backoff_doubles_per_failure_up_to_the_cap():
    rng = random.Random(0)
    for failures in range(12):
        base = min(10.0, 0.5 * 2.0 ** failures)  # 0.5, 1, 2, 4, 8, then 10 from the 5th failure on
        assert base <= backoff_delay(failures, 0.5, 10.0, rng) <= base * (1 + JITTER)


def test_backoff_survives_any_number_of_failures():
    assert 10.0 <= backoff_delay(10**9, 0.5, 10.0, random.Random(0)) <= 10.0 * (1 + JITTER)


def test_backoff_jitter_spreads_the_delays_and_follows_the_rng():
    delays = [backoff_delay(20, 0.5, 10.0, random.Random(seed)) for seed in range(200)]
    assert min(delays) >= 10.0 and max(delays) <= 10.0 * (1 + JITTER)
    assert max(delays) - min(delays) > 10.0 * JITTER * 0.8  # spread over (nearly) the whole jitter range
    assert backoff_delay(3, 0.5, 10.0, random.Random(7)) == backoff_delay(3, 0.5, 10.0, random.Random(7))


def _options(url: str, **options) -> dict[str, str]:
    config = StreamConfig(name="cam", url=url, **options)
    return open_options(config, config.source)


def test_rtsp_gets_tcp_and_the_read_timeout_in_microseconds():
    assert _options("rtsp://cam.example/live", read_timeout_s=2.5) == {"rtsp_transport": "tcp", "timeout": "2500000"}


@pytest.mark.parametrize("url", ["http://cdn.example/live.m3u8", "rtmp://ingest.example/app/key",
                                 "udp://239.0.0.1:1234", "tcp://10.0.0.5:9000"])
def test_other_network_sources_get_rw_timeout(url):
    assert _options(url, read_timeout_s=5.0) == {"rw_timeout": "5000000"}


def test_files_and_lavfi_get_no_ffmpeg_timeout(tmp_path: Path):
    clip = tmp_path / "clip.ts"
    clip.write_bytes(b"")
    assert _options(str(clip)) == {}
    assert _options("lavfi:testsrc2=size=320x240:rate=10") == {}


def test_user_options_come_on_top_of_the_built_in_ones():
    options = _options("rtsp://cam.example/live", read_timeout_s=3.0,
                       ffmpeg_options={"rtsp_transport": "udp", "buffer_size": "1024000"})
    assert options == {"rtsp_transport": "udp", "timeout": "3000000", "buffer_size": "1024000"}
