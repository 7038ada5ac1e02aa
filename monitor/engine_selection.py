"""The daemon's engine: selected from the ``engine:`` section of its config, every skipped engine logged."""
from __future__ import annotations

import logging
from pathlib import Path

from monitor.config import EngineConfig

log = logging.getLogger(__name__)


def model_dir_of(config: EngineConfig, base_dir: Path | None = None) -> Path | None:
    """``engine.model_dir`` as a path (a relative one resolved against ``base_dir``), or None for the shipped models."""
    if config.model_dir is None:
        return None
    model_dir = Path(config.model_dir)
    return base_dir / model_dir if not model_dir.is_absolute() and base_dir is not None else model_dir


def load_engine(config: EngineConfig, base_dir: Path | None = None, warm_up_batch: int = 1):  # -> Selection
    """Select the engine from ``engine.prefer`` (or the default chain); log each skipped one.

    A relative ``engine.model_dir`` is resolved against ``base_dir`` (the config file's folder).
    Raises :class:`engines.base.EngineUnavailable` (listing every reason) when nothing works.
    """
    from engines.chain import select_engine

    selection = select_engine(config.prefer, model_dir=model_dir_of(config, base_dir), threads=config.threads, warm_up_batch=warm_up_batch)
    for skipped in selection.skipped:
        log.info("engine skipped", extra={"event": "engine_skipped", "engine_spec": skipped.spec, "reason": skipped.reason})
    info = selection.engine.info
    log.info("engine selected", extra={"event": "engine_selected", "engine": info.engine, "model": info.model,
                                       "provider": info.provider, "load_s": round(selection.load_seconds, 2)})
    return selection
