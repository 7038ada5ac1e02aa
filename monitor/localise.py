"""Where in the picture the damage is: per-fragment artifact maps for windows in trouble.

The AQS networks have no per-fragment output (their backbone's feature maps did not localise on
part-damaged frames: model card, "Where the damage is"); the classical engine's regressions applied
to each fragment's own features do. A map costs about twice a classical window score (~20 ms on one
core), so it is computed only for windows below their stream's quality warning threshold
(``quality.warn``, where an incident can start), at most one per stream every ``interval_s``, on the
scheduler thread, and handed to the observers in :attr:`~monitor.observers.WindowScore.artifact_map`
(``None`` for every other window). Only the snapshots' heatmaps use maps: with snapshots off the
daemon has no localiser.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from engines.base import EngineUnavailable
from engines.contract import sigmoid

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0


class Localiser:
    """Maps windows in trouble with the classical engine's per-fragment regressions."""

    def __init__(self, engine, interval_s: float = DEFAULT_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._below: dict[str, float] = {}  # stream -> its quality.warn
        self.maps = 0

    @classmethod
    def load(cls, model_dir: Path | None = None, **kwargs) -> "Localiser | None":
        """The localiser on the shipped classical model, or None (logged) when it cannot load."""
        from engines import classical

        try:
            return cls(classical.load(model_dir=model_dir), **kwargs)
        except EngineUnavailable as exc:
            log.warning("no artifact maps: %s", exc, extra={"event": "localiser_unavailable"})
            return None

    def watch(self, stream: str, warn_below: float) -> None:
        """Map windows of ``stream`` that score below ``warn_below`` (its ``quality.warn``)."""
        self._below[stream] = warn_below
        self._last.pop(stream, None)

    def forget(self, stream: str) -> None:
        self._below.pop(stream, None)
        self._last.pop(stream, None)

    def wanted(self, stream: str, aqs: float) -> bool:
        """True when a window of ``stream`` scoring ``aqs`` should get a map now."""
        if aqs >= self._below.get(stream, 0.0):
            return False
        last = self._last.get(stream)
        return last is None or self.clock() - last >= self.interval_s

    def locate(self, stream: str, window: np.ndarray) -> np.ndarray | None:
        """Per-fragment probabilities ``[10, 7, 7]`` of one ``[7, 3, 224, 224]`` window (None if it fails)."""
        self._last[stream] = self.clock()
        try:
            logits = self._engine.artifact_map(window[None])
        except Exception:  # noqa: BLE001 - a map is an extra: never lose the score over it
            log.exception("artifact map failed", extra={"event": "localiser_error"})
            return None
        self.maps += 1
        return sigmoid(logits[0])

