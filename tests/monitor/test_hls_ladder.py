"""HLS ladders end to end: real ffmpeg hls producers, python's http.server on 127.0.0.1, the real daemon.

Every variant of a master playlist is scored as its own stream; one variant's encoder killed takes only
that rendition down; variants leaving or joining the master playlist stop or start while running; a
stalled playlist (producer stopped, files kept) is flagged stale within its bound; credentials in the
master URL (and so in every variant URL derived from it) never reach a label, a log line or /readyz.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from hls_server import HlsLadder, VariantSpec
from servers import DaemonProcess, daemon_config, free_port, make_clip, wait_until

pytestmark = pytest.mark.slow
STALE_AFTER = 3  # hls.stale_target_durations in these tests
POLL_S = 0.5  # hls.poll_interval_s: the default for a 1 s target duration


@pytest.fixture(scope="session")
def small_clip(clip_dir: Path) -> Path:
    return make_clip(clip_dir / "testsrc2_180p.ts", seconds=4, size="320x180", fps=25)


@pytest.fixture
def hls_ladder(factory):
    """``hls_ladder(variants, mode=..., auth=...)`` -> a started :class:`HlsLadder`, closed after the test."""
    return factory(lambda workdir, variants, **kwargs: HlsLadder(workdir, variants, **kwargs), "ladder")


def scored(d: DaemonProcess, stream: str) -> float:
    return d.value("vqa_windows_scored_total", stream=stream) or 0.0


def series_of(d: DaemonProcess, stream: str) -> list[str]:
    return sorted({name for (name, labels) in d.scrape().samples if ("stream", stream) in labels})


def test_every_variant_scored_and_credentials_never_leak(hls_ladder, daemon, test_clip, small_clip) -> None:
    ladder = hls_ladder([VariantSpec(test_clip, 800_000, "640x360"), VariantSpec(small_clip, 300_000, "320x180")],
                        mode="var_stream_map", auth=("viewer", "SEKRITPW"))
    d = daemon([{"name": "tv", "url": ladder.master_url, "hls": {"variants": "all", "master_reload_s": 1}}])
    renditions = {"tv/640x360@880k": "640x360@880k", "tv/320x180@330k": "320x180@330k"}  # ffmpeg adds 10 %
    wait_until(lambda: d.scrape().streams() == set(renditions), 40, what="one stream per variant")
    for stream in renditions:
        d.wait_value("vqa_windows_scored_total", lambda v: v >= 2, timeout=60, stream=stream)
    scrape = d.scrape()
    for stream, rendition in renditions.items():
        assert scrape.get("vqa_hls_rendition_info", stream=stream, ladder="tv", rendition=rendition) == 1
        assert scrape.get("vqa_stream_up", stream=stream) == 1
    assert scrape.get("vqa_hls_ladder_variants", ladder="tv") == 2
    d.wait_value("vqa_hls_playlist_stale", lambda v: v == 0, timeout=10, stream="tv/640x360@880k")
    # the credentials were used (by urllib and by FFmpeg); how many requests that takes depends on the machine's speed
    wait_until(lambda: ladder.counts.get("authorized", 0) > 10, 20, what="more than 10 authorized requests")

    # everything gone (producer and files): the master, playlist and segment URLs all show up in errors
    ladder.kill_all(wipe=True)
    wanted = {"master_fetch_failed", "playlist_fetch_failed", "stream_down"}
    wait_until(lambda: wanted <= {e.get("event") for e in d.events()}, 40, what=f"events {wanted}")
    text = d.logs() + d.get("/metrics")[1] + d.get("/readyz")[1]
    assert "SEKRITPW" not in text
    urls = [e["url"] for e in d.events() if "url" in e]
    assert urls and all("viewer:***@127.0.0.1" in url for url in urls), urls


def test_one_rendition_down_variants_leave_and_join_and_a_stalled_playlist_is_stale(
        hls_ladder, daemon, test_clip, small_clip) -> None:
    ladder = hls_ladder([VariantSpec(test_clip, 800_000, "640x360"), VariantSpec(small_clip, 300_000, "320x180")])
    port = free_port()
    tv = {"name": "tv", "url": ladder.master_url,
          "hls": {"variants": "all", "master_reload_s": 1, "stale_target_durations": STALE_AFTER}}
    d = daemon(daemon_config([tv], port))
    hd, sd = "tv/640x360@800k", "tv/320x180@300k"
    for stream in (hd, sd):
        d.wait_value("vqa_windows_scored_total", lambda v: v >= 2, timeout=60, stream=stream)

    # 1. one variant's encoder killed and its files gone: only that rendition goes down
    ladder.kill_variant(0, wipe=True)
    d.wait_value("vqa_stream_up", lambda v: v == 0, timeout=30, stream=hd)
    d.wait_value("vqa_hls_playlist_fetch_errors_total", lambda v: v >= 1, timeout=10, stream=hd)
    before = scored(d, sd)
    d.wait_value("vqa_windows_scored_total", lambda v: v >= before + 3, timeout=20, stream=sd)
    assert d.value("vqa_stream_up", stream=sd) == 1

    # 2. the master playlist stops listing it: its stream and every one of its series go
    ladder.write_master([1])
    wait_until(lambda: not series_of(d, hd), 20, what=f"series of {hd} removed")
    assert d.scrape().streams() == {sd} and d.value("vqa_hls_ladder_variants", ladder="tv") == 1
    assert any(e.get("event") == "ladder_update" and e.get("removed") == hd for e in d.events())

    # 3. and lists it again with its encoder back: it starts and is scored
    ladder.start_variant(0)
    ladder.write_master([0, 1])
    d.wait_value("vqa_windows_scored_total", lambda v: v >= 1, timeout=60, stream=hd)

    # 4. a SIGHUP that changes the ladder's options restarts its variants and keeps their series
    sd_scored = scored(d, sd)
    d.reload(daemon_config([{**tv, "stride": 5}], port))
    wait_until(lambda: any(e.get("event") == "reloaded" and set(e.get("restarted", "").split(",")) == {hd, sd}
                           for e in d.events()), 20, what="variants restarted by the reload")
    assert d.scrape().streams() == {hd, sd} and scored(d, sd) >= sd_scored

    # 5. a stalled playlist (producer stopped, files kept): stale within N target durations and a poll
    d.wait_value("vqa_hls_playlist_stale", lambda v: v == 0, timeout=10, stream=sd)
    target = d.value("vqa_hls_target_duration_seconds", stream=sd)
    ladder.kill_variant(1, wipe=False)
    stalled_at = time.monotonic()
    d.wait_value("vqa_hls_playlist_stale", lambda v: v == 1, timeout=30, stream=sd)
    detected_s = time.monotonic() - stalled_at
    print(f"\n[hls] stale detected {detected_s:.1f} s after the producer stopped (target {target:g} s, "
          f"N={STALE_AFTER})")
    # the last advance seen is at most one poll old; + a poll to notice, a scrape, a loaded machine
    assert detected_s < STALE_AFTER * target + 2 * POLL_S + 3.0
    assert d.value("vqa_hls_playlist_stale", stream=hd) == 0
