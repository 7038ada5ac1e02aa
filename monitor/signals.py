"""Signal checks: cheap per-frame health checks on the decoded luma plane, one state machine per stream.

Checks: black, frozen, no video (connected but no frames), frame-rate deviation, bitrate. Each raises
only after its condition held for a configurable minimum duration and clears only after it stayed
false for a clear duration, so a single odd frame never flips a metric. Decode errors are counted by
the daemon itself (``vqa_decode_errors_total``).

Everything here is a pure state machine fed with a monotonic time and plain data (a luma plane,
packet sizes); it owns no threads, clocks or Prometheus objects. The daemon calls, per stream::

    checks = StreamSignals(config.checks)
    checks.on_connect(now, nominal_fps=stream.average_rate)   # after av.open succeeded
    events = checks.on_frame(now, planes)                      # every decoded frame (Planes or Y array)
    events = checks.on_packet(now, packet.size)                # every demuxed video packet (bitrate)
    events = checks.tick(now)                                  # ~1/s from any loop: no-video timeout
    events = checks.on_disconnect(now)                         # the reader lost the stream
    state = checks.state()                                     # SignalState -> gauges

and logs each :class:`SignalEvent` as one line.

Freeze: how a frozen feed differs from a static scene
-----------------------------------------------------
Measured on x264 clips (tests/clips.py; CRF 23-35, presets veryfast and medium, GOP 12-250):

* A frozen feed decodes to bit-identical frames between keyframes. Each keyframe re-encodes the same
  picture; after a warm-up of one or two GOPs it differs from the frame before it in 0-33% of the
  sampled pixels (often in none), and the 1-6 frames after it refine it in a few pixels.
* A live camera on a static scene is *also* mostly bit-identical between keyframes (the encoder skips
  sub-quantiser sensor noise: 40-95% exact repeats), with sparse small updates (0.05-5% of pixels).
  But each of its keyframes codes a fresh noise field: 55-85% of the pixels change.
* Any real motion, even a 0.05 px/frame pan, changes more than 3% of the pixels in most frame pairs.

So a frame pair is *still* when at most ``still_fraction`` (3%) of the sampled pixels changed by more
than ``pixel_tolerance`` levels (0: any change) - sparse noise updates and refinements are still; a
whole-frame change of at most ``refresh_max_fraction`` (50%) right after ``refresh_min_run`` still pairs
is a keyframe *refresh* of an unchanged picture and is ignored; anything else is a *live change*. The
picture is frozen when no live change (``max_changes``) happened within the last ``min_duration``
seconds. The sensor noise is the noise-aware part: a live static scene proves it is live at every
keyframe, where the noise is re-coded across the frame, while the tolerance for sparse codec updates
keeps it from looking "changing" in between; a tolerance learned from the stream's own history was
rejected because on a frozen feed that history is the freeze itself.

Limits: ``min_duration`` must exceed the source's keyframe interval (default 5 s; cameras use 1-4 s),
or a static scene has no keyframe inside the window to prove it is live. A noise-free static picture
(a test card, a slide) is indistinguishable from a freeze, correctly so. Black frames are also
"frozen"; alert routing (Alertmanager inhibit rules) lets black win.
"""
from __future__ import annotations

import threading
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from pydantic import Field, model_validator

from monitor.audio import AudioChecksConfig
from monitor.strict import Strict

__all__ = [
    "BitrateConfig",
    "BlackConfig",
    "ChecksConfig",
    "Debounce",
    "FrameRateConfig",
    "FreezeConfig",
    "NoVideoConfig",
    "SignalEvent",
    "SignalState",
    "StreamSignals",
]

# Nominal 8-bit luma ranges: limited (video, BT.601/709) and full (JPEG).
_LIMITED_BLACK, _LIMITED_WHITE = 16.0, 235.0
_FULL_BLACK, _FULL_WHITE = 0.0, 255.0


class BlackConfig(Strict):
    """Black picture: nearly every sampled pixel is at most ``luma_level`` above nominal black."""

    enabled: bool = Field(True, description="the black check (`vqa_black`)")
    luma_level: float = Field(0.08, ge=0.0, le=0.5, description=(
        "a pixel is black at most this fraction of the nominal luma range above nominal black (limited or "
        "full range, as the frame says)"))
    pixel_fraction: float = Field(0.98, gt=0.0, le=1.0, description=(
        "the picture is black when at least this fraction of the sampled pixels are"))
    min_duration: float = Field(2.0, ge=0.0, description="seconds black before `vqa_black` is 1")
    clear_duration: float = Field(1.0, ge=0.0, description="seconds not black before `vqa_black` is 0")


class FreezeConfig(Strict):
    """Frozen picture: decoded frames repeat (see the module docstring for why this spares static scenes)."""

    enabled: bool = Field(True, description="the freeze check (`vqa_frozen`)")
    min_duration: float = Field(5.0, gt=0.0, le=600.0, description=(
        "seconds without a live change before `vqa_frozen` is 1; keep it above the source's keyframe interval, "
        "or a static scene may count as frozen"))
    clear_duration: float = Field(1.0, ge=0.0, description="seconds of changing frames before `vqa_frozen` is 0")
    pixel_tolerance: int = Field(0, ge=0, le=64, description=(
        "luma levels a pixel may change and still count as unchanged (0: any change counts)"))
    still_fraction: float = Field(0.03, ge=0.0, le=0.5, description=(
        "a frame pair with at most this fraction of changed pixels is still"))
    refresh_max_fraction: float = Field(0.5, ge=0.0, le=1.0, description=(
        "a change of at most this fraction right after a run of still pairs is a keyframe re-coding the same "
        "picture, not a live change"))
    refresh_min_run: int = Field(3, ge=1, description="still pairs that must precede such a keyframe refresh")
    max_changes: int = Field(0, ge=0, description="live changes tolerated within min_duration")


class NoVideoConfig(Strict):
    """Connected (the source opened) but no decoded frame for ``timeout`` seconds."""

    enabled: bool = Field(True, description="the no-video check (`vqa_no_video`)")
    timeout: float = Field(5.0, gt=0.0, description=(
        "seconds without a decoded frame while the source is open (counted from the open or the last frame) "
        "before `vqa_no_video` is 1; it clears with the next frame"))


class FrameRateConfig(Strict):
    """Measured frame rate against the expected one (``expected`` or else the stream's nominal rate)."""

    enabled: bool = Field(True, description=(
        "the frame-rate deviation check (`vqa_frame_rate_deviation`); `vqa_frame_rate` is measured either way"))
    expected: float | None = Field(None, gt=0.0, description="expected frames/s; null = the rate the stream declares")
    tolerance: float = Field(0.25, gt=0.0, lt=1.0, description="allowed relative deviation from the expected rate")
    window: float = Field(5.0, gt=0.0, le=300.0, description=(
        "seconds of frame arrivals the rate is measured over (at least 1)"))
    min_duration: float = Field(10.0, ge=0.0, description=(
        "seconds off the expected rate before `vqa_frame_rate_deviation` is 1"))
    clear_duration: float = Field(5.0, ge=0.0, description=(
        "seconds back within tolerance before `vqa_frame_rate_deviation` is 0"))


class BitrateConfig(Strict):
    """Bitrate from the sizes of demuxed packets over a sliding window."""

    window: float = Field(5.0, gt=0.0, le=300.0, description=(
        "seconds of demuxed video packet sizes `vqa_bitrate_bits_per_second` is measured over (the packets in "
        "it are kept)"))


class ChecksConfig(Strict):
    """The ``checks:`` section (defaults and per stream)."""

    stride: int = Field(4, ge=1, le=32, description=(
        "luma subsampling step in both directions (4 = every 16th pixel is checked)"))
    black: BlackConfig = Field(BlackConfig(), description=(
        "black picture: at least `pixel_fraction` of the sampled pixels are at most `luma_level` above nominal black"))
    freeze: FreezeConfig = Field(FreezeConfig(), description=(
        "frozen picture: no live change within `min_duration`. A live static scene is told from a freeze by its "
        "keyframes, which re-code the camera's sensor noise across most of the frame; a noise-free static "
        "picture such as a test card cannot be told from a freeze. A black picture is frozen too"))
    no_video: NoVideoConfig = Field(NoVideoConfig(), description=(
        "the source is open but delivers no decoded frame (a source that sends no data at all also runs into "
        "`read_timeout_s` and is reconnected)"))
    frame_rate: FrameRateConfig = Field(FrameRateConfig(), description=(
        "the frames that arrived within the last `window` seconds, against `expected` or the rate the stream "
        "declares"))
    bitrate: BitrateConfig = Field(BitrateConfig(), description=(
        "the video bitrate from the sizes of the demuxed packets (a measurement, no alarm)"))
    audio: AudioChecksConfig = Field(AudioChecksConfig(), description=(
        "the first audio track: EBU R128 loudness (FFmpeg's ebur128) and the silence, loudness, clipping and "
        "missing-audio checks (monitor/audio.py, docs/audio.md)"))

    @model_validator(mode="after")
    def _window_long_enough(self) -> "ChecksConfig":
        if self.frame_rate.window < 1.0:
            raise ValueError("frame_rate.window must be at least 1 second")
        return self


@dataclass(frozen=True)
class SignalEvent:
    """A check changed state: ``check`` in black/frozen/no_video/frame_rate_deviation."""

    check: str
    active: bool
    t: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SignalState:
    """Everything the metrics need, as plain values (None: not measured yet)."""

    black: bool = False
    frozen: bool = False
    no_video: bool = False
    frame_rate_deviation: bool = False
    frame_rate: float | None = None
    expected_frame_rate: float | None = None
    bitrate_bps: float | None = None
    luma_mean: float | None = None


class Debounce:
    """A boolean that follows a raw condition only after it held ``raise_after`` (true) or
    ``clear_after`` (false) seconds without interruption."""

    def __init__(self, raise_after: float, clear_after: float) -> None:
        self.raise_after = raise_after
        self.clear_after = clear_after
        self.active = False
        self._since: float | None = None  # when the raw condition started to disagree with `active`

    def update(self, t: float, raw: bool) -> bool | None:
        """Feed one observation; returns the new state when it changed, else None."""
        if raw == self.active:
            self._since = None
            return None
        if self._since is None:
            self._since = t
        if t - self._since >= (self.raise_after if raw else self.clear_after):
            self.active = raw
            self._since = None
            return raw
        return None

    def reset(self) -> bool | None:
        was = self.active
        self.active, self._since = False, None
        return False if was else None


_STILL, _CHANGE, _REFRESH = 0, 1, 2


class _FreezeDetector:
    """Classifies consecutive frame pairs as still, keyframe refresh or live change (module docstring)."""

    def __init__(self, config: FreezeConfig) -> None:
        self.config = config
        self._prev: np.ndarray | None = None
        self._pairs: deque[tuple[float, int]] = deque()
        self._kinds = [0, 0, 0]  # pairs of each kind within min_duration (running counts, not rescans)
        self._run = 0  # consecutive still pairs
        self._first_t: float | None = None
        self.debounce = Debounce(0.0, config.clear_duration)
        self.last_changed = 0.0

    def reset(self) -> None:
        self._prev, self._run, self._first_t = None, 0, None
        self._clear_pairs()

    def _clear_pairs(self) -> None:
        self._pairs.clear()
        self._kinds = [0, 0, 0]

    def update(self, t: float, luma: np.ndarray) -> tuple[bool, int]:
        """Add one frame (an array the detector may keep: never a view into a decoder buffer);
        returns (raw frozen, live changes within min_duration)."""
        cfg = self.config
        prev, self._prev = self._prev, luma
        if prev is None or prev.shape != luma.shape:
            self._clear_pairs()
            self._first_t, self._run = t, 0
            return False, 0
        if cfg.pixel_tolerance == 0:
            changed = float(np.count_nonzero(luma != prev)) / luma.size
        else:
            diff = np.abs(luma.astype(np.int16) - prev.astype(np.int16))
            changed = float(np.count_nonzero(diff > cfg.pixel_tolerance)) / diff.size
        self.last_changed = changed
        if changed <= cfg.still_fraction:
            kind = _STILL
            self._run += 1
        else:
            refresh = changed <= cfg.refresh_max_fraction and self._run >= cfg.refresh_min_run
            kind = _REFRESH if refresh else _CHANGE
            self._run = 0
        pairs, kinds = self._pairs, self._kinds
        pairs.append((t, kind))
        kinds[kind] += 1
        horizon = t - cfg.min_duration
        while pairs and pairs[0][0] < horizon:
            kinds[pairs.popleft()[1]] -= 1
        changes, stills = kinds[_CHANGE], kinds[_STILL]
        covered = self._first_t is not None and t - self._first_t >= cfg.min_duration
        raw = covered and changes <= cfg.max_changes and stills >= 0.5 * len(pairs)
        return raw, changes


class StreamSignals:
    """All signal checks of one stream. Every method takes an internal lock, so the reader thread may
    feed frames and packets while another thread calls :meth:`tick`; :meth:`state` returns an immutable
    snapshot."""

    def __init__(self, config: ChecksConfig | None = None) -> None:
        self.config = config or ChecksConfig()
        c = self.config
        self._black = Debounce(c.black.min_duration, c.black.clear_duration)
        self._freeze = _FreezeDetector(c.freeze)
        self._no_video = Debounce(0.0, 0.0)
        self._fps_dev = Debounce(c.frame_rate.min_duration, c.frame_rate.clear_duration)
        self._frame_times: deque[float] = deque()
        self._packets: deque[tuple[float, int]] = deque()
        self._packet_bytes = 0
        self._first_packet_t: float | None = None
        self._connected = False
        self._last_frame_t: float | None = None
        self._first_frame_t: float | None = None
        self._lock = threading.RLock()
        self._nominal_fps: float | None = None
        self._state = SignalState()
        self.live_changes = 0  # live changes within freeze.min_duration, for logs and tests
        self._publish()

    # -- lifecycle -----------------------------------------------------------------------------
    def on_connect(self, t: float, nominal_fps: float | None = None) -> list[SignalEvent]:
        """The source opened. ``nominal_fps``: the rate the stream declares (PyAV ``average_rate``)."""
        with self._lock:
            return self._on_connect(t, nominal_fps)

    def _on_connect(self, t: float, nominal_fps: float | None) -> list[SignalEvent]:
        self._connected = True
        self._first_frame_t = None
        self._frame_times.clear()
        self._last_frame_t = t
        self._nominal_fps = float(nominal_fps) if nominal_fps and nominal_fps > 0 else None
        self._publish()
        return []

    def on_disconnect(self, t: float) -> list[SignalEvent]:
        """The source is gone: picture checks reset (an outage is reported by vqa_stream_up)."""
        with self._lock:
            return self._on_disconnect(t)

    def _on_disconnect(self, t: float) -> list[SignalEvent]:
        self._connected = False
        self._first_frame_t = None
        self._freeze.reset()
        self._frame_times.clear()
        self._packets.clear()
        self._packet_bytes = 0
        self._first_packet_t = None
        events = []
        for name, deb in (("black", self._black), ("frozen", self._freeze.debounce),
                          ("no_video", self._no_video), ("frame_rate_deviation", self._fps_dev)):
            if deb.reset() is not None:
                events.append(SignalEvent(name, False, t, {"reason": "disconnected"}))
        self._state = SignalState()
        return events

    # -- per frame / packet --------------------------------------------------------------------
    def on_frame(self, t: float, frame: Any, full_range: bool | None = None) -> list[SignalEvent]:
        """One decoded frame: ``frame`` is an ``engines.sampler.Planes`` or a 2-D uint8 Y plane
        (then ``full_range`` says whether it is JPEG range; default limited)."""
        with self._lock:
            return self._on_frame(t, frame, full_range)

    def _on_frame(self, t: float, frame: Any, full_range: bool | None) -> list[SignalEvent]:
        y = getattr(frame, "y", frame)
        if full_range is None:
            full_range = bool(getattr(frame, "full_range", False))
        s = self.config.stride
        # One compact copy of the subsampled plane: the checks below run several times faster on it
        # than on the strided view, and the freeze detector may keep it (no decoder buffer is kept).
        luma = np.asarray(y)[::s, ::s].copy()
        events: list[SignalEvent] = []
        self._last_frame_t = t
        if self._first_frame_t is None:
            self._first_frame_t = t
        if not self._connected:  # frames without on_connect: treat as connected
            self._connected = True
        self._emit(events, "no_video", self._no_video.update(t, False), t)

        mean = int(luma.sum(dtype=np.uint64)) / luma.size  # an integer sum: a third of ndarray.mean's time
        cfg = self.config
        if cfg.black.enabled:
            lo, hi = (_FULL_BLACK, _FULL_WHITE) if full_range else (_LIMITED_BLACK, _LIMITED_WHITE)
            level = lo + cfg.black.luma_level * (hi - lo)
            dark = float(np.count_nonzero(luma <= level)) / luma.size
            raw = dark >= cfg.black.pixel_fraction
            self._emit(events, "black", self._black.update(t, raw), t,
                       {"luma_mean": round(mean, 1), "dark_fraction": round(dark, 3)})
        if cfg.freeze.enabled:
            raw, self.live_changes = self._freeze.update(t, luma)
            self._emit(events, "frozen", self._freeze.debounce.update(t, raw), t,
                       {"live_changes": self.live_changes})

        times = self._frame_times
        times.append(t)
        horizon = t - cfg.frame_rate.window
        while times and times[0] < horizon:
            times.popleft()
        fps = self._measured_fps(t)
        expected = self._expected_fps()
        if cfg.frame_rate.enabled and fps is not None and expected is not None:
            raw = abs(fps - expected) > cfg.frame_rate.tolerance * expected
            self._emit(events, "frame_rate_deviation", self._fps_dev.update(t, raw), t,
                       {"fps": round(fps, 2), "expected": round(expected, 2)})
        self._publish(luma_mean=mean)
        return events

    def on_packet(self, t: float, size: int) -> list[SignalEvent]:
        """One demuxed packet of the video stream (``packet.size`` bytes) at monotonic time ``t``."""
        return self.on_packets([t], [size])

    def on_packets(self, times: Sequence[float], sizes: Sequence[int]) -> list[SignalEvent]:
        """Packets in arrival order: times (monotonic seconds) and sizes (bytes)."""
        with self._lock:
            return self._on_packets(times, sizes)

    def _on_packets(self, times: Sequence[float], sizes: Sequence[int]) -> list[SignalEvent]:
        window = self.config.bitrate.window
        packets = self._packets
        for t, size in zip(times, sizes):
            if self._first_packet_t is None:
                self._first_packet_t = t
            packets.append((t, int(size)))
            self._packet_bytes += int(size)
        if packets:
            horizon = packets[-1][0] - window
            while packets and packets[0][0] <= horizon:
                self._packet_bytes -= packets.popleft()[1]
        self._publish()
        return []

    def bitrate(self, t: float | None = None) -> float | None:
        """Bits per second over the last ``bitrate.window`` seconds (None before 0.5 s of packets)."""
        with self._lock:
            return self._bitrate(t)

    def _bitrate(self, t: float | None) -> float | None:
        if self._first_packet_t is None or not self._packets:
            return None
        now = self._packets[-1][0] if t is None else t
        window = self.config.bitrate.window
        horizon = now - window
        while self._packets and self._packets[0][0] <= horizon:
            self._packet_bytes -= self._packets.popleft()[1]
        span = min(window, now - self._first_packet_t)
        if span < 0.5:
            return None
        return 8.0 * self._packet_bytes / span

    # -- timers --------------------------------------------------------------------------------
    def tick(self, t: float) -> list[SignalEvent]:
        """Time passes without frames: the no-video timeout, and the frame rate decays. Call it about
        once a second (any thread)."""
        with self._lock:
            return self._tick(t)

    def _tick(self, t: float) -> list[SignalEvent]:
        events: list[SignalEvent] = []
        cfg = self.config
        if cfg.no_video.enabled and self._connected and self._last_frame_t is not None:
            silent = t - self._last_frame_t
            self._emit(events, "no_video", self._no_video.update(t, silent >= cfg.no_video.timeout), t,
                       {"seconds_without_frames": round(silent, 1)})
        horizon = t - cfg.frame_rate.window
        while self._frame_times and self._frame_times[0] < horizon:
            self._frame_times.popleft()
        self._publish(now=t)
        return events

    # -- output --------------------------------------------------------------------------------
    def state(self) -> SignalState:
        return self._state

    def _measured_fps(self, now: float) -> float | None:
        """Frames that arrived within the last ``window`` seconds per second (None for the first second)."""
        if not self._connected or self._first_frame_t is None:
            return None
        span = min(self.config.frame_rate.window, now - self._first_frame_t)
        if span < 1.0:
            return None
        horizon = now - span
        times = self._frame_times  # ascending
        return (len(times) - bisect_right(times, horizon)) / span

    def _expected_fps(self) -> float | None:
        return self.config.frame_rate.expected or self._nominal_fps

    def _publish(self, luma_mean: float | None = None, now: float | None = None) -> None:
        old = self._state
        ref = now if now is not None else (self._frame_times[-1] if self._frame_times else 0.0)
        self._state = SignalState(
            black=self._black.active,
            frozen=self._freeze.debounce.active,
            no_video=self._no_video.active,
            frame_rate_deviation=self._fps_dev.active,
            frame_rate=self._measured_fps(ref) if self._connected else None,
            expected_frame_rate=self._expected_fps(),
            bitrate_bps=self._bitrate(now),
            luma_mean=old.luma_mean if luma_mean is None else luma_mean,
        )

    @staticmethod
    def _emit(events: list[SignalEvent], name: str, change: bool | None, t: float,
              detail: dict[str, Any] | None = None) -> None:
        if change is not None:
            events.append(SignalEvent(name, change, t, detail or {}))
