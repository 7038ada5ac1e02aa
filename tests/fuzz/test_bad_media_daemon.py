"""The real daemon plays the whole bad-media corpus (tests/badmedia.py), each file looped as its own stream,
beside a healthy stream: the healthy one keeps being scored, files without a frame back off as outages,
damaged or odd files keep playing, and no traceback reaches the log."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from badmedia import CORPUS, build_corpus
from servers import wait_until

pytestmark = pytest.mark.slow
PLAY_S = 25.0
# Files without a single decodable video frame: each pass is an outage with backoff.
NO_FRAMES = {"zero_length.ts", "tiny_1000_bytes.ts", "audio_only.ts", "garbage.mp4", "truncated.mp4"}
# Damaged or unusual but playable: they stay up (damage is skipped, not a restart from the top).
PLAYABLE = {"truncated.ts", "bitflip_1pct.ts", "odd_size_17x11.mkv", "tiny_2x2.mkv", "ten_bit.mkv",
            "three_frames.mp4", "resolution_change.ts", "pixel_format_change.ts", "bitflip_mjpeg.avi"}


def stream_name(file_name: str) -> str:
    return file_name.replace(".", "-").replace("_", "-").lower()


def test_daemon_survives_the_bad_media_corpus(daemon, tmp_path: Path) -> None:
    corpus = build_corpus(tmp_path / "corpus")
    streams = [{"name": "healthy", "url": "lavfi:testsrc2=size=320x240:rate=25"}]
    streams += [{"name": stream_name(name), "url": str(path)} for name, path in corpus.items()]
    d = daemon(streams, defaults={"open_timeout_s": 3, "read_timeout_s": 2, "reconnect_min_s": 0.3,
                                  "reconnect_max_s": 2})
    d.wait_value("vqa_windows_scored_total", lambda v: v >= 1, timeout=60, stream="healthy")
    started = time.monotonic()
    scored = d.value("vqa_windows_scored_total", stream="healthy")
    while time.monotonic() - started < PLAY_S:
        time.sleep(5)
        now = d.value("vqa_windows_scored_total", stream="healthy")
        assert now > scored, "the healthy stream stopped being scored"
        scored = now
    scrape = d.scrape()
    events = d.events()
    assert set(NO_FRAMES | PLAYABLE) <= set(CORPUS)

    for name in NO_FRAMES:
        stream = stream_name(name)
        downs = [e for e in events if e.get("event") == "stream_down" and e.get("stream") == stream]
        reconnects = scrape.get("vqa_stream_reconnects_total", stream=stream)
        assert len(downs) >= 2 and reconnects is not None and reconnects >= 1, (name, downs[-1:], reconnects)
        # backoff 0.3 s doubling to 2 s: at most ~20 attempts in PLAY_S (an instant restart loop made thousands)
        assert reconnects <= 40, (name, reconnects)
        assert scrape.get("vqa_stream_up", stream=stream) == 0

    for name in PLAYABLE:
        stream = stream_name(name)
        downs = [e for e in events if e.get("event") == "stream_down" and e.get("stream") == stream]
        assert not downs, (name, downs[:2])
        assert scrape.get("vqa_frames_decoded_total", stream=stream) >= 7, name
    # a file shorter than one window is still scored: its windows run on across the loop
    wait_until(lambda: (d.value("vqa_windows_scored_total", stream=stream_name("three_frames.mp4")) or 0) >= 1,
               20, what="the 3-frame file scored")
    assert scrape.get("vqa_decode_errors_total", stream=stream_name("bitflip_1pct.ts")) >= 1

    assert d.value("vqa_stream_up", stream="healthy") == 1
    assert d.terminate(timeout=10) < 5.0 and d.proc is not None and d.proc.returncode == 0
    assert "Traceback" not in d.logs()
