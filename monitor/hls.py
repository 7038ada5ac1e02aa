"""HLS: playlist health for every HLS stream, and ladders (a master playlist's variants as streams).

**Playlist health.** Every HLS stream (an ``http(s)://`` URL whose path ends in ``.m3u8``, or
``hls: {watch: true}``) gets one :class:`PlaylistWatcher` thread that polls its media playlist (a
master playlist is followed to the variant FFmpeg reads: the first video variant) every half target
duration (RFC 8216 section 6.3.4) and publishes, through :class:`PlaylistHealth`:

* ``vqa_hls_playlist_stale`` 1 while a live playlist has not advanced (no new segment) for
  ``hls.stale_target_durations`` target durations. FFmpeg replays the segments a stalled playlist
  still lists after every reconnect, so a stalled producer looks like a flapping stream; this says why.
* ``vqa_hls_discontinuities_total`` (``EXT-X-DISCONTINUITY`` tags of new segments, and a media
  sequence that went backwards: the producer restarted) and ``vqa_hls_playlist_fetch_errors_total``.

**Ladders.** With ``hls: {variants: all}`` (or a list of renditions) a master playlist URL is monitored
as a ladder: each video variant becomes its own stream named ``NAME/RENDITION``, the rendition being
``WIDTHxHEIGHT@KBPSk`` from its ``RESOLUTION`` and ``BANDWIDTH`` (``tv/1280x720@3000k``). Every
per-stream metric, alert and dashboard then works per rendition with no new label on them; the
``rendition`` label lives on ``vqa_hls_rendition_info{stream, ladder, rendition}`` (value 1) for
grouping by ladder. At most ``hls.max_variants`` variants per ladder (bounded cardinality). One
:class:`LadderWatcher` thread per ladder re-reads the master playlist every ``hls.master_reload_s``;
variants that appear or disappear are started or stopped like a SIGHUP change (the daemon's
``on_change`` hook). The default ``variants: auto`` keeps the stream as one stream: the variant FFmpeg
picks (the first one listed), as before.

Fetching (:func:`fetch_playlist`) uses urllib with a timeout on every socket operation, an overall
deadline and a size cap; credentials in the URL become a Basic ``Authorization`` header (urllib does not
read them from the URL), never a log line: every URL logged goes through :func:`monitor.redact.redact_url`.
Parsing is the ``m3u8`` package's.
"""
from __future__ import annotations

import base64
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from pydantic import Field, field_validator

from monitor.redact import redact_text, redact_url
from monitor.strict import Strict
from monitor.worker import Worker

if TYPE_CHECKING:
    import m3u8

    from monitor.config import StreamConfig
    from monitor.metrics import Metrics, StreamMetrics

log = logging.getLogger(__name__)

MAX_PLAYLIST_BYTES = 4 * 1024 * 1024  # a live playlist is a few kB; a long VOD one a few MB
RENDITION_PATTERN = r"^[0-9a-z][0-9a-z@._-]{0,63}$"
_RENDITION_RE = re.compile(RENDITION_PATTERN)
LADDER_SEPARATOR = "/"
MIN_POLL_S, MAX_POLL_S = 0.5, 10.0
AUDIO_CODECS = ("mp4a", "ac-3", "ec-3", "opus", "flac", "alac", "mp3", "dtsc", "dtse", "ac-4")


class HlsConfig(Strict):
    """The ``hls:`` section: HLS playlist health and ladders. A stream's own ``hls:`` overrides it key by key."""

    variants: str | list[str] = Field("auto", description=(
        "what a master playlist URL monitors: `auto` = one stream, the variant FFmpeg picks (the first "
        "listed; the default, so that existing streams keep their name and cost); `all` = every video "
        "variant as its own stream `NAME/WIDTHxHEIGHT@KBPSk` (a ladder); a list of such renditions "
        "(e.g. `[1280x720@3000k, 640x360@800k]`) = those. Variants added to or removed from the master "
        "playlist are started or stopped while running. Only for `http(s)://` URLs (an error on others: set it "
        "on the HLS streams themselves when the top-level section applies to other streams too)"))
    max_variants: int = Field(8, ge=1, le=32, strict=True, description=(
        "most variants of one ladder monitored (the first ones listed in the master playlist); the rest "
        "are logged and skipped. Bounds the streams, and so the series, one ladder can create"))
    watch: bool | None = Field(None, description=(
        "poll the media playlist for playlist health (`vqa_hls_playlist_stale`, discontinuities, fetch "
        "errors); null = yes for `http(s)://` URLs whose path ends in `.m3u8` or `.m3u` and for ladder variants. "
        "Never for other URL schemes"))
    stale_target_durations: float = Field(3.0, ge=1, le=100, strict=True, description=(
        "a live media playlist that gains no new segment for this many target durations is stale"))
    poll_interval_s: float | None = Field(None, ge=0.1, le=60, strict=True, description=(
        f"seconds between media playlist fetches; null = half the target duration (RFC 8216), "
        f"{MIN_POLL_S:g} to {MAX_POLL_S:g} s"))
    fetch_timeout_s: float = Field(5.0, ge=0.1, le=60, strict=True, description=(
        "seconds allowed for one playlist fetch (connect, each read, and the whole download)"))
    master_reload_s: float = Field(30.0, ge=0.5, le=3600, strict=True, description=(
        "seconds between fetches of a ladder's master playlist (to follow variants that appear or disappear)"))

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("auto", "all"):
            raise ValueError("expected auto, all or a list of renditions (e.g. [1280x720@3000k])")
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list monitors nothing; use `auto`, `all` or renditions")
            for item in value:
                if not _RENDITION_RE.match(item):
                    raise ValueError(f"{item!r} is not a rendition (expected WIDTHxHEIGHT@KBPSk, e.g. 1280x720@3000k)")
            if len(set(value)) != len(value):
                raise ValueError("a rendition is listed twice")
        return value

    @property
    def ladder(self) -> bool:
        return self.variants != "auto"


def is_http(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https")


def ladder_problem(url: str, hls: HlsConfig) -> str | None:
    """Why ``hls`` cannot apply to ``url`` (None if it can): a ladder needs an http(s) master playlist."""
    if hls.ladder and not is_http(url):
        return "hls.variants other than `auto` needs an http(s):// master playlist URL"
    return None


def watches_playlist(config: "StreamConfig") -> bool:
    """Whether stream ``config`` gets a playlist watcher."""
    if config.hls.watch is not None:
        return config.hls.watch and is_http(config.url)
    return is_http(config.url) and urlsplit(config.url).path.lower().endswith((".m3u8", ".m3u"))


def split_name(name: str) -> tuple[str, str] | None:
    """``"tv/1280x720@3000k"`` -> ``("tv", "1280x720@3000k")``; None for a stream that is no ladder variant."""
    ladder, sep, rendition = name.partition(LADDER_SEPARATOR)
    return (ladder, rendition) if sep else None


# ------------------------------------------------------------------------------------------------
# Fetching
# ------------------------------------------------------------------------------------------------
class PlaylistError(Exception):
    """A playlist could not be fetched or parsed; the message carries no credential."""


def _without_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without ``user:password@`` and the Basic ``Authorization`` header that carries them."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    host = parts.netloc.rpartition("@")[2]
    token = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    return (urlunsplit(parts._replace(netloc=host)),
            {"Authorization": "Basic " + base64.b64encode(token).decode("ascii")})


class _HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only (urllib would follow one to ftp:// too), and sends the
    credentials on only to the same server."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise urllib.error.HTTPError(req.full_url, code, "redirect to a non-HTTP URL refused", headers, fp)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        auth = req.unredirected_hdrs.get("Authorization")
        if new is not None and auth and urlsplit(new.full_url).netloc == urlsplit(req.full_url).netloc:
            new.add_unredirected_header("Authorization", auth)
        return new


_OPENER = urllib.request.build_opener(_HttpRedirectsOnly)


def fetch_text(url: str, timeout_s: float) -> tuple[str, str]:
    """GET ``url`` within ``timeout_s`` (each socket operation and the whole body); (text, final URL)."""
    clean, auth = _without_userinfo(url)
    request = urllib.request.Request(clean, headers={"User-Agent": "vqa-monitor"})
    for key, value in auth.items():
        request.add_unredirected_header(key, value)  # sent on to a redirect on the same server only
    deadline = time.monotonic() + timeout_s
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            chunks, size = [], 0
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_PLAYLIST_BYTES:
                    raise PlaylistError(f"larger than {MAX_PLAYLIST_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise PlaylistError(f"download took longer than {timeout_s:g} s")
                chunks.append(chunk)
            final = response.geturl()
    except PlaylistError:
        raise
    except urllib.error.HTTPError as exc:
        raise PlaylistError(f"HTTP {exc.code} {exc.reason}") from None
    except Exception as exc:  # noqa: BLE001 - URLError, timeouts, resets, http.client errors: all an error of this fetch
        reason = getattr(exc, "reason", None) or exc
        raise PlaylistError(redact_text(f"{type(exc).__name__}: {reason}", (url, clean))) from None
    return b"".join(chunks).decode("utf-8", errors="replace"), final


def fetch_playlist(url: str, timeout_s: float) -> tuple["m3u8.M3U8", str]:
    """The parsed playlist at ``url`` and the URL its relative URIs resolve against (credentials kept
    when the server did not redirect to another host)."""
    import m3u8

    text, final = fetch_text(url, timeout_s)
    if not text.lstrip("\ufeff \t\r\n").startswith("#EXTM3U"):
        raise PlaylistError("not an HLS playlist (no #EXTM3U header)")
    try:
        playlist = m3u8.loads(text)
    except Exception as exc:  # noqa: BLE001 - the parser raises ValueError, IndexError... on bad input
        raise PlaylistError(f"unparsable playlist: {type(exc).__name__}: {redact_text(str(exc)[:200])}") from None
    clean, _ = _without_userinfo(url)
    base = url if final == clean else _with_userinfo_of(url, final)
    return playlist, base


def _with_userinfo_of(original: str, final: str) -> str:
    """``final`` (where a redirect led) with the credentials of ``original`` when it is the same server."""
    try:
        a, b = urlsplit(original), urlsplit(final)
        same = a.hostname == b.hostname and a.port == b.port
    except ValueError:  # a port out of range
        return final
    if same and "@" in a.netloc:
        return urlunsplit(b._replace(netloc=a.netloc.rpartition("@")[0] + "@" + b.netloc))
    return final


# ------------------------------------------------------------------------------------------------
# Variants
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    rendition: str
    url: str  # absolute, with the master URL's credentials
    bandwidth: int | None
    resolution: tuple[int, int] | None


def _is_audio_only(codecs: str | None) -> bool:
    if not codecs:
        return False
    names = [c.strip().lower() for c in codecs.split(",") if c.strip()]
    return bool(names) and all(name.startswith(AUDIO_CODECS) for name in names)


def rendition_label(resolution: tuple[int, int] | None, bandwidth: int | None) -> str:
    """``(1280, 720), 3000000`` -> ``"1280x720@3000k"``; either part may be missing."""
    parts = []
    if resolution:
        parts.append(f"{resolution[0]}x{resolution[1]}")
    if bandwidth:
        parts.append(f"{round(bandwidth / 1000)}k")
    return "@".join(parts) or "variant"


def variants_of(master: "m3u8.M3U8", base_url: str) -> list[Variant]:
    """The video variants of a master playlist, in its order: one per URI, each with a unique rendition."""
    out: list[Variant] = []
    seen_urls: set[str] = set()
    taken: set[str] = set()
    for playlist in master.playlists:
        info = playlist.stream_info
        if _is_audio_only(getattr(info, "codecs", None)) or not playlist.uri:
            continue
        url = urljoin(base_url, playlist.uri.strip())
        if not is_http(url):
            continue  # a master playlist from the network must not make the daemon open file: or other URLs
        if url in seen_urls:
            continue  # the same video listed again (e.g. once per audio group)
        seen_urls.add(url)
        base = rendition_label(info.resolution, info.bandwidth)[:60]
        label, n = base, 1
        while label in taken:
            n += 1
            label = f"{base}-{n}"
        taken.add(label)
        out.append(Variant(label, url, info.bandwidth, info.resolution))
    return out


def select_variants(available: list[Variant], hls: HlsConfig) -> tuple[list[Variant], list[str]]:
    """The variants ``hls`` asks for, at most ``max_variants``; and what could not be had, in words."""
    notes = []
    if hls.variants == "all":
        chosen = available
    else:
        wanted = list(hls.variants)  # type: ignore[arg-type]
        by_name = {v.rendition: v for v in available}
        chosen = [by_name[name] for name in wanted if name in by_name]
        missing = [name for name in wanted if name not in by_name]
        if missing:
            notes.append(f"not in the master playlist: {_some(missing)} "
                         f"(it has: {_some(list(by_name)) or 'no video variant'})")
    if len(chosen) > hls.max_variants:
        notes.append(f"skipped beyond hls.max_variants={hls.max_variants}: "
                     + _some([v.rendition for v in chosen[hls.max_variants:]]))
        chosen = chosen[:hls.max_variants]
    return chosen, notes


def _some(names: list[str], most: int = 10) -> str:
    """At most ``most`` names for a log line, and how many more there are."""
    text = ", ".join(names[:most])
    return text + (f" and {len(names) - most} more" if len(names) > most else "")


def variant_config(ladder: "StreamConfig", variant: Variant) -> "StreamConfig":
    """The stream of one variant: the ladder's options, its own name and URL, its playlist watched."""
    return ladder.model_copy(update={
        "name": f"{ladder.name}{LADDER_SEPARATOR}{variant.rendition}",
        "url": variant.url,
        "hls": ladder.hls.model_copy(update={"variants": "auto", "watch": True}),
    })


# ------------------------------------------------------------------------------------------------
# Playlist health
# ------------------------------------------------------------------------------------------------
@dataclass
class PlaylistState:
    """What one poll concluded."""

    stale: bool
    unchanged_s: float
    target_duration_s: float | None
    new_discontinuities: int
    live: bool


class PlaylistTracker:
    """Staleness and discontinuities of one media playlist across polls (no I/O: fed parsed playlists)."""

    def __init__(self, stale_target_durations: float) -> None:
        self.stale_target_durations = stale_target_durations
        self.last_segment: int | None = None  # media sequence number of the newest segment seen
        self.advanced_at: float | None = None
        self.discontinuity_total: int | None = None
        self.target_duration: float | None = None
        self.live = True

    def update(self, playlist: "m3u8.M3U8", now: float) -> PlaylistState:
        first = int(playlist.media_sequence or 0)
        last = first + len(playlist.segments) - 1
        total = int(playlist.discontinuity_sequence or 0) + sum(1 for s in playlist.segments if s.discontinuity)
        new = 0
        if self.last_segment is None or last > self.last_segment:
            if self.last_segment is not None and self.discontinuity_total is not None:
                # Tags on the segments new since the last poll, or more if EXT-X-DISCONTINUITY-SEQUENCE says
                # tags slid out unseen between polls (a server without it under-counts; never double-counts).
                fresh = sum(1 for n, s in enumerate(playlist.segments, first) if n > self.last_segment and s.discontinuity)
                new = max(total - self.discontinuity_total, fresh)
            self.advanced_at = now
        elif last < self.last_segment:  # the sequence went back: the producer restarted
            new = 1
            self.advanced_at = now
        self.last_segment = last
        self.discontinuity_total = total
        if playlist.target_duration:
            self.target_duration = float(playlist.target_duration)
        self.live = not playlist.is_endlist
        state = self.state(now)
        state.new_discontinuities = new
        return state

    def state(self, now: float) -> PlaylistState:
        """The state at ``now`` from what the last successful poll saw (also between or after failed polls)."""
        unchanged = 0.0 if self.advanced_at is None else max(0.0, now - self.advanced_at)
        stale = (self.live and self.target_duration is not None and self.advanced_at is not None
                 and unchanged > self.stale_target_durations * self.target_duration)
        return PlaylistState(stale, unchanged, self.target_duration, 0, self.live)

    def poll_interval(self, configured: float | None) -> float:
        if configured is not None:
            return configured
        half = (self.target_duration or 2.0) / 2.0
        return min(MAX_POLL_S, max(MIN_POLL_S, half))


class PlaylistWatcher(Worker):
    """One HLS stream's playlist poller: a daemon thread, ``start()``, ``stop()``."""

    def __init__(self, config: "StreamConfig", handle: "StreamMetrics") -> None:
        super().__init__(f"playlist-{config.name}")
        self.config = config
        self.name = config.name
        self.handle = handle
        self.tracker = PlaylistTracker(config.hls.stale_target_durations)
        self.media_url: str | None = None  # the media playlist (after following a master playlist)
        self.failing = False
        self.stale = False

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once(time.monotonic())
            if self._stop.wait(self.tracker.poll_interval(self.config.hls.poll_interval_s)):
                break

    def poll_once(self, now: float) -> PlaylistState | None:
        timeout = self.config.hls.fetch_timeout_s
        try:
            playlist = self._media_playlist(timeout)
        except PlaylistError as exc:
            self.media_url = None  # follow the master playlist again next time
            self.handle.hls_fetch_errors.inc()
            if not self.failing and not self._stop.is_set():
                log.warning("playlist fetch failed", extra={"stream": self.name, "event": "playlist_fetch_failed",
                                                             "url": redact_url(self.config.url), "reason": str(exc)})
            self.failing = True
            state = self.tracker.state(now) if self.tracker.target_duration is not None else None
        else:
            if self.failing:
                log.info("playlist fetched again", extra={"stream": self.name, "event": "playlist_fetch_recovered"})
            self.failing = False
            state = self.tracker.update(playlist, now)
            if state.new_discontinuities:
                self.handle.hls_discontinuities.inc(state.new_discontinuities)
        if state is not None and not self._stop.is_set():
            self._publish(state)
        return state

    def _media_playlist(self, timeout: float) -> Any:
        if self.media_url is not None:
            return fetch_playlist(self.media_url, timeout)[0]
        playlist, base = fetch_playlist(self.config.url, timeout)
        if not playlist.is_variant:
            self.media_url = self.config.url
            return playlist
        variants = variants_of(playlist, base)
        if not variants:
            raise PlaylistError("the master playlist lists no video variant")
        self.media_url = variants[0].url  # the one FFmpeg reads
        return fetch_playlist(self.media_url, timeout)[0]

    def _publish(self, state: PlaylistState) -> None:
        if state.stale != self.stale:
            level = logging.WARNING if state.stale else logging.INFO
            log.log(level, "playlist stale" if state.stale else "playlist advancing again",
                    extra={"stream": self.name, "event": "playlist_stale" if state.stale else "playlist_fresh",
                           "unchanged_s": round(state.unchanged_s, 1)})
            self.stale = state.stale
        self.handle.hls_stale.set(1.0 if state.stale else 0.0)
        self.handle.hls_unchanged.set(state.unchanged_s)
        self.handle.hls_target_duration.set(state.target_duration_s)


class PlaylistHealth:
    """The playlist watchers of the running streams (the daemon calls ``add``/``drop`` with each stream)."""

    def __init__(self) -> None:
        self.watchers: dict[str, PlaylistWatcher] = {}

    def add(self, config: "StreamConfig", handle: "StreamMetrics") -> None:
        self.drop(config.name)
        split = split_name(config.name)
        handle.hls_rendition_info.set({split: 1.0} if split else None)
        if watches_playlist(config):
            watcher = self.watchers[config.name] = PlaylistWatcher(config, handle)
            watcher.start()

    def drop(self, name: str) -> None:
        watcher = self.watchers.pop(name, None)
        if watcher is not None:
            watcher.stop()

    def stop_all(self, timeout: float = 0.5) -> None:
        watchers = list(self.watchers.values())
        self.watchers.clear()
        for watcher in watchers:
            watcher.stop()
        deadline = time.monotonic() + timeout
        for watcher in watchers:
            watcher.join(max(0.0, deadline - time.monotonic()))


# ------------------------------------------------------------------------------------------------
# Ladders
# ------------------------------------------------------------------------------------------------
class LadderWatcher(Worker):
    """One ladder's master playlist poller: keeps its selected variants; ``on_change()`` when they change."""

    def __init__(self, config: "StreamConfig", metrics: "Metrics", on_change: Callable[[], None],
                 seed: list[Variant] | None = None) -> None:
        super().__init__(f"ladder-{config.name}")
        self.config = config
        self.name = config.name
        self.metrics = metrics
        self.on_change = on_change
        self.variants: list[Variant] = list(seed or [])
        self._notes: list[str] = []
        self.failing = False
        self._lock = threading.Lock()
        metrics.hls_ladder_variants.labels(self.name).set(len(self.variants))
        metrics.hls_master_fetch_errors.labels(self.name)

    def configs(self) -> list["StreamConfig"]:
        with self._lock:
            return [variant_config(self.config, v) for v in self.variants]

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.poll_once() and not self._stop.is_set():
                self.on_change()
            if self._stop.wait(self.config.hls.master_reload_s):
                break

    def poll_once(self) -> bool:
        """Fetch the master playlist; True when the selected variants changed."""
        try:
            master, base = fetch_playlist(self.config.url, self.config.hls.fetch_timeout_s)
            if not master.is_variant:
                raise PlaylistError("not a master playlist (it lists segments, no variants): "
                                    "use hls.variants: auto for a media playlist")
        except PlaylistError as exc:
            if self._stop.is_set():  # stopped meanwhile: its series may be gone already, never re-created
                return False
            self.metrics.hls_master_fetch_errors.labels(self.name).inc()
            if not self.failing:
                log.warning("master playlist fetch failed; the ladder keeps its variants",
                            extra={"stream": self.name, "event": "master_fetch_failed",
                                   "url": redact_url(self.config.url), "reason": str(exc)})
            self.failing = True
            return False
        if self._stop.is_set():
            return False
        self.failing = False
        chosen, notes = select_variants(variants_of(master, base), self.config.hls)
        if notes != self._notes:
            for note in notes:
                log.warning("ladder variants skipped", extra={"stream": self.name, "event": "ladder_variants_skipped",
                                                              "reason": note})
            self._notes = notes
        with self._lock:
            changed = chosen != self.variants
            self.variants = chosen
        if changed:
            self.metrics.hls_ladder_variants.labels(self.name).set(len(chosen))
            log.info("ladder variants", extra={"stream": self.name, "event": "ladder_variants",
                                               "renditions": ",".join(v.rendition for v in chosen) or "-"})
        return changed


class Ladders:
    """The ladders this instance runs: :meth:`sync` with the configured streams, :meth:`expand` them."""

    def __init__(self, metrics: "Metrics", on_change: Callable[[], None]) -> None:
        self.metrics = metrics
        self.on_change = on_change
        self.watchers: dict[str, LadderWatcher] = {}

    def sync(self, streams: Iterable["StreamConfig"]) -> None:
        """Start a watcher for every new or changed ladder, stop those of ladders no longer configured.
        A changed ladder with the same URL keeps its known variants (no gap in its streams)."""
        wanted = {s.name: s for s in streams if s.hls.ladder}
        for name in list(self.watchers):
            if name not in wanted:
                self.watchers.pop(name).stop()
                self.metrics.hls_ladder_variants.remove(name)
                self.metrics.hls_master_fetch_errors.remove(name)
        for name, config in wanted.items():
            old = self.watchers.get(name)
            if old is not None and old.config == config:
                continue
            seed = None
            if old is not None:
                old.stop()
                seed = old.variants if old.config.url == config.url else None
            watcher = self.watchers[name] = LadderWatcher(config, self.metrics, self.on_change, seed=seed)
            watcher.start()

    def expand(self, streams: Iterable["StreamConfig"]) -> list["StreamConfig"]:
        """``streams`` with every ladder replaced by the streams of its variants known so far."""
        out: list[StreamConfig] = []
        for stream in streams:
            if not stream.hls.ladder:
                out.append(stream)
            elif stream.name in self.watchers:  # none before sync(): a ladder never runs as one stream
                out.extend(self.watchers[stream.name].configs())
        return out

    def stop_all(self) -> None:
        for watcher in self.watchers.values():
            watcher.stop()
        self.watchers.clear()
