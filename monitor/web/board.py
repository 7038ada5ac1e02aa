"""What the web page shows, kept in memory per stream and bounded: the latest score, an hour of AQS,
recent signal changes and incidents; pictures go to the :class:`monitor.snapshots.SnapshotWriter`.

Fed from three places, each cheap: the readers (:meth:`on_frame` keeps a reference to the latest
frame, :meth:`on_up`/:meth:`on_down`), the quality tracker (:meth:`on_quality`, every scored window
with the incident events it caused) and the signal checks (:meth:`on_signals`).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from engines.contract import ARTIFACTS
from engines.sampler import Planes
from monitor.ingest import IngestObserver
from monitor.quality_state import Level, QualityEvent
from monitor.signals import SignalEvent
from monitor.snapshots import SnapshotJob, SnapshotWriter, dominant_cells

HISTORY_S = 3600.0
HISTORY_POINTS = 720  # one point per 5 s over the hour
SIGNAL_HISTORY = 200
INCIDENTS_IN_MEMORY = 50
PICTURE_CHECKS = ("black", "frozen")  # signal incidents that get a snapshot
TOP_ARTIFACTS = 3


@dataclass
class _Incident:
    record: dict[str, Any]
    worst: float = float("inf")
    planes: Planes | None = None  # the worst window's key frame (one reference per open incident)
    artifact_map: np.ndarray | None = None  # the latest map of a window of this incident


@dataclass
class _StreamView:
    up: bool = False
    down_reason: str = "connecting"
    planes: Planes | None = None
    last_score: dict[str, Any] | None = None
    level: str = "ok"
    signals: dict[str, bool] = field(default_factory=dict)
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    signal_history: deque = field(default_factory=lambda: deque(maxlen=SIGNAL_HISTORY))
    incidents: deque = field(default_factory=lambda: deque(maxlen=INCIDENTS_IN_MEMORY))
    open_quality: _Incident | None = None
    open_signals: dict[str, _Incident] = field(default_factory=dict)
    last_live: float = float("-inf")
    last_point: float = float("-inf")


def _new_id(kind: str) -> str:
    return f"{int(time.time() * 1000):013d}-{kind}"


def _map_summary(artifact_map: np.ndarray | None) -> dict[str, Any]:
    """The map as the API shows it: per grid cell (row 0 at the top) the leading artifact and its probability."""
    if artifact_map is None:
        return {}
    index, probability = dominant_cells(artifact_map)
    return {"map_artifact": [[ARTIFACTS[int(i)] for i in row] for row in index],
            "map_probability": [[round(float(p), 3) for p in row] for row in probability],
            "map": np.round(np.asarray(artifact_map, dtype=np.float64), 3).tolist()}  # [10][7][7], ARTIFACTS order


def _top_artifacts(probabilities: tuple[float, ...]) -> list[list[Any]]:
    order = np.argsort(np.asarray(probabilities))[::-1][:TOP_ARTIFACTS]
    return [[ARTIFACTS[int(i)], round(float(probabilities[int(i)]), 3)] for i in order]


class StreamBoard(IngestObserver):
    """Per-stream state for the page; ``names()`` gives the running streams (others are forgotten)."""

    def __init__(self, names: Callable[[], list[str]], writer: SnapshotWriter | None = None,
                 live_interval_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.names = names
        self.writer = writer
        self.live_interval_s = live_interval_s
        self.clock = clock
        self._streams: dict[str, _StreamView] = {}
        self._lock = threading.Lock()

    def _view(self, stream: str) -> _StreamView:
        view = self._streams.get(stream)
        if view is None:
            view = self._streams[stream] = _StreamView()
        return view

    # readers -----------------------------------------------------------------------------------------
    def on_frame(self, stream: str, planes: Planes, now: float) -> None:
        self._view(stream).planes = planes  # a reference only: the encoder thread converts it if needed

    def on_up(self, stream: str, now: float) -> None:
        with self._lock:
            view = self._view(stream)
            view.up, view.down_reason = True, ""
            view.signal_history.appendleft({"time": time.time(), "check": "stream_up", "active": True})

    def on_down(self, stream: str, reason: str, now: float) -> None:
        with self._lock:
            view = self._view(stream)
            view.up, view.down_reason, view.planes = False, reason, None
            view.signal_history.appendleft({"time": time.time(), "check": "stream_up", "active": False,
                                            "reason": reason})

    # quality tracker (scheduler thread) --------------------------------------------------------------
    def on_quality(self, score: Any, events: list[QualityEvent], level: Level) -> None:
        now = self.clock()
        with self._lock:
            view = self._view(score.stream)
            view.level = level.name.lower()
            view.last_score = {"aqs": round(score.aqs, 4), "level": score.level, "dominant_artifact": score.dominant_artifact,
                               "artifacts": {k: round(v, 4) for k, v in score.artifacts.items()},
                               "has_map": score.artifact_map is not None, "engine": score.engine, "time": time.time()}
            if now - view.last_point >= HISTORY_S / HISTORY_POINTS:
                view.last_point = now
                view.history.append([round(time.time(), 1), round(score.aqs, 4), _top_artifacts(score.probabilities)])
            planes = view.planes
            for event in events:
                self._quality_event(score.stream, view, event)
            incident = view.open_quality
            if incident is not None:
                self._track_worst(score, view.last_score["artifacts"], incident, planes)
            live_due = planes is not None and now - view.last_live >= self.live_interval_s
            if live_due:
                view.last_live = now
        if live_due:
            self._submit(score.stream, "live", None, planes, None)

    def _track_worst(self, score: Any, artifacts: dict[str, float], incident: _Incident, planes: Planes | None) -> None:
        """Picture the incident's worst window; the map (computed only now and then, see monitor.localise)
        is the window's own or the incident's latest, drawn over the worst picture."""
        new_map = score.artifact_map is not None
        if new_map:
            incident.artifact_map = score.artifact_map
        if score.aqs < incident.worst and planes is not None:
            incident.worst, incident.planes = score.aqs, planes
            incident.record.update(worst_aqs=round(score.aqs, 4), dominant_artifact=score.dominant_artifact,
                                   artifacts=artifacts)
        elif not (new_map and not incident.record["has_heatmap"] and incident.planes is not None):
            return
        incident.record.update(has_picture=True, has_heatmap=incident.artifact_map is not None,
                               **_map_summary(incident.artifact_map))
        self._submit(score.stream, "incident", incident.record, incident.planes, incident.artifact_map)

    def _quality_event(self, stream: str, view: _StreamView, event: QualityEvent) -> None:
        if event.kind == "start":
            record = {"id": _new_id("quality"), "stream": stream, "kind": "quality", "level": event.level.name.lower(),
                      "started": time.time(), "ended": None, "worst_aqs": None, "dominant_artifact": event.dominant_artifact,
                      "has_picture": False, "has_heatmap": False, "new": True}
            view.open_quality = _Incident(record)
            view.incidents.appendleft(record)
        elif view.open_quality is not None:
            record = view.open_quality.record
            if event.kind == "escalate":
                record["level"] = event.level.name.lower()
            elif event.kind == "end":
                record.update(ended=time.time(), reason=event.reason or None, new=False)
                self._submit(stream, "record", record, None, None)
                view.open_quality = None

    def on_closed(self, stream: str, events: list[QualityEvent]) -> None:
        """The stream stopped (removed, restarted, daemon stopping): its open incidents end."""
        with self._lock:
            view = self._streams.get(stream)
            if view is None:
                return
            for event in events:
                self._quality_event(stream, view, event)
            for check in list(view.open_signals):
                record = view.open_signals.pop(check).record
                record.update(ended=time.time(), reason="stream stopped", new=False)
                self._submit(stream, "record", record, None, None)
            view.level = "ok"

    # signal checks (reader threads, main loop) -------------------------------------------------------
    def on_signals(self, stream: str, events: list[SignalEvent], planes: Planes | None) -> None:
        with self._lock:
            view = self._view(stream)
            for event in events:
                view.signals[event.check] = event.active
                view.signal_history.appendleft({"time": time.time(), "check": event.check, "active": event.active})
                if event.check not in PICTURE_CHECKS:
                    continue
                if event.active:
                    record = {"id": _new_id(event.check), "stream": stream, "kind": event.check, "level": event.check,
                              "started": time.time(), "ended": None, "has_picture": planes is not None,
                              "has_heatmap": False, "new": True}
                    view.open_signals[event.check] = _Incident(record)
                    view.incidents.appendleft(record)
                    self._submit(stream, "incident", record, planes, None)
                elif event.check in view.open_signals:
                    record = view.open_signals.pop(event.check).record
                    record.update(ended=time.time(), new=False)
                    self._submit(stream, "record", record, None, None)

    def _submit(self, stream: str, kind: str, record: dict[str, Any] | None, planes: Planes | None,
                artifact_map: np.ndarray | None) -> None:
        if self.writer is None:
            return
        self.writer.submit(SnapshotJob(stream, kind, planes, dict(record or {}), artifact_map))
        if record is not None:
            record["new"] = False  # pruning runs once, when the incident is first written

    # reading (HTTP threads) --------------------------------------------------------------------------
    def summaries(self) -> list[dict[str, Any]]:
        """Every running stream, the ones in trouble first (down, crit, warn, black/frozen, the rest)."""
        names = self.names()
        with self._lock:
            for gone in set(self._streams) - set(names):
                del self._streams[gone]
            rows = [self._summary(name, self._view(name)) for name in names]
        return sorted(rows, key=lambda row: (row["rank"], row["name"]))

    def detail(self, stream: str) -> dict[str, Any] | None:
        if stream not in self.names():
            return None
        with self._lock:
            view = self._view(stream)
            out = self._summary(stream, view)
            out["history"] = list(view.history)
            out["signal_history"] = list(view.signal_history)
            memory = [dict(r) for r in view.incidents]
        on_disk = self.writer.incidents(stream) if self.writer is not None else []
        known = {r["id"] for r in memory}
        incidents = memory + [r for r in on_disk if r.get("id") not in known]  # earlier runs' incidents too
        for record in incidents:
            record.pop("new", None)
            self._only_written(stream, record)
        out["incidents"] = sorted(incidents, key=lambda r: r.get("id", ""), reverse=True)
        return out

    def _summary(self, name: str, view: _StreamView) -> dict[str, Any]:
        signal_trouble = [check for check in PICTURE_CHECKS if view.signals.get(check)]
        if not view.up:
            rank, state = 0, "down"
        elif view.level == "crit":
            rank, state = 1, "crit"
        elif view.level == "warn":
            rank, state = 2, "warn"
        elif signal_trouble:
            rank, state = 3, signal_trouble[0]
        else:
            rank, state = 4, "ok"
        last_incident = view.incidents[0] if view.incidents else None
        return {
            "name": name, "up": view.up, "down_reason": view.down_reason or None, "state": state, "rank": rank,
            "quality_state": view.level, "signals": {k: v for k, v in view.signals.items() if v},
            "aqs": view.last_score["aqs"] if view.last_score else None,
            "dominant_artifact": view.last_score["dominant_artifact"] if view.last_score else None,
            "last_score": view.last_score,
            "last_incident": None if last_incident is None else {
                "id": last_incident["id"], "kind": last_incident["kind"], "started": last_incident["started"],
                "ended": last_incident["ended"]},
            "has_live_picture": self.writer is not None and self.writer.has_picture(name, "live"),
        }

    def _only_written(self, stream: str, record: dict[str, Any]) -> None:
        """Claim an incident's pictures only once the writer has them on disk (the page would get a 404)."""
        if self.writer is None or not record.get("id"):
            return
        record["has_picture"] = bool(record.get("has_picture")) and self.writer.has_picture(stream, record["id"])
        record["has_heatmap"] = record["has_picture"] and bool(record.get("has_heatmap")) and \
            self.writer.has_picture(stream, record["id"] + ".heat")
