"""Snapshots: small JPEG pictures of what a stream showed, for the web page (:mod:`monitor.web`).

Per stream, under ``snapshots.dir`` (``$STATE_DIRECTORY/snapshots`` under systemd)::

    <stream>/live.jpg                      the latest scored window's key frame (at most every live_interval_s)
    <stream>/incidents/<id>.json           one incident: kind, level, times, worst AQS, artifacts
    <stream>/incidents/<id>.jpg            the worst window's key frame
    <stream>/incidents/<id>.heat.jpg       the same with the artifact map drawn over the fragment grid

The key frame is the stream's latest decoded frame when its window is scored (the scheduler gets no
pixels; the reader keeps a reference to one frame per stream, no copy). Readers and the scheduler only
put a job on a bounded queue; one worker thread scales, draws and encodes (Pillow) and writes each file
atomically. A full queue drops the job and counts it (:attr:`SnapshotWriter.dropped`). Retention: per
stream at most ``max_incidents`` incidents, none older than ``max_age_hours``, pruned after every new
incident and once an hour.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import Field

from engines.contract import ARTIFACTS
from engines.sampler import Planes
from monitor.strict import Strict

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
_INCIDENT_ID = re.compile(r"^[0-9]{13}-[a-z_]+$")

# One colour per artifact (ARTIFACTS order), shared with the page's legend (monitor.web).
ARTIFACT_COLOURS: dict[str, str] = dict(zip(ARTIFACTS, (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4")))
HEAT_MIN_PROBABILITY = 0.5  # fragments below this are left clear


class SnapshotsConfig(Strict):
    """The ``snapshots:`` section."""

    enabled: bool = Field(True, strict=True, description=(
        "keep JPEG snapshots: each stream's latest key frame and the worst window of every quality (warn/crit) "
        "and signal (black, frozen) incident, with its artifact heatmap when the engine localises"))
    dir: str | None = Field(None, description=(
        "folder for the snapshots (relative to the config file's folder); null = `$STATE_DIRECTORY/snapshots` "
        "(systemd's `StateDirectory=`), else `~/.local/state/vqa-monitor/snapshots`. Unusable: logged, no snapshots"))
    width: int = Field(640, ge=160, le=1920, strict=True, description="width of the pictures in pixels (height follows the aspect ratio)")
    quality: int = Field(80, ge=30, le=95, strict=True, description="JPEG quality")
    live_interval_s: float = Field(2.0, ge=0.2, le=3600, strict=True, description=(
        "the live picture of a stream is renewed at most this often"))
    max_incidents: int = Field(50, ge=1, le=10000, strict=True, description="incidents kept per stream (the oldest go first)")
    max_age_hours: float = Field(168.0, gt=0, le=87600, strict=True, description="incidents older than this are deleted")
    queue_size: int = Field(32, ge=1, le=1024, strict=True, description=(
        "pictures waiting for the encoder thread; when full, new ones are dropped and counted"))


def snapshot_root(config: SnapshotsConfig, base_dir: Path | None, environ: Any = os.environ) -> Path:
    if config.dir is not None:
        path = Path(os.path.expanduser(config.dir))
        return path if path.is_absolute() or base_dir is None else base_dir / path
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "snapshots"
    return Path.home() / ".local" / "state" / "vqa-monitor" / "snapshots"


def stream_dirname(stream: str) -> str:
    """A file name for any stream name (ladder variants have a slash)."""
    return urllib.parse.quote(stream, safe="")


def valid_incident_id(incident: str) -> bool:
    return bool(_INCIDENT_ID.fullmatch(incident))


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------
def planes_to_rgb(planes: Planes, width: int) -> np.ndarray:
    """The frame scaled to ``width`` (aspect kept, never up), BT.601, as RGB uint8 [H, W, 3]."""
    from PIL import Image

    width = min(width, planes.width)
    height = max(2, round(planes.height * width / planes.width))
    size = (width, height)

    def scaled(plane: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(np.ascontiguousarray(plane)).resize(size, Image.BILINEAR), dtype=np.float32)

    y, u, v = scaled(planes.y), scaled(planes.u) - 128.0, scaled(planes.v) - 128.0
    if planes.full_range:
        rgb = (y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u)
    else:
        y = (y - 16.0) * 1.164383
        rgb = (y + 1.596027 * v, y - 0.391762 * u - 0.812968 * v, y + 2.017232 * u)
    return np.clip(np.rint(np.stack(rgb, axis=-1)), 0, 255).astype(np.uint8)


def dominant_cells(artifact_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per grid cell: the index of the most probable artifact and its probability ([7, 7] each)."""
    artifact_map = np.asarray(artifact_map, dtype=np.float32)
    return artifact_map.argmax(axis=0), artifact_map.max(axis=0)


def draw_heatmap(rgb: np.ndarray, artifact_map: np.ndarray) -> Any:
    """``rgb`` with every grid cell whose leading artifact is likely tinted in that artifact's colour
    (stronger = more likely) and labelled; returns a PIL image."""
    from PIL import Image, ImageColor, ImageDraw

    picture = Image.fromarray(rgb).convert("RGBA")
    overlay = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    index, probability = dominant_cells(artifact_map)
    rows, cols = index.shape
    w, h = picture.size
    for r in range(rows):
        for c in range(cols):
            p = float(probability[r, c])
            if not p >= HEAT_MIN_PROBABILITY:  # also NaN
                continue
            box = (c * w // cols, r * h // rows, (c + 1) * w // cols - 1, (r + 1) * h // rows - 1)
            colour = ImageColor.getrgb(ARTIFACT_COLOURS[ARTIFACTS[int(index[r, c])]])
            draw.rectangle(box, fill=(*colour, int(40 + 120 * min(p, 1.0))), outline=(*colour, 230), width=2)
            draw.text((box[0] + 3, box[1] + 2), f"{ARTIFACTS[int(index[r, c])][:5]} {p:.0%}", fill=(255, 255, 255, 255))
    return Image.alpha_composite(picture, overlay).convert("RGB")


def encode_jpeg(picture: Any, quality: int) -> bytes:
    import io

    from PIL import Image

    if isinstance(picture, np.ndarray):
        picture = Image.fromarray(picture)
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=quality, optimize=False)
    return out.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------
# The writer: a bounded queue and one thread
# ------------------------------------------------------------------------------------------------
@dataclass
class SnapshotJob:
    stream: str
    kind: str  # live | incident | record
    planes: Planes | None = None
    incident: dict[str, Any] = field(default_factory=dict)
    artifact_map: np.ndarray | None = None


class SnapshotWriter:
    """Encodes and writes snapshots on its own thread; :meth:`submit` never blocks."""

    def __init__(self, config: SnapshotsConfig, root: Path, on_result: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.root = root
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self._on_result = on_result  # called with "written", "dropped" or "failed" (the daemon counts them)
        self.encode_seconds = 0.0  # total time spent scaling, drawing and encoding
        self._queue: queue.Queue[SnapshotJob | None] = queue.Queue(maxsize=config.queue_size)
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self._last_prune = 0.0

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def submit(self, job: SnapshotJob) -> bool:
        try:
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            self._count("dropped")
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("snapshot queue full; picture dropped", extra={
                    "event": "snapshot_dropped", "stream": job.stream, "dropped_total": self.dropped})
            return False

    def wait_idle(self, timeout: float) -> bool:
        """True once every queued job is done (for tests and the bench)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    def stream_dir(self, stream: str) -> Path:
        return self.root / stream_dirname(stream)

    def _count(self, result: str) -> None:
        setattr(self, result, getattr(self, result) + 1)
        if self._on_result is not None:
            self._on_result(result)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._do(job)
                if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
                    self.prune_all()
            except Exception as exc:  # noqa: BLE001 - a full disk or a bad frame must not end the thread
                self._count("failed")
                log.warning("snapshot failed", extra={"event": "snapshot_failed", "stream": job.stream if job else "-",
                                                      "error": f"{type(exc).__name__}: {exc}"})
            finally:
                self._queue.task_done()

    def _do(self, job: SnapshotJob) -> None:
        directory = self.stream_dir(job.stream)
        if job.kind == "live":
            assert job.planes is not None
            directory.mkdir(parents=True, exist_ok=True)
            _write_atomic(directory / "live.jpg", self._encode(job.planes))
            self._count("written")
            return
        incidents = directory / "incidents"
        incidents.mkdir(parents=True, exist_ok=True)
        incident_id = job.incident["id"]
        if job.kind == "incident" and job.planes is not None:
            started = time.perf_counter()
            rgb = planes_to_rgb(job.planes, self.config.width)
            _write_atomic(incidents / f"{incident_id}.jpg", encode_jpeg(rgb, self.config.quality))
            if job.artifact_map is not None:
                _write_atomic(incidents / f"{incident_id}.heat.jpg",
                              encode_jpeg(draw_heatmap(rgb, job.artifact_map), self.config.quality))
            self.encode_seconds += time.perf_counter() - started
            self._count("written")
        _write_atomic(incidents / f"{incident_id}.json", json.dumps(job.incident).encode())
        if job.kind == "incident" and job.incident.get("new"):
            self.prune(job.stream)

    def _encode(self, planes: Planes) -> bytes:
        started = time.perf_counter()
        data = encode_jpeg(planes_to_rgb(planes, self.config.width), self.config.quality)
        self.encode_seconds += time.perf_counter() - started
        return data

    # retention -------------------------------------------------------------------------------------
    def prune_all(self) -> None:
        self._last_prune = time.monotonic()
        if not self.root.is_dir():
            return
        for directory in self.root.iterdir():
            if directory.is_dir():
                self.prune(urllib.parse.unquote(directory.name))

    def prune(self, stream: str) -> None:
        """Keep the newest ``max_incidents`` incidents of ``stream``, none older than ``max_age_hours``."""
        incidents = self.stream_dir(stream) / "incidents"
        if not incidents.is_dir():
            return
        ids = sorted({p.name.split(".", 1)[0] for p in incidents.iterdir() if valid_incident_id(p.name.split(".", 1)[0])},
                     reverse=True)  # ids start with the start time in ms: newest first
        oldest_ms = (time.time() - self.config.max_age_hours * 3600) * 1000
        doomed = ids[self.config.max_incidents:] + [i for i in ids[:self.config.max_incidents] if int(i[:13]) < oldest_ms]
        for incident_id in doomed:
            for suffix in (".json", ".jpg", ".heat.jpg"):
                (incidents / f"{incident_id}{suffix}").unlink(missing_ok=True)

    # reading (the web page) ------------------------------------------------------------------------
    def incidents(self, stream: str) -> list[dict[str, Any]]:
        """The stream's incident records on disk, newest first."""
        incidents = self.stream_dir(stream) / "incidents"
        out = []
        if incidents.is_dir():
            for path in sorted(incidents.glob("*.json"), reverse=True)[: self.config.max_incidents]:
                try:
                    out.append(json.loads(path.read_text()))
                except (OSError, ValueError):
                    continue
        return out

    def picture(self, stream: str, name: str) -> bytes | None:
        """``live``, ``ID`` or ``ID.heat``: the JPEG bytes, or None."""
        path = self._picture_path(stream, name)
        try:
            return None if path is None else path.read_bytes()
        except OSError:
            return None

    def has_picture(self, stream: str, name: str) -> bool:
        """Whether :meth:`picture` would find it now (the worker writes pictures some time after they are asked for)."""
        path = self._picture_path(stream, name)
        return path is not None and path.is_file()

    def _picture_path(self, stream: str, name: str) -> Path | None:
        directory = self.stream_dir(stream)
        if name == "live":
            return directory / "live.jpg"
        incident_id, _, heat = name.partition(".")
        if not valid_incident_id(incident_id) or heat not in ("", "heat"):
            return None
        return directory / "incidents" / f"{name}.jpg"
