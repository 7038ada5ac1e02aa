"""Per-stream quality state with hysteresis: ok / warn / crit from the AQS of consecutive windows.

A level (warn or crit) is entered when ``enter_windows`` consecutive windows scored below its threshold
AND those windows span at least ``enter_seconds``; it is left when ``exit_windows`` consecutive windows
scored at or above ``threshold + exit_margin`` AND they span at least ``exit_seconds``. Crit implies warn:
a window below crit is below warn too, and leaving crit while still below warn lands in warn. Alternating
good and bad windows never reach ``enter_windows`` in a row, so the state does not flap.

An *incident* runs from leaving ok to returning to ok. It tracks the worst AQS and the dominant
artifact (the artifact with the largest summed evidence ``probability * intensity`` over the
incident's windows, as :func:`engines.aqs.dominant_artifact` names it for one window).

The daemon calls, per stream and per scored window::

    quality = QualityState(config.quality)                  # QualityConfig
    events = quality.update(now, aqs, probabilities, intensities)   # arrays in ARTIFACTS order, or dicts
    gauge vqa_quality_state = quality.level                  # 0 ok, 1 warn, 2 crit
    events += quality.close(now, reason="stream removed")    # ends an open incident

and logs every :class:`QualityEvent` as one line with ``event.fields()`` (see :mod:`monitor.observers`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Mapping, Sequence

import numpy as np
from pydantic import Field, model_validator

from engines.contract import ARTIFACTS
from monitor.strict import Strict

__all__ = ["Level", "QualityConfig", "QualityEvent", "QualityState"]


class Level(IntEnum):
    OK = 0
    WARN = 1
    CRIT = 2


class QualityConfig(Strict):
    """The ``quality:`` section (defaults and per stream)."""

    warn: float = Field(0.6, gt=0.0, le=1.0, description="AQS below this is a warning")
    crit: float = Field(0.4, ge=0.0, lt=1.0, description=(
        "AQS below this is critical; must be below `warn` (checked per stream, after the merge)"))
    enter_windows: int = Field(5, ge=1, description="consecutive windows below a threshold to enter its level ...")
    enter_seconds: float = Field(0.0, ge=0.0, description="... which must also span at least this many seconds")
    exit_windows: int = Field(10, ge=1, description="consecutive clear windows to leave a level ...")
    exit_seconds: float = Field(0.0, ge=0.0, description="... which must also span at least this many seconds")
    exit_margin: float = Field(0.02, ge=0.0, le=0.2, description=(
        "a window is clear at or above threshold + `exit_margin`"))

    @model_validator(mode="after")
    def _ordered(self) -> "QualityConfig":
        if self.crit >= self.warn:
            raise ValueError(f"crit ({self.crit}) must be below warn ({self.warn})")
        return self

    def threshold(self, level: Level) -> float:
        return self.crit if level == Level.CRIT else self.warn


@dataclass(frozen=True)
class QualityEvent:
    """``kind``: start (ok -> warn/crit), escalate (warn -> crit), deescalate (crit -> warn), end (-> ok)."""

    kind: str
    t: float
    level: Level
    previous: Level
    aqs: float  # the window that caused it
    worst_aqs: float
    dominant_artifact: str
    started_at: float
    duration: float
    reason: str = ""
    extra: dict = field(default_factory=dict)

    def fields(self) -> dict:
        out = {
            "event": f"quality_incident_{self.kind}",
            "level": self.level.name.lower(),
            "previous": self.previous.name.lower(),
            "aqs": round(self.aqs, 3),
            "worst_aqs": round(self.worst_aqs, 3),
            "dominant_artifact": self.dominant_artifact,
            "duration_s": round(self.duration, 1),
        }
        if self.reason:
            out["reason"] = self.reason
        return out


def _vector(values: Sequence[float] | Mapping[str, float] | np.ndarray | None, default: float) -> np.ndarray:
    if values is None:
        return np.full(len(ARTIFACTS), default)
    if isinstance(values, Mapping):
        return np.array([float(values.get(name, 0.0)) for name in ARTIFACTS])
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if out.shape != (len(ARTIFACTS),):
        raise ValueError(f"expected {len(ARTIFACTS)} artifact values, got shape {out.shape}")
    return out


class _Streak:
    """Consecutive windows satisfying a condition, and when the streak began."""

    __slots__ = ("count", "since")

    def __init__(self) -> None:
        self.count, self.since = 0, 0.0

    def feed(self, t: float, hit: bool) -> None:
        if hit:
            if self.count == 0:
                self.since = t
            self.count += 1
        else:
            self.count = 0

    def holds(self, t: float, windows: int, seconds: float) -> bool:
        return self.count >= windows and t - self.since >= seconds


class QualityState:
    """Hysteresis for one stream. Not thread-safe: call from the thread that publishes its scores."""

    def __init__(self, config: QualityConfig | None = None) -> None:
        self.config = config or QualityConfig()
        self.level = Level.OK
        self._below = {Level.WARN: _Streak(), Level.CRIT: _Streak()}
        self._clear = {Level.WARN: _Streak(), Level.CRIT: _Streak()}
        self._incident_start: float | None = None
        self._worst = 1.0
        self._evidence = np.zeros(len(ARTIFACTS))

    @property
    def in_incident(self) -> bool:
        return self._incident_start is not None

    def dominant_artifact(self) -> str:
        """The artifact with the most evidence in the open (or last) incident; "none" without any."""
        if not self._evidence.any():
            return "none"
        return ARTIFACTS[int(np.argmax(self._evidence))]

    def update(self, t: float, aqs: float,
               probabilities: Sequence[float] | Mapping[str, float] | np.ndarray | None = None,
               intensities: Sequence[float] | Mapping[str, float] | np.ndarray | None = None) -> list[QualityEvent]:
        """One scored window at monotonic time ``t``; returns the state changes it caused."""
        cfg = self.config
        aqs = float(aqs)
        for lvl in (Level.WARN, Level.CRIT):
            threshold = cfg.threshold(lvl)
            self._below[lvl].feed(t, aqs < threshold)
            self._clear[lvl].feed(t, aqs >= threshold + cfg.exit_margin)

        target = self.level
        # Leaving: drop one level at a time while the current level has cleared.
        while target > Level.OK and self._clear[target].holds(t, cfg.exit_windows, cfg.exit_seconds):
            target = Level(target - 1)
            if target > Level.OK and not self._clear[target].holds(t, cfg.exit_windows, cfg.exit_seconds):
                break
        # Entering: the highest level whose streak holds (crit implies warn).
        for lvl in (Level.CRIT, Level.WARN):
            if lvl > target and self._below[lvl].holds(t, cfg.enter_windows, cfg.enter_seconds):
                target = lvl
                break

        bad = aqs < cfg.warn
        if not self.in_incident and target == Level.OK and not bad:
            self._reset_incident()  # no streak is building: nothing to remember
        else:  # an incident, or the streak that may open one: its windows count
            self._worst = min(self._worst, aqs)
            if bad:
                p = np.clip(_vector(probabilities, 0.0), 0.0, 1.0)
                s = np.clip(_vector(intensities, 1.0), 0.0, 1.0)
                self._evidence += p * s

        if target == self.level:
            return []
        previous, self.level = self.level, target
        if previous == Level.OK:
            # The incident began with the first window of the streak that opened it.
            self._incident_start = self._below[target].since
            kind = "start"
        elif target == Level.OK:
            kind = "end"
        else:
            kind = "escalate" if target > previous else "deescalate"
        event = self._event(kind, t, previous, aqs)
        if kind == "end":
            self._reset_incident()
        return [event]

    def close(self, t: float, reason: str = "closed") -> list[QualityEvent]:
        """End an open incident without a clear window (stream removed, daemon stopping)."""
        if not self.in_incident:
            return []
        previous, self.level = self.level, Level.OK
        event = self._event("end", t, previous, float("nan"), reason)
        self._reset_incident()
        for streak in (*self._below.values(), *self._clear.values()):
            streak.count = 0
        return [event]

    def _event(self, kind: str, t: float, previous: Level, aqs: float, reason: str = "") -> QualityEvent:
        start = self._incident_start if self._incident_start is not None else t
        return QualityEvent(kind=kind, t=t, level=self.level, previous=previous, aqs=aqs,
                            worst_aqs=self._worst, dominant_artifact=self.dominant_artifact(),
                            started_at=start, duration=t - start, reason=reason)

    def _reset_incident(self) -> None:
        self._incident_start = None
        self._worst = 1.0
        self._evidence = np.zeros(len(ARTIFACTS))
