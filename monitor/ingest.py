"""Ingest: one reader thread per stream, PyAV with both timeouts, reconnect forever.

A reader opens its source, demuxes and decodes the first video stream, writes every frame into the
stream's :class:`~monitor.windows.WindowRing` (which samples it straight into a window: no decoded
frame is kept), and calls the per-frame observers. Every way a live source can end is an outage: an exception, a read
timeout (server hung), or a silent end of stream (server killed). The reader then sets
``vqa_stream_up`` to 0 and re-opens with capped exponential backoff plus jitter, forever.

Timeouts are always set, so a reader never blocks longer than ``read_timeout_s`` inside FFmpeg:

* RTSP: options ``rtsp_transport=tcp`` and ``timeout`` (microseconds), plus PyAV ``timeout=(open, read)``;
* other network sources (HLS/http, rtmp, udp, tcp): ``rw_timeout`` (microseconds) plus PyAV's;
* files and ``lavfi`` graphs: PyAV's, and frames are paced to their timestamps (``realtime``), with
  files re-opened at their end when ``loop`` is set, so they behave like live sources.

Damaged input never restarts a source: a packet that fails to decode is skipped and counted
(``vqa_decode_errors_total``), and so is one that makes the demuxer raise (:func:`resilient_demux`);
only :data:`MAX_CONSECUTIVE_DECODE_ERRORS` in a row count as an outage. A looped file keeps its
windows across its restarts (a file shorter than one window is still scored), and a pass over a
looped file that yields no frame at all is an outage with backoff, not an instant restart.

Frame timing uses :func:`time.monotonic` (RTSP frames carry no usable pts).

Audio: when the source has an audio track (and ``checks.audio.enabled``), the same reader demuxes
the first audio track with the video, decodes it (one thread) and meters it with an
:class:`~monitor.audio.AudioMeter` (FFmpeg's ebur128 in C); observers get one reading per 100 ms of
audio. An audio packet that fails to decode is counted (``vqa_audio_decode_errors_total``) and
skipped; it never restarts the source. Video-only sources are read exactly as before.
"""
from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable, Iterator, Sequence

from engines.sampler import Planes, planes_from_frame
from monitor.audio import AudioInfo, AudioMeter, AudioReading
from monitor.config import Source, StreamConfig
from monitor.metrics import StreamMetrics
from monitor.redact import redact_text
from monitor.worker import Worker
from monitor.windows import WindowRing

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_DECODE_ERRORS = 100  # then the source counts as broken and is re-opened
DEFAULT_FPS = 25.0
MAX_FALL_BEHIND_S = 1.0  # a paced source that falls further behind restarts its clock (no burst)


class IngestObserver:
    """Per-stream events for signal checks (black, freeze, bitrate...). Override what you need.

    Called on the reader thread of the stream: keep them cheap, never block. An exception is
    logged and ignored (it never stops the reader). A reader that was told to stop calls no observer
    any more: a restarted stream's successor reader owns the stream's state from then on.
    """

    def on_open(self, stream: str, nominal_fps: float | None, now: float) -> None:
        """The source opened and has a video stream declaring ``nominal_fps`` (None if it declares none)."""

    def on_packet(self, stream: str, nbytes: int, now: float) -> None: ...

    def on_frame(self, stream: str, planes: Planes, now: float) -> None: ...

    def on_up(self, stream: str, now: float) -> None: ...

    def on_down(self, stream: str, reason: str, now: float) -> None: ...

    def on_audio_open(self, stream: str, info: AudioInfo | None, now: float) -> None:
        """After :meth:`on_open`: the audio track that will be metered (None: none, or audio disabled)."""

    def on_audio(self, stream: str, reading: AudioReading, now: float) -> None:
        """One 100 ms block of the audio track, metered."""


def timeout_options(kind: str, read_timeout_s: float) -> dict[str, str]:
    """FFmpeg's own read timeout for a source of ``kind`` (``rtsp``, ``network``; none for the others)."""
    read_us = str(int(read_timeout_s * 1_000_000))
    if kind == "rtsp":
        return {"rtsp_transport": "tcp", "timeout": read_us}
    if kind == "network":
        return {"rw_timeout": read_us}
    return {}


def open_options(config: StreamConfig, source: Source) -> dict[str, str]:
    """FFmpeg options for ``av.open``: the timeouts for the source kind, then the user's extras."""
    return {**timeout_options(source.kind, config.read_timeout_s), **config.ffmpeg_options}


def resilient_demux(container: Any, stream: Any, on_error: Callable[[Exception], None]) -> Iterator[Any]:
    """``container.demux(stream)``, resumed after a packet the demuxer cannot parse (``stream`` may
    also be a tuple of streams: their packets interleaved).

    On damaged input (a corrupt MPEG-TS) PyAV raises from inside ``demux`` (InvalidDataError, or an
    IndexError for a packet of a stream it never announced); reading on from there continues with the
    next good packet. ``on_error`` is called with every such error and raises to give up. Errors of
    the source itself (timeouts, connection loss) are not caught: they end the session.
    """
    import av

    streams = stream if isinstance(stream, tuple) else (stream,)
    while True:
        try:
            for packet in container.demux(*streams):
                yield packet
            return
        except (av.error.InvalidDataError, IndexError) as exc:
            on_error(exc)


class TooManyErrors(Exception):
    """Damaged data :data:`MAX_CONSECUTIVE_DECODE_ERRORS` times in a row: the source counts as broken."""


def open_container(config: StreamConfig, source: Source) -> Any:
    import av

    kwargs: dict[str, Any] = {
        "options": open_options(config, source),
        "timeout": (config.open_timeout_s, config.read_timeout_s),
    }
    if source.kind == "lavfi":
        kwargs["format"] = "lavfi"
    return av.open(source.target, **kwargs)


def backoff_delay(failures: int, minimum: float, maximum: float, rng: random.Random | None = None) -> float:
    """Delay before re-open number ``failures`` (0-based): min * 2^n capped at max, plus 0-20% jitter."""
    base = min(maximum, minimum * (2.0 ** min(failures, 30)))
    return base * (1.0 + (rng or random).uniform(0.0, 0.2))


class StreamReader(Worker):
    """The reader thread of one stream. ``start()``, then ``stop()`` + ``join(timeout)``.

    The thread is a daemon thread: a reader blocked inside FFmpeg (at most ``read_timeout_s``) never
    keeps the process from exiting.
    """

    def __init__(
        self,
        config: StreamConfig,
        ring: WindowRing,
        metrics: StreamMetrics,
        observers: Sequence[IngestObserver] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(f"reader-{config.name}")
        self.config = config
        self.name = config.name
        self.source = config.source
        self.ring = ring
        self.metrics = metrics
        self.observers = list(observers)
        self.clock = clock
        self.realtime = config.realtime if config.realtime is not None else not self.source.live
        self.up = False
        self.frames = 0
        self.last_frame_time: float | None = None
        self.finished = False  # a file without loop reached its end
        self._failures = 0
        self._prev_due: float | None = None
        self._prev_time: float | None = None
        self._fps = DEFAULT_FPS
        self._observer_errors = 0
        self._session_frames = 0
        self._keep_windows = False  # the next session continues a looped file: its windows go on
        self._errors_in_row = 0
        self._audio_meter: AudioMeter | None = None  # kept across a looped file's restarts

    # lifecycle -----------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # main loop -----------------------------------------------------------------------------------
    def _run(self) -> None:
        extra = {"stream": self.name}
        log.info("stream starting", extra={**extra, "event": "stream_start", "url": self.config.display_url,
                                            "kind": self.source.kind})
        opened_before = False
        while not self._stop.is_set():
            if opened_before:
                self.metrics.reconnects.inc()
            opened_before = True
            reason = self._session()
            if self._stop.is_set():
                break
            if reason == "eof" and self.source.kind == "file" and self.config.loop and self._session_frames:
                opened_before = False  # a looped file is one endless stream: its restart is no reconnect
                self._keep_windows = True
                continue
            if reason == "eof" and self.source.kind == "file" and self.config.loop:
                reason = "file ended without a decodable frame"
            elif reason == "eof" and self.source.kind == "file":
                self._set_down("end of file (loop: false)")
                self.finished = True
                log.info("stream finished", extra={**extra, "event": "stream_finished"})
                return
            if reason == "eof":
                reason = "stream ended"
            was_up = self.up
            self._set_down(reason)
            delay = backoff_delay(self._failures, self.config.reconnect_min_s, self.config.reconnect_max_s)
            self._failures += 1
            level = logging.WARNING if was_up or self._failures == 1 else logging.INFO
            log.log(level, "stream down" if was_up else "stream unavailable",
                    extra={**extra, "event": "stream_down", "reason": reason, "retry_in_s": round(delay, 2),
                           "failures": self._failures})
            if self._stop.wait(delay):
                break
        self._set_down("stopped", quiet=True)
        log.info("stream stopped", extra={**extra, "event": "stream_stop"})

    def _session(self) -> str:
        """Open, read until the source ends; returns why it ended ('eof' or an error text)."""
        secrets = (self.config.url, self.source.target)
        self._session_frames = 0
        try:
            container = open_container(self.config, self.source)
        except Exception as exc:  # noqa: BLE001 - every failure to open is an outage, never fatal
            return redact_text(f"open failed: {type(exc).__name__}: {exc}", secrets)
        try:
            return self._read(container)
        except Exception as exc:  # noqa: BLE001
            return redact_text(f"read failed: {type(exc).__name__}: {exc}", secrets)
        finally:
            try:
                container.close()
            except Exception:  # noqa: BLE001
                pass

    def _read(self, container: Any) -> str:
        import av

        if not container.streams.video:
            return "no video stream in source"
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        self._fps = float(rate) if rate else DEFAULT_FPS
        for observer in self.observers:
            self._call(observer.on_open, self.name, float(rate) if rate else None, self.clock())
        audio = self._open_audio(container)
        self._prev_time = None
        if not self._keep_windows:
            self.ring.reset()
        self._keep_windows = False
        self._session_frames = 0
        self._errors_in_row = 0
        codec = stream.codec_context
        # One decoding thread per stream: the streams are the parallelism. FFmpeg's default of a thread
        # pool per decoder oversubscribes the cores with many streams and costs memory per stream.
        codec.thread_count = 1
        demuxed = (stream, audio) if audio is not None else stream
        try:
            for packet in resilient_demux(container, demuxed, self._damaged):
                if self._stop.is_set():
                    return "stopped"
                if audio is not None and packet.stream_index == audio.index:
                    self._on_audio_packet(audio, packet)
                    continue
                now = self.clock()
                if packet.size:
                    for observer in self.observers:
                        self._call(observer.on_packet, self.name, packet.size, now)
                try:
                    frames = codec.decode(packet)
                except (av.error.FFmpegError, ValueError) as exc:  # decoding does no I/O: bad data only
                    self._damaged(exc)
                    continue
                self._errors_in_row = 0
                for frame in frames:
                    if self._stop.is_set():
                        return "stopped"
                    self._on_frame(frame)
        except TooManyErrors as exc:
            return str(exc)
        return "eof"

    # audio ---------------------------------------------------------------------------------------
    def _open_audio(self, container: Any) -> Any:
        """The audio stream to meter (None: none, or audio disabled); tells the observers either way."""
        audio = container.streams.audio[0] if self.config.checks.audio.enabled and container.streams.audio else None
        info = None
        if audio is not None:
            try:
                audio.codec_context.thread_count = 1
                codec = audio.codec_context
                info = AudioInfo(codec.name, int(codec.sample_rate or 0), int(codec.channels or 0))
            except Exception:  # noqa: BLE001 - an audio track PyAV cannot decode: read the video alone
                audio = None
        if audio is not None:
            self.metrics.audio_decode_errors.inc(0)  # the series exists from now on
        if audio is None or not self._keep_windows or self._audio_meter is None:
            self._audio_meter = AudioMeter(self.config.checks.audio.true_peak) if audio is not None else None
        for observer in self.observers:
            self._call(observer.on_audio_open, self.name, info, self.clock())
        return audio

    def _on_audio_packet(self, audio: Any, packet: Any) -> None:
        import av

        try:
            frames = audio.codec_context.decode(packet)
        except (av.error.FFmpegError, ValueError):
            self.metrics.audio_decode_errors.inc()
            return
        meter = self._audio_meter
        assert meter is not None
        for frame in frames:
            try:
                readings = meter.push(frame)
            except Exception:  # noqa: BLE001 - a frame the meter refuses is counted; it never ends the session
                self.metrics.audio_decode_errors.inc()
                continue
            now = self.clock()
            for reading in readings:
                for observer in self.observers:
                    self._call(observer.on_audio, self.name, reading, now)

    def _damaged(self, exc: Exception) -> None:
        """A packet that could not be demuxed or decoded: counted and skipped, until too many in a row."""
        self.metrics.decode_errors.inc()
        self._errors_in_row += 1
        if self._errors_in_row >= MAX_CONSECUTIVE_DECODE_ERRORS:
            raise TooManyErrors(f"{self._errors_in_row} decode errors in a row (last: {type(exc).__name__}: {exc})")

    # per frame -----------------------------------------------------------------------------------
    def _on_frame(self, frame: Any) -> None:
        if self.realtime:
            self._pace(frame.time)
        now = self.clock()
        if not self.up:
            self._set_up(now)
        self.frames += 1
        self._session_frames += 1
        self.last_frame_time = now
        self.metrics.frames.inc()
        planes = planes_from_frame(frame)
        self.ring.write(planes, now)
        for observer in self.observers:
            self._call(observer.on_frame, self.name, planes, now)

    def _pace(self, frame_time: float | None) -> None:
        """Sleep until this frame is due, so a file or lavfi source runs at its own frame rate."""
        now = self.clock()
        step = 1.0 / self._fps
        if frame_time is not None and self._prev_time is not None:
            delta = frame_time - self._prev_time
            if 0.0 < delta <= 1.0:
                step = delta
        self._prev_time = frame_time
        due = now if self._prev_due is None else self._prev_due + step
        if due < now - MAX_FALL_BEHIND_S:
            due = now
        self._prev_due = due
        if due > now:
            self._stop.wait(due - now)

    # state ---------------------------------------------------------------------------------------
    def _set_up(self, now: float) -> None:
        self.up = True
        self._failures = 0
        if not self._stop.is_set():
            self.metrics.up.set(1)
        log.info("stream up", extra={"stream": self.name, "event": "stream_up"})
        for observer in self.observers:
            self._call(observer.on_up, self.name, now)

    def _set_down(self, reason: str, quiet: bool = False) -> None:
        was_up = self.up
        self.up = False
        self._prev_due = None
        self.ring.reset()
        if not self._stop.is_set():  # a stopped reader leaves the series to its successor
            self.metrics.up.set(0)
        if was_up or not quiet:
            for observer in self.observers:
                self._call(observer.on_down, self.name, reason, self.clock())

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        if self._stop.is_set():
            return
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - an observer bug must never stop ingest
            self._observer_errors += 1
            if self._observer_errors <= 3 or self._observer_errors % 1000 == 0:
                log.exception("frame observer failed", extra={"stream": self.name, "event": "observer_error",
                                                              "count": self._observer_errors})
