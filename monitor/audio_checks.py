"""Audio checks of one stream: silence, loudness off target, clipping, audio missing.

A pure state machine like :class:`monitor.signals.StreamSignals`, with the same debounce
(:class:`~monitor.signals.Debounce`: a check raises after its condition held ``min_duration`` and
clears after it stayed false ``clear_duration``). Fed per stream by the daemon::

    audio = StreamAudio(config.checks.audio)
    audio.on_open(now, info)          # the source opened; info: AudioInfo, or None without an audio track
    audio.on_reading(now, reading)    # every 100 ms block of metered audio (monitor.audio.AudioReading)
    audio.tick(now)                   # ~1/s: the missing-audio timeout
    audio.on_disconnect(now)          # the reader lost the source
    audio.state()                     # AudioState -> gauges

A stream that has no audio track and is not ``expected`` to have one publishes no audio series
(:attr:`AudioState.active` false).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from monitor.audio import AudioChecksConfig, AudioInfo, AudioReading
from monitor.signals import Debounce, SignalEvent


@dataclass(frozen=True)
class AudioState:
    """Everything the audio gauges need; ``active`` false: the stream has no audio series."""

    active: bool = False
    expected: bool = False
    silence: bool = False
    loudness_out_of_range: bool = False
    clipping: bool = False
    missing: bool = False
    momentary: float | None = None
    short_term: float | None = None
    integrated: float | None = None
    loudness_range: float | None = None
    true_peak: float | None = None


class StreamAudio:
    """All audio checks of one stream; thread-safe (reader thread feeds, main thread ticks)."""

    def __init__(self, config: AudioChecksConfig | None = None) -> None:
        self.config = config or AudioChecksConfig()
        c = self.config
        self._silence = Debounce(c.silence.min_duration, c.silence.clear_duration)
        self._loudness = Debounce(c.loudness.min_duration, c.loudness.clear_duration)
        self._clipping = Debounce(c.clipping.min_duration, c.clipping.clear_duration)
        self._missing = Debounce(0.0, 0.0)
        self._lock = threading.Lock()
        self._connected = False
        self._has_track = False
        self._seen_audio = False  # a track was seen on some connection: its series stay
        self._last_audio_t: float | None = None
        self._reading: AudioReading | None = None
        self._state = AudioState()
        self._publish()

    # -- lifecycle -----------------------------------------------------------------------------
    def on_open(self, t: float, info: AudioInfo | None) -> list[SignalEvent]:
        with self._lock:
            self._connected = True
            self._has_track = info is not None
            self._seen_audio = self._seen_audio or self._has_track
            if self._last_audio_t is None:
                self._last_audio_t = t
            events: list[SignalEvent] = []
            self._check_missing(events, t)
            self._publish()
            return events

    def on_disconnect(self, t: float) -> list[SignalEvent]:
        with self._lock:
            self._connected = False
            self._last_audio_t = None
            self._reading = None
            events = []
            for name, deb in self._debounces():
                if deb.reset() is not None:
                    events.append(SignalEvent(name, False, t, {"reason": "disconnected"}))
            self._publish()
            return events

    # -- per block -----------------------------------------------------------------------------
    def on_reading(self, t: float, reading: AudioReading) -> list[SignalEvent]:
        with self._lock:
            return self._on_reading(t, reading)

    def _on_reading(self, t: float, r: AudioReading) -> list[SignalEvent]:
        cfg = self.config
        events: list[SignalEvent] = []
        self._connected = self._has_track = self._seen_audio = True
        self._last_audio_t = t
        self._reading = r
        self._check_missing(events, t)
        silent = r.momentary_ready and r.momentary < cfg.silence.level
        if cfg.silence.enabled and r.momentary_ready:
            _emit(events, "audio_silence", self._silence.update(t, silent), t, {"momentary_lufs": round(r.momentary, 1)})
        if cfg.loudness.enabled:
            value, ready = ((r.integrated, r.integrated_ready) if cfg.loudness.measure == "integrated"
                            else (r.short_term, r.short_term_ready))
            if ready:
                off = not silent and abs(value - cfg.loudness.target) > cfg.loudness.tolerance
                _emit(events, "audio_loudness_out_of_range", self._loudness.update(t, off), t,
                      {cfg.loudness.measure + "_lufs": round(value, 1), "target_lufs": cfg.loudness.target})
        if cfg.clipping.enabled:
            clipped = r.sample_peak is not None and r.sample_peak >= cfg.clipping.peak_level
            _emit(events, "audio_clipping", self._clipping.update(t, clipped), t,
                  {"sample_peak_dbfs": None if r.sample_peak is None else round(r.sample_peak, 2)})
        self._publish()
        return events

    def tick(self, t: float) -> list[SignalEvent]:
        with self._lock:
            events: list[SignalEvent] = []
            self._check_missing(events, t)
            self._publish()
            return events

    # -- output --------------------------------------------------------------------------------
    def state(self) -> AudioState:
        return self._state

    def _check_missing(self, events: list[SignalEvent], t: float) -> None:
        if not (self.config.expected and self._connected and self._last_audio_t is not None):
            return
        waited = t - self._last_audio_t
        _emit(events, "audio_missing", self._missing.update(t, waited >= self.config.missing.timeout), t,
              {"audio_track": self._has_track, "seconds_without_audio": round(waited, 1)})

    def _debounces(self) -> tuple[tuple[str, Debounce], ...]:
        return (("audio_silence", self._silence), ("audio_loudness_out_of_range", self._loudness),
                ("audio_clipping", self._clipping), ("audio_missing", self._missing))

    def _publish(self) -> None:
        r = self._reading
        self._state = AudioState(
            active=self.config.expected or self._seen_audio,
            expected=self.config.expected,
            silence=self._silence.active,
            loudness_out_of_range=self._loudness.active,
            clipping=self._clipping.active,
            missing=self._missing.active,
            momentary=r.momentary if r is not None and r.momentary_ready else None,
            short_term=r.short_term if r is not None and r.short_term_ready else None,
            integrated=r.integrated if r is not None and r.integrated_ready else None,
            loudness_range=r.loudness_range if r is not None and r.short_term_ready else None,
            true_peak=r.true_peak if r is not None else None,
        )


def _emit(events: list[SignalEvent], name: str, change: bool | None, t: float, detail: dict[str, Any]) -> None:
    if change is not None:
        events.append(SignalEvent(name, change, t, detail))
