"""monitor.hls without ffmpeg: config, variant expansion, playlist health over polls, fetching from a real
http.server on 127.0.0.1 (Basic auth, errors, timeouts, size cap), the HLS series, ladder watchers."""
from __future__ import annotations

import functools
import http.server
import logging
import socket
import threading
import time
from pathlib import Path

import m3u8
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitor import hls
from monitor.config import ConfigError, parse_config
from monitor.hls import (HlsConfig, Ladders, PlaylistError, PlaylistTracker, PlaylistWatcher, fetch_playlist,
                         rendition_label, select_variants, variants_of, watches_playlist)
from monitor.metrics import Metrics

MASTER = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-STREAM-INF:BANDWIDTH=3300000,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"
hd/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=880000,RESOLUTION=640x360
sd/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=880000,RESOLUTION=640x360
https://cdn.example/other/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3300000,RESOLUTION=1280x720,AUDIO="aud2"
hd/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS="mp4a.40.2"
audio/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=64000,RESOLUTION=64x64
file:///etc/passwd
"""


def media(first: int, count: int = 3, target: int = 2, endlist: bool = False, discontinuity_at: set[int] = frozenset(),
          discontinuity_sequence: int | None = None) -> m3u8.M3U8:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    if discontinuity_sequence is not None:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    for n in range(first, first + count):
        if n in discontinuity_at:
            lines.append("#EXT-X-DISCONTINUITY")
        lines += [f"#EXTINF:{target}.0,", f"seg_{n:05d}.ts"]
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return m3u8.loads("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------------
def test_hls_section_defaults_overrides_and_errors() -> None:
    config = parse_config("""
hls: {stale_target_durations: 4, master_reload_s: 5}
streams:
  - {name: tv, url: "http://u:p@127.0.0.1:1/master.m3u8", hls: {variants: all, max_variants: 2}}
  - {name: cam, url: "rtsp://127.0.0.1/x"}
  - {name: pick, url: "https://cdn.example/live/master", hls: {variants: [1280x720@3000k], watch: true}}
""")
    tv, cam, pick = config.streams
    assert tv.hls.variants == "all" and tv.hls.max_variants == 2 and tv.hls.stale_target_durations == 4
    assert cam.hls == HlsConfig(stale_target_durations=4, master_reload_s=5)
    assert [watches_playlist(s) for s in config.streams] == [True, False, True]
    assert pick.hls.ladder and not cam.hls.ladder

    cases = {
        'streams: [{name: a, url: "rtsp://h/x", hls: {variants: all}}]': "needs an http(s):// master playlist URL",
        'streams: [{name: a, url: "http://h/x", hls: {variants: ["Bad One"]}}]': "'Bad One' is not a rendition",
        'streams: [{name: a, url: "http://h/x", hls: {variants: []}}]': "an empty list monitors nothing",
        'streams: [{name: a, url: "http://h/x", hls: {variants: [a@1k, a@1k]}}]': "a rendition is listed twice",
        'streams: [{name: a, url: "http://h/x", hls: {max_variants: 100}}]': "streams[0].hls.max_variants",
        "defaults: {hls: {watch: true}}\nstreams: []": "hls: is a top-level section",
        "hls: {stale_target_duration: 3}\nstreams: []": "hls.stale_target_duration: unknown key (did you mean 'stale_target_durations'?)",
    }
    for text, expected in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_config(text)
        assert expected in str(info.value), (text, str(info.value))


# ------------------------------------------------------------------------------------------------
# variants
# ------------------------------------------------------------------------------------------------
def test_variants_of_a_master_playlist() -> None:
    master = m3u8.loads(MASTER)
    variants = variants_of(master, "http://user:pw@origin.example:8080/live/tv/master.m3u8")
    # audio-only and non-HTTP URIs skipped; the second listing of hd/ (another audio group) is the same video; the two 640x360
    # variants at the same bandwidth get distinct renditions
    assert [(v.rendition, v.url) for v in variants] == [
        ("1280x720@3300k", "http://user:pw@origin.example:8080/live/tv/hd/index.m3u8"),
        ("640x360@880k", "http://user:pw@origin.example:8080/live/tv/sd/index.m3u8"),
        ("640x360@880k-2", "https://cdn.example/other/index.m3u8"),
    ]
    assert rendition_label(None, 128000) == "128k" and rendition_label((320, 180), None) == "320x180"

    chosen, notes = select_variants(variants, HlsConfig(variants="all", max_variants=2))
    assert [v.rendition for v in chosen] == ["1280x720@3300k", "640x360@880k"]
    assert notes == ["skipped beyond hls.max_variants=2: 640x360@880k-2"]
    chosen, notes = select_variants(variants, HlsConfig(variants=["640x360@880k", "1920x1080@6000k"]))
    assert [v.rendition for v in chosen] == ["640x360@880k"]
    assert "not in the master playlist: 1920x1080@6000k" in notes[0] and "1280x720@3300k" in notes[0]


def test_variant_streams_are_named_by_rendition_and_watched() -> None:
    config = parse_config('streams: [{name: tv, url: "http://127.0.0.1:1/m.m3u8", stride: 5, '
                          'hls: {variants: all}}]')
    ladder = config.streams[0]
    variant = hls.variant_config(ladder, variants_of(m3u8.loads(MASTER), ladder.url)[1])
    assert variant.name == "tv/640x360@880k" and variant.url == "http://127.0.0.1:1/sd/index.m3u8"
    assert variant.stride == 5 and not variant.hls.ladder and watches_playlist(variant)
    assert hls.split_name(variant.name) == ("tv", "640x360@880k") and hls.split_name("tv") is None


# ------------------------------------------------------------------------------------------------
# playlist health
# ------------------------------------------------------------------------------------------------
def test_tracker_stale_after_n_target_durations_and_fresh_again() -> None:
    tracker = PlaylistTracker(stale_target_durations=3)
    assert not tracker.update(media(10), now=0.0).stale
    assert not tracker.update(media(10), now=5.9).stale  # unchanged for 5.9 s < 3 x 2 s
    state = tracker.update(media(10), now=6.1)
    assert state.stale and state.unchanged_s == pytest.approx(6.1) and state.target_duration_s == 2
    assert tracker.state(now=20.0).stale  # between or after failed polls it stays stale
    state = tracker.update(media(11), now=21.0)
    assert not state.stale and state.unchanged_s == 0
    assert tracker.poll_interval(None) == 1.0 and tracker.poll_interval(0.3) == 0.3


def test_tracker_growing_event_playlist_and_vod() -> None:
    tracker = PlaylistTracker(stale_target_durations=3)
    tracker.update(media(0, count=3), now=0.0)
    assert not tracker.update(media(0, count=4), now=10.0).stale  # EVENT: same media sequence, one more segment
    vod = PlaylistTracker(stale_target_durations=3)
    vod.update(media(0, endlist=True), now=0.0)
    assert not vod.update(media(0, endlist=True), now=100.0).stale  # a finished playlist is never stale


def test_tracker_counts_discontinuities_once() -> None:
    tracker = PlaylistTracker(stale_target_durations=3)
    assert tracker.update(media(10, discontinuity_at={11}), now=0).new_discontinuities == 0  # before monitoring
    assert tracker.update(media(11, discontinuity_at={11}), now=1).new_discontinuities == 0  # the same tag again
    # 11's tag slid out as 14's appeared; without EXT-X-DISCONTINUITY-SEQUENCE the tag count stays the same,
    # the new segment's tag still counts
    assert tracker.update(media(12, discontinuity_at={14}), now=2).new_discontinuities == 1
    tracker = PlaylistTracker(stale_target_durations=3)
    tracker.update(media(10, discontinuity_sequence=0), now=0)
    assert tracker.update(media(11, discontinuity_at={13}, discontinuity_sequence=0), now=1).new_discontinuities == 1
    # two more happened and slid out between polls: the discontinuity sequence says so
    assert tracker.update(media(20, discontinuity_sequence=3), now=2).new_discontinuities == 2
    assert tracker.update(media(0, discontinuity_sequence=0), now=3).new_discontinuities == 1  # producer restart


# ------------------------------------------------------------------------------------------------
# fetching from a real http.server
# ------------------------------------------------------------------------------------------------
class _AuthHandler(http.server.SimpleHTTPRequestHandler):
    expected = "Basic dXNlcjpzM2NyM3QvWA=="  # user:s3cr3t/X

    def do_GET(self) -> None:  # noqa: N802
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="t"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        redirects = {"/to-ftp": "ftp://127.0.0.1/master.m3u8", "/to-master": "/live/master.m3u8"}
        if self.path in redirects:
            self.send_response(302)
            self.send_header("Location", redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web(tmp_path: Path):
    """A folder served on 127.0.0.1 with Basic auth user:s3cr3t/X; yields (folder, base URL with credentials)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_AuthHandler, directory=str(tmp_path)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://user:s3cr3t%2FX@127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_uses_url_credentials_and_reports_errors_without_them(web) -> None:
    folder, base = web
    (folder / "master.m3u8").write_text(MASTER)
    (folder / "junk.m3u8").write_text("<html>not a playlist</html>")
    (folder / "big.m3u8").write_bytes(b"#EXTM3U\n" + b"#" * (hls.MAX_PLAYLIST_BYTES + 10))
    playlist, resolve_base = fetch_playlist(f"{base}/master.m3u8", 3)
    assert playlist.is_variant and resolve_base == f"{base}/master.m3u8"
    assert variants_of(playlist, resolve_base)[0].url == f"{base}/hd/index.m3u8"
    problems = {
        "/missing.m3u8": "HTTP 404",
        "/junk.m3u8": "not an HLS playlist",
        "/big.m3u8": f"larger than {hls.MAX_PLAYLIST_BYTES} bytes",
    }
    for path, expected in problems.items():
        with pytest.raises(PlaylistError, match=expected) as info:
            fetch_playlist(base + path, 3)
        assert "s3cr3t" not in str(info.value)
    (folder / "live").mkdir()
    (folder / "live" / "master.m3u8").write_text(MASTER)
    playlist, resolve_base = fetch_playlist(f"{base}/to-master", 3)  # same server: relative URIs keep the credentials
    assert variants_of(playlist, resolve_base)[0].url == f"{base}/live/hd/index.m3u8"
    with pytest.raises(PlaylistError, match="redirect to a non-HTTP URL refused"):
        fetch_playlist(f"{base}/to-ftp", 3)
    with pytest.raises(PlaylistError, match="HTTP 401"):
        fetch_playlist(base.replace("s3cr3t%2FX", "wrong") + "/master.m3u8", 3)
    with pytest.raises(PlaylistError, match="ConnectionRefused|Errno") as info:
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()
        fetch_playlist(f"http://user:s3cr3t@127.0.0.1:{port}/x.m3u8", 3)
    assert "s3cr3t" not in str(info.value)


def test_fetch_of_a_server_that_never_answers_ends_at_the_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection (kernel backlog), never answers
    try:
        started = time.monotonic()
        with pytest.raises(PlaylistError, match="timed out|Timeout"):
            fetch_playlist(f"http://127.0.0.1:{listener.getsockname()[1]}/x.m3u8", 0.5)
        assert time.monotonic() - started < 5
    finally:
        listener.close()


# ------------------------------------------------------------------------------------------------
# series and watchers
# ------------------------------------------------------------------------------------------------
def exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_hls_series_exist_only_for_watched_streams() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.stream("cam", hls=False)
    handle = metrics.stream("tv/640x360@880k", hls=True)
    handle.hls_rendition_info.set({("tv", "640x360@880k"): 1.0})
    text = exposition(metrics)
    assert 'vqa_hls_playlist_fetch_errors_total{stream="tv/640x360@880k"} 0.0' in text
    assert 'vqa_hls_rendition_info{ladder="tv",rendition="640x360@880k",stream="tv/640x360@880k"} 1.0' in text
    assert 'vqa_hls_playlist_stale{' not in text  # absent until the playlist was read
    assert 'stream="cam"' in text and not any('stream="cam"' in line for line in text.splitlines() if "hls" in line)
    metrics.stream("tv/640x360@880k", hls=False)  # its URL changed to a non-HLS one on reload
    assert "vqa_hls_playlist_fetch_errors_total{" not in exposition(metrics)
    metrics.stream("cam", hls=True)
    assert 'vqa_hls_discontinuities_total{stream="cam"} 0.0' in exposition(metrics)


def _watcher(url: str, **hls_options) -> tuple[PlaylistWatcher, Metrics]:
    config = parse_config(f'streams: [{{name: tv, url: "{url}"}}]\nhls: {hls_options!r}'.replace("'", '"')).streams[0]
    metrics = Metrics(CollectorRegistry())
    return PlaylistWatcher(config, metrics.stream("tv", hls=True)), metrics


def test_watcher_follows_master_counts_errors_and_goes_stale(web, caplog) -> None:
    folder, base = web
    (folder / "master.m3u8").write_text(MASTER)
    (folder / "hd").mkdir()
    (folder / "hd" / "index.m3u8").write_text(media(5, target=1).dumps())
    watcher, metrics = _watcher(f"{base}/master.m3u8", stale_target_durations=2, fetch_timeout_s=2)
    caplog.set_level(logging.INFO, logger="monitor.hls")
    assert not watcher.poll_once(now=0.0).stale
    assert watcher.media_url == f"{base}/hd/index.m3u8"  # the variant FFmpeg reads: the first
    assert not watcher.poll_once(now=1.5).stale
    assert watcher.poll_once(now=2.5).stale  # unchanged > 2 x 1 s
    assert 'vqa_hls_playlist_stale{stream="tv"} 1.0' in exposition(metrics)
    (folder / "hd" / "index.m3u8").unlink()
    assert watcher.poll_once(now=3.0).stale  # a failed poll keeps judging by time
    watcher.poll_once(now=3.5)
    assert 'vqa_hls_playlist_fetch_errors_total{stream="tv"} 2.0' in exposition(metrics)
    (folder / "hd" / "index.m3u8").write_text(media(6, target=1, discontinuity_at={8}).dumps())
    state = watcher.poll_once(now=4.0)
    assert not state.stale and 'vqa_hls_playlist_stale{stream="tv"} 0.0' in exposition(metrics)
    events = [r.event for r in caplog.records]
    assert events == ["playlist_stale", "playlist_fetch_failed", "playlist_fetch_recovered", "playlist_fresh"]
    # the records themselves carry no credential (the log formatters' redaction is only the last line of defence)
    assert not [v for r in caplog.records for v in vars(r).values() if "s3cr3t" in str(v)]
    assert [r.url for r in caplog.records if r.event == "playlist_fetch_failed"] == [
        base.replace("s3cr3t%2FX", "***") + "/master.m3u8"]


def test_ladder_watcher_follows_variants_appearing_and_disappearing(web) -> None:
    folder, base = web
    (folder / "master.m3u8").write_text(MASTER)
    config = parse_config(f'streams: [{{name: tv, url: "{base}/master.m3u8", '
                          'hls: {variants: all, master_reload_s: 0.5, max_variants: 2}}, '
                          '{name: cam, url: "rtsp://127.0.0.1/x"}]')
    metrics = Metrics(CollectorRegistry())
    changes = threading.Semaphore(0)
    ladders = Ladders(metrics, on_change=changes.release)
    try:
        ladders.sync(config.streams)
        assert [s.name for s in ladders.expand(config.streams)] == ["cam"]  # the master not read yet
        assert changes.acquire(timeout=10)
        assert [s.name for s in ladders.expand(config.streams)] == ["tv/1280x720@3300k", "tv/640x360@880k", "cam"]
        assert 'vqa_hls_ladder_variants{ladder="tv"} 2.0' in exposition(metrics)
        (folder / "master.m3u8").write_text(MASTER.replace("hd/index.m3u8", "fhd/index.m3u8")
                                            .replace("1280x720", "1920x1080"))
        assert changes.acquire(timeout=10)
        assert [s.name for s in ladders.expand(config.streams)][:2] == ["tv/1920x1080@3300k", "tv/640x360@880k"]
        (folder / "master.m3u8").unlink()  # unreachable: the ladder keeps its variants
        time.sleep(1.2)
        assert len(ladders.expand(config.streams)) == 3
        assert 'vqa_hls_master_fetch_errors_total{ladder="tv"} 0.0' not in exposition(metrics)
        ladders.sync(config.streams[1:])  # the ladder left the config: its watcher and series go
        assert ladders.expand(config.streams[1:])[0].name == "cam" and "ladder=\"tv\"" not in exposition(metrics)
    finally:
        ladders.stop_all()


def test_hostile_master_playlists_are_errors_or_bounded(web) -> None:
    folder, base = web
    (folder / "bad.m3u8").write_text("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=axb\nv.m3u8\n")
    (folder / "nobw.m3u8").write_text("#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=10x10\nv.m3u8\n")
    for name in ("bad.m3u8", "nobw.m3u8"):
        with pytest.raises(PlaylistError, match="unparsable playlist"):
            fetch_playlist(f"{base}/{name}", 3)
    many = ["#EXTM3U"] + [f"#EXT-X-STREAM-INF:BANDWIDTH={1000 + n},RESOLUTION=99999999999999x{n}\nv{n}.m3u8"
                          for n in range(5000)]
    (folder / "many.m3u8").write_text("\n".join(many) + "\n")
    master, resolve_base = fetch_playlist(f"{base}/many.m3u8", 5)
    available = variants_of(master, resolve_base)
    assert len(available) == 5000 and all(len(v.rendition) <= 64 for v in available)
    chosen, notes = select_variants(available, HlsConfig(variants="all", max_variants=32))
    assert len(chosen) == 32 and len({v.rendition for v in chosen}) == 32
    assert notes[0].endswith("and 4958 more")  # a log line stays short
