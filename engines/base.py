"""The small API every inference backend implements (one file per backend in ``engines/``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from engines.contract import ModelOutputs


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
        """Score ``uint8`` windows ``[N, 7, 3, 224, 224]``; returns outputs for N windows."""

    def close(self) -> None:
        """Release the session, device memory and threads."""
