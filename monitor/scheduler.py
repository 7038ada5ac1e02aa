"""Scheduling: windows of every stream, batched into one shared engine.

One scheduler thread takes complete windows from the streams' rings round-robin (one per stream per
round, so a busy stream cannot starve the others) into a preallocated batch of ``max_batch`` windows.
A batch is scored as soon as it is full, or ``max_wait_s`` after its first window arrived. The
engine call runs on this thread; ONNX Runtime releases the GIL, so the readers keep decoding and
sampling the next windows meanwhile. Windows the scheduler cannot keep up with are dropped by the
rings (oldest first, counted), never queued without bound.

Other threads change the batching with :meth:`Scheduler.reconfigure` (an immutable
:class:`Batching` swapped in whole, read once per batch) and the engine with
:meth:`Scheduler.swap_engine`; both take effect from the next batch.

Each scored window is published to the metrics and handed to every :class:`WindowObserver`.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from engines.aqs import score_outputs
from engines.base import Engine
from engines.contract import INPUT_SHAPE
from monitor.localise import Localiser
from monitor.metrics import Metrics, StreamMetrics
from monitor.observers import WindowObserver, WindowScore
from monitor.windows import WindowMeta, WindowRing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batching:
    """How batches are formed: at most ``max_batch`` windows, scored ``max_wait_s`` after the first."""

    max_batch: int
    max_wait_s: float


@dataclass(frozen=True)
class ScheduledStream:
    """What the scheduler needs of a stream."""

    name: str
    ring: WindowRing
    metrics: StreamMetrics


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        *,
        max_batch: int = 16,
        max_wait_s: float = 0.1,
        observers: Sequence[WindowObserver] = (),
        clock: Callable[[], float] = time.monotonic,
        localiser: Localiser | None = None,
    ) -> None:
        self.metrics = metrics
        self.localiser = localiser
        self.capacity = max_batch  # the batch buffer's size: max_batch can never exceed it
        self._batching = Batching(max_batch, max_wait_s)
        self.observers = list(observers)
        self.clock = clock
        self._engine = engine
        self._engine_lock = threading.Lock()
        self._streams: tuple[ScheduledStream, ...] = ()
        self._rr = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._batch = np.zeros((max_batch, *INPUT_SHAPE), dtype=np.uint8)
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self.batches = 0
        self.windows = 0
        self.heartbeat = clock()  # last time the loop came round (it waits at most 0.5 s when idle)
        self._errors = 0
        self._set_engine_info(engine)

    # wiring ---------------------------------------------------------------------------------------
    def notify(self) -> None:
        """A ring completed a window (called from reader threads)."""
        self._wake.set()

    def set_streams(self, streams: Sequence[ScheduledStream]) -> None:
        self._streams = tuple(streams)
        self._wake.set()

    @property
    def batching(self) -> Batching:
        return self._batching

    @property
    def max_batch(self) -> int:
        return self._batching.max_batch

    @property
    def max_wait_s(self) -> float:
        return self._batching.max_wait_s

    def reconfigure(self, *, max_batch: int, max_wait_s: float) -> Batching:
        """Batch with these settings from the next batch on (any thread); ``max_batch`` is capped at
        :attr:`capacity`. Returns the settings now in force."""
        self._batching = Batching(min(max_batch, self.capacity), max_wait_s)  # one reference swap: atomic
        self._wake.set()
        return self._batching

    @property
    def engine(self) -> Engine:
        return self._engine

    def swap_engine(self, engine: Engine) -> Engine:
        """Use ``engine`` from the next batch on; returns the previous one (the caller closes it)."""
        with self._engine_lock:
            old, self._engine = self._engine, engine
        self._set_engine_info(engine)
        return old

    def _set_engine_info(self, engine: Engine) -> None:
        info = engine.info
        self.metrics.set_engine(info.engine, info.model, info.provider)

    # lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def responsive(self, stall_s: float) -> bool:
        """The thread runs and its loop came round within ``stall_s`` (a hung engine call fails this)."""
        return self._thread.is_alive() and self.clock() - self.heartbeat < stall_s

    # loop ------------------------------------------------------------------------------------------
    def _gather(self, taken: list[tuple[ScheduledStream, WindowMeta]], max_batch: int) -> None:
        """Fill the batch round-robin across streams, one window per stream per round."""
        streams = self._streams
        if not streams:
            return
        while len(taken) < max_batch:
            progress = False
            start = self._rr % len(streams)
            for k in range(len(streams)):
                if len(taken) >= max_batch:
                    break
                stream = streams[(start + k) % len(streams)]
                meta = stream.ring.pop_into(self._batch[len(taken)])
                if meta is not None:
                    taken.append((stream, meta))
                    progress = True
            self._rr += 1
            if not progress:
                return

    def _run(self) -> None:
        while not self._stop.is_set():
            self.heartbeat = self.clock()
            self._wake.clear()
            batching = self._batching
            size = self._batch_size(batching)
            taken: list[tuple[ScheduledStream, WindowMeta]] = []
            self._gather(taken, size)
            if not taken:
                self._wake.wait(0.5)
                continue
            deadline = self.clock() + batching.max_wait_s
            while len(taken) < size and not self._stop.is_set():
                remaining = deadline - self.clock()
                if remaining <= 0:
                    break
                self._wake.wait(remaining)
                self._wake.clear()
                self._gather(taken, size)
            if self._stop.is_set():
                break
            self._score(taken)

    def _batch_size(self, batching: Batching) -> int:
        """``max_batch``, or less where the engine scores no faster in bigger batches (its
        ``preferred_batch``): windows are then published a smaller batch at a time, sooner."""
        preferred = getattr(self._engine, "preferred_batch", None)
        return min(batching.max_batch, preferred) if preferred else batching.max_batch

    def _artifact_map(self, maps: np.ndarray | None, i: int, stream: str, aqs: float) -> np.ndarray | None:
        """The engine's map of window ``i``, else the localiser's for a window in trouble, else None."""
        if maps is not None:
            return maps[i]
        if self.localiser is not None and self.localiser.wanted(stream, aqs):
            return self.localiser.locate(stream, self._batch[i])
        return None

    def _score(self, taken: list[tuple[ScheduledStream, WindowMeta]]) -> None:
        n = len(taken)
        with self._engine_lock:
            engine = self._engine
            name = engine.info.engine
            started = self.clock()
            try:
                outputs = engine.infer(self._batch[:n])  # checked against the contract (Engine.infer)
            except Exception:  # noqa: BLE001 - a failing batch is dropped and counted; the loop goes on
                self._errors += 1
                if self._errors <= 3 or self._errors % 100 == 0:
                    log.exception("inference failed; batch dropped", extra={"event": "inference_error",
                                                                             "windows": n, "count": self._errors})
                for stream, _ in taken:
                    stream.metrics.dropped.inc()
                return
            elapsed = self.clock() - started
        self.metrics.inference_seconds.labels(name).observe(elapsed)
        self.metrics.inference_batch.labels(name).observe(n)
        scores, probabilities, intensities = score_outputs(outputs)
        maps = outputs.artifact_map_probabilities
        now = self.clock()
        wall = time.time()
        for i, (stream, meta) in enumerate(taken):
            score = WindowScore(
                stream=stream.name, seq=meta.seq, aqs=float(scores[i]), quality=float(outputs.quality[i]),
                probabilities=tuple(float(p) for p in probabilities[i]),
                intensities=tuple(float(s) for s in intensities[i]),
                last_frame_time=meta.last_frame_time, published_time=now, engine=name,
                artifact_map=self._artifact_map(maps, i, stream.name, float(scores[i])),
            )
            if not self.metrics.publish_score(stream.metrics, score.aqs, score.quality,
                                              score.probabilities, score.intensities):
                continue  # stream removed meanwhile
            stream.metrics.scored.inc()
            stream.metrics.last_scored.set(wall)
            stream.metrics.latency.observe(max(0.0, now - meta.last_frame_time))
            for observer in self.observers:
                try:
                    observer.on_window(score)
                except Exception:  # noqa: BLE001
                    log.exception("window observer failed", extra={"stream": stream.name, "event": "observer_error"})
        self.batches += 1
        self.windows += n
