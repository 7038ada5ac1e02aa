"""What the daemon does with each decoded frame and each scored window besides scoring them.

The scheduler hands every scored window (:class:`WindowScore`) to each :class:`WindowObserver`, as
the readers hand every frame to each :class:`monitor.ingest.IngestObserver`.

:class:`StreamChecks` feeds every stream's frames and packets to its :class:`monitor.signals.StreamSignals`
(black, frozen, no video, frame rate, bitrate); :class:`QualityTracker` feeds every scored window to
its :class:`monitor.quality_state.QualityState` (ok / warn / crit with hysteresis). Both publish
gauges and log one line per change. They sit apart from the checks' logic because they depend on
ingest and metrics, and the config (which the logic's own settings belong to) must not.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from engines.aqs import dominant_artifact, quality_level
from engines.contract import ARTIFACTS
from engines.sampler import Planes
from monitor.audio import AudioInfo, AudioReading
from monitor.audio_checks import StreamAudio
from monitor.config import StreamConfig
from monitor.ingest import IngestObserver
from monitor.metrics import Metrics, StreamMetrics
from monitor.quality_state import Level, QualityEvent, QualityState
from monitor.signals import SignalEvent, StreamSignals

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# Scored windows, as the scheduler publishes them
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowScore:
    """The score of one window of one stream."""

    stream: str
    seq: int  # the window's sequence number in its stream
    aqs: float
    quality: float
    probabilities: tuple[float, ...]  # in ARTIFACTS order
    intensities: tuple[float, ...]
    last_frame_time: float  # time.monotonic() of the window's last frame
    published_time: float  # time.monotonic() when scored
    engine: str
    # [10, 7, 7] float32 per-fragment artifact probabilities (ARTIFACTS order, row 0 = top of the
    # frame), or None when the engine does not localise
    artifact_map: np.ndarray | None = None

    @property
    def level(self) -> str:
        return quality_level(self.aqs)

    @property
    def dominant_artifact(self) -> str:
        return dominant_artifact(np.asarray(self.probabilities), np.asarray(self.intensities))

    @property
    def artifacts(self) -> dict[str, float]:
        return dict(zip(ARTIFACTS, self.probabilities))

    @property
    def latency(self) -> float:
        return self.published_time - self.last_frame_time


class WindowObserver:
    """Called on the scheduler thread for every scored window; keep it cheap."""

    def on_window(self, score: WindowScore) -> None: ...


# ------------------------------------------------------------------------------------------------
# Signal checks: one StreamSignals per stream, fed on the reader threads
# ------------------------------------------------------------------------------------------------
@dataclass
class _CheckedStream:
    signals: StreamSignals
    metrics: StreamMetrics
    connected: bool = False


class StreamChecks(IngestObserver):
    """The signal checks of every stream (:mod:`monitor.signals`), published as gauges.

    Per frame this costs one subsampled luma pass (``checks.stride``); gauges are set on
    :meth:`tick` (main loop) and at once when a check changes state.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._streams: dict[str, _CheckedStream] = {}
        # called with (stream, events, the frame or None) whenever a check changes state
        self.listeners: list[Callable[[str, list[SignalEvent], Planes | None], None]] = []

    def add(self, config: StreamConfig) -> None:
        checked = _CheckedStream(StreamSignals(config.checks), self.metrics.stream(config.name))
        self._streams[config.name] = checked
        self.metrics.publish_signals(checked.metrics, checked.signals.state())

    def drop(self, name: str) -> None:
        self._streams.pop(name, None)

    def tick(self, now: float) -> None:
        for name, checked in list(self._streams.items()):
            _log_signal_events(name, checked.signals.tick(now))
            self.metrics.publish_signals(checked.metrics, checked.signals.state())

    # reader threads --------------------------------------------------------------------------------
    def on_open(self, stream: str, nominal_fps: float | None, now: float) -> None:
        checked = self._streams.get(stream)
        # A looped file re-opens at every wrap without going down: keep measuring across the wrap.
        if checked is not None and not checked.connected:
            checked.connected = True
            checked.signals.on_connect(now, nominal_fps)
            self.metrics.publish_signals(checked.metrics, checked.signals.state())  # the expected rate

    def on_packet(self, stream: str, nbytes: int, now: float) -> None:
        checked = self._streams.get(stream)
        if checked is not None:
            checked.signals.on_packet(now, nbytes)

    def on_frame(self, stream: str, planes: Planes, now: float) -> None:
        checked = self._streams.get(stream)
        if checked is not None:
            self._report(stream, checked, checked.signals.on_frame(now, planes), planes)

    def on_down(self, stream: str, reason: str, now: float) -> None:
        checked = self._streams.get(stream)
        if checked is not None:
            checked.connected = False
            self._report(stream, checked, checked.signals.on_disconnect(now))

    def _report(self, stream: str, checked: _CheckedStream, events: list[SignalEvent], planes: Planes | None = None) -> None:
        if events:
            _log_signal_events(stream, events)
            self.metrics.publish_signals(checked.metrics, checked.signals.state())
            for listener in self.listeners:
                listener(stream, events, planes)


# ------------------------------------------------------------------------------------------------
# Audio checks: one StreamAudio per stream, fed on the reader threads
# ------------------------------------------------------------------------------------------------
@dataclass
class _AudioStream:
    audio: StreamAudio
    metrics: StreamMetrics


class AudioChecks(IngestObserver):
    """The audio checks of every stream (:mod:`monitor.audio_checks`), published as gauges on
    :meth:`tick` and at once when a check changes state; log lines as for the signal checks."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._streams: dict[str, _AudioStream] = {}

    def add(self, config: StreamConfig) -> None:
        checked = _AudioStream(StreamAudio(config.checks.audio), self.metrics.stream(config.name))
        self._streams[config.name] = checked
        self.metrics.publish_audio(checked.metrics, checked.audio.state())

    def drop(self, name: str) -> None:
        self._streams.pop(name, None)

    def tick(self, now: float) -> None:
        for name, checked in list(self._streams.items()):
            _log_signal_events(name, checked.audio.tick(now))
            self.metrics.publish_audio(checked.metrics, checked.audio.state())

    def on_audio_open(self, stream: str, info: AudioInfo | None, now: float) -> None:
        checked = self._streams.get(stream)
        if checked is not None:
            self._report(stream, checked, checked.audio.on_open(now, info), publish=True)

    def on_audio(self, stream: str, reading: AudioReading, now: float) -> None:
        checked = self._streams.get(stream)
        if checked is not None:
            self._report(stream, checked, checked.audio.on_reading(now, reading))

    def on_down(self, stream: str, reason: str, now: float) -> None:
        checked = self._streams.get(stream)
        if checked is not None:
            self._report(stream, checked, checked.audio.on_disconnect(now), publish=True)

    def _report(self, stream: str, checked: _AudioStream, events: list[SignalEvent], publish: bool = False) -> None:
        if events:
            _log_signal_events(stream, events)
        if events or publish:
            self.metrics.publish_audio(checked.metrics, checked.audio.state())


def _log_signal_events(stream: str, events: list[SignalEvent]) -> None:
    for event in events:
        what = "raised" if event.active else "cleared"
        log.log(logging.WARNING if event.active else logging.INFO, f"{event.check} {what}",
                extra={"stream": stream, "event": f"signal_{what}", "check": event.check, **event.detail})


# ------------------------------------------------------------------------------------------------
# Quality state: one QualityState per stream, fed on the scheduler thread
# ------------------------------------------------------------------------------------------------
@dataclass
class _TrackedStream:
    state: QualityState
    metrics: StreamMetrics
    lock: threading.Lock  # the scheduler updates while a reload or shutdown may close
    closed: bool = False  # dropped: a window still in flight must not open a new incident


class QualityTracker(WindowObserver):
    """The quality state of every stream (:mod:`monitor.quality_state`): ``vqa_quality_state`` and one
    log line per incident change (start, escalate, deescalate, end) with the worst AQS and the
    dominant artifact."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._streams: dict[str, _TrackedStream] = {}
        # called with (score, the incident events it caused, the level after it) for every window
        self.listeners: list[Callable[[WindowScore, list[QualityEvent], Level], None]] = []
        self.closed_listeners: list[Callable[[str, list[QualityEvent]], None]] = []  # (stream, end events) on drop

    def add(self, config: StreamConfig) -> None:
        tracked = _TrackedStream(QualityState(config.quality), self.metrics.stream(config.name), threading.Lock())
        self._streams[config.name] = tracked
        self.metrics.publish_quality_state(tracked.metrics, Level.OK)

    def drop(self, name: str, reason: str) -> None:
        """Forget the stream, ending its open incident (if any) with ``reason``."""
        tracked = self._streams.pop(name, None)
        if tracked is not None:
            with tracked.lock:
                tracked.closed = True
                events = tracked.state.close(time.monotonic(), reason)
            _log_quality_events(name, events)
            for listener in self.closed_listeners:
                listener(name, events)

    def close_all(self, reason: str) -> None:
        for name in list(self._streams):
            self.drop(name, reason)

    def on_window(self, score: WindowScore) -> None:
        tracked = self._streams.get(score.stream)
        if tracked is None:
            return
        with tracked.lock:
            if tracked.closed:
                return
            events = tracked.state.update(score.last_frame_time, score.aqs, score.probabilities, score.intensities)
            level = tracked.state.level
        if events:
            self.metrics.publish_quality_state(tracked.metrics, level)
            _log_quality_events(score.stream, events, window_artifact=score.dominant_artifact)
        for listener in self.listeners:
            listener(score, events, level)


_INCIDENT_MESSAGES = {"start": "quality incident started", "escalate": "quality incident escalated",
                      "deescalate": "quality incident de-escalated", "end": "quality incident ended"}
# "level" would overwrite the log line's own level field in JSON.
_RENAMED_FIELDS = {"level": "quality_level", "previous": "previous_quality_level"}


def _log_quality_events(stream: str, events: list[QualityEvent], **extra: str) -> None:
    for event in events:
        fields = {_RENAMED_FIELDS.get(k, k): v for k, v in event.fields().items()
                  if not (isinstance(v, float) and math.isnan(v))}  # a closed incident has no last AQS
        worse = event.kind in ("start", "escalate")
        log.log(logging.WARNING if worse else logging.INFO, _INCIDENT_MESSAGES[event.kind],
                extra={"stream": stream, **fields, **(extra if worse else {})})
