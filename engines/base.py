"""What every inference backend shares: how it declares itself, and the engine it loads.

Each backend module (listed in :data:`engines.chain.BACKEND_MODULES`) defines ``BACKEND``, a
:class:`Backend` saying what it needs and how to load it, and an engine class derived from
:class:`BaseEngine`. Nothing here imports an inference library.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from engines.contract import INPUT_SHAPE, ModelOutputs


class EngineUnavailable(Exception):
    """A backend cannot run here; the message says why (library missing, no GPU, bad file...)."""


@dataclass(frozen=True)
class EngineInfo:
    """What ``vqa_engine_info{engine,model,provider}`` publishes."""

    engine: str  # backend name: tensorrt, onnxruntime, torch, classical
    model: str  # model file or model name, e.g. aqs_effnet_b0.int8.onnx
    provider: str  # where it runs, e.g. CPUExecutionProvider, cuda:0, cpu


@runtime_checkable
class Engine(Protocol):
    """A loaded model. Construction (each backend's ``load``) raises :class:`EngineUnavailable`."""

    @property
    def info(self) -> EngineInfo: ...

    def warm_up(self, batch_size: int = 1) -> None:
        """Run a throw-away batch so the first real window does not pay for lazy set-up."""

    def infer(self, windows: np.ndarray) -> ModelOutputs:
        """Score ``uint8`` windows ``[N, 7, 3, 224, 224]``; returns outputs for N windows, checked against the contract."""

    def close(self) -> None:
        """Release the session, device memory and threads."""


def check_windows(windows: np.ndarray) -> np.ndarray:
    """``windows`` as an array, or ValueError unless it is ``uint8`` ``[N, 7, 3, 224, 224]``."""
    windows = np.asarray(windows)
    if windows.dtype != np.uint8 or windows.shape[1:] != INPUT_SHAPE:
        raise ValueError(f"expected uint8 windows [N, {', '.join(map(str, INPUT_SHAPE))}], got {windows.dtype} {windows.shape}")
    return windows


class BaseEngine:
    """The part of :class:`Engine` every backend shares: ``info``, ``warm_up``, the input check and the
    output check around the backend's own :meth:`_run`."""

    def __init__(self, info: EngineInfo) -> None:
        self._info = info
        # (model file, reason) for files of this backend passed over before this engine loaded, e.g. a
        # corrupt int8 file when the fp32 one worked; the chain reports them with the skipped engines
        self.fallbacks: list[tuple[str, str]] = []
        # the most windows worth scoring in one call (None: no limit below the scheduler's max_batch);
        # a smaller batch is published sooner, so a backend whose throughput stops growing sets it
        self.preferred_batch: int | None = None

    @property
    def info(self) -> EngineInfo:
        return self._info

    def warm_up(self, batch_size: int = 1) -> None:
        self.infer(np.zeros((max(1, batch_size), *INPUT_SHAPE), dtype=np.uint8))

    def infer(self, windows: np.ndarray) -> ModelOutputs:
        windows = check_windows(windows)
        return self._run(windows).validate(windows.shape[0])

    def _run(self, windows: np.ndarray) -> ModelOutputs:
        """Score checked windows; the backend's own work."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class LoadOptions:
    """What the chain hands every backend's loader (each backend reads only what it takes)."""

    model_dir: Path | None = None  # None: the shipped engines/models
    threads: int | None = None  # CPU inference threads; None: the backend's choice
    require_cuda: bool = False  # refuse to run on the CPU (set by the default chain, see Backend.cpu_skip_reason)


@dataclass(frozen=True)
class Backend:
    """One backend, declared once in its own module as ``BACKEND``."""

    name: str  # as written in engine.prefer
    load: Callable[[str | None, LoadOptions], BaseEngine]  # (model or None, options); raises EngineUnavailable
    libraries: tuple[str, ...] = ()  # modules it imports inside load; checked with find_spec first, not imported
    install_hint: str = "install it"  # shown when one of ``libraries`` is missing
    gpu_only: bool = False  # skipped, without importing anything, when no NVIDIA device is visible
    takes_model: bool = True  # False: ``backend`` alone, ``backend:model`` is refused
    takes_threads: bool = True  # False: ``engine.threads`` is refused when this backend is named
    # set: the default chain skips it, with this reason, on a machine without CUDA (it still runs on the
    # CPU when named in engine.prefer)
    cpu_skip_reason: str | None = None
    # set: logged as a warning, once per process, when this backend is the selected engine
    selected_warning: str | None = None
