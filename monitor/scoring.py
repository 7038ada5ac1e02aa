"""From model outputs to scores: the one place the daemon selects its engine and computes AQS.

:func:`load_engine` wraps :func:`engines.chain.select_engine` (logging every engine it skipped, one
line each); :func:`score_outputs` turns a batch of :class:`~engines.contract.ModelOutputs` into
:class:`WindowScore` objects with the AQS of :mod:`engines.aqs`. ``vqa-monitor score`` can use
both, so the daemon and the offline command score identically.

Per-window observers (:class:`WindowObserver`) receive every published score: the metrics
publisher is one, the quality state (hysteresis, incidents) can be another.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.aqs import aqs as aqs_fn
from engines.aqs import dominant_artifact, quality_level
from engines.contract import ARTIFACTS, ModelOutputs
from monitor.config import EngineConfig

log = logging.getLogger(__name__)


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


def score_outputs(outputs: ModelOutputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(aqs [N], probabilities [N, 10], intensities [N, 10]) for a batch of model outputs."""
    probabilities = outputs.artifact_probabilities
    intensities = np.clip(np.asarray(outputs.intensity, dtype=np.float32), 0.0, 1.0)
    return aqs_fn(outputs.quality, probabilities, intensities), probabilities, intensities


def load_engine(config: EngineConfig, base_dir: Path | None = None, warm_up_batch: int = 1):  # -> Selection
    """Select the engine from ``engine.prefer`` (or the default chain); log each skipped one.

    Raises :class:`engines.base.EngineUnavailable` (listing every reason) when nothing works.
    """
    from engines.chain import select_engine

    model_dir = None
    if config.model_dir is not None:
        model_dir = Path(config.model_dir)
        if not model_dir.is_absolute() and base_dir is not None:
            model_dir = base_dir / model_dir
    selection = select_engine(config.prefer, model_dir=model_dir, threads=config.threads, warm_up_batch=warm_up_batch)
    for skipped in selection.skipped:
        log.info("engine skipped", extra={"event": "engine_skipped", "engine_spec": skipped.spec, "reason": skipped.reason})
    info = selection.engine.info
    log.info("engine selected", extra={"event": "engine_selected", "engine": info.engine, "model": info.model,
                                       "provider": info.provider, "load_s": round(selection.load_seconds, 2)})
    return selection
