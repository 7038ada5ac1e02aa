"""Torch definitions of the AQS models (needed by training, export and the torch engine).

``build_model(name)`` is the one registry: ``aqs_effnet_b0`` and ``aqs_effnet_lite0`` (EfficientNet-B0
and its integer-friendly Lite0 variant, which can start from ImageNet weights; their trunks also read
the classical engine's features, computed in the graph) and ``aqs_mnv3_small`` (the light fallback),
same inputs and outputs (see :mod:`engines.contract`).

Importing this package does not import torch, so the model names (:data:`MODEL_NAMES`) can validate
a configuration on a machine without it; :func:`build_model` and the classes exported here
(``AQSNet``, ``EfficientNetB0``...) import their torch modules on first use.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engines.architectures.aqs_net import AQSNet

# model name -> "module.Backbone" inside this package
BACKBONES: dict[str, str] = {
    "aqs_effnet_b0": "efficientnet.EfficientNetB0",
    "aqs_effnet_lite0": "efficientnet.EfficientNetLite0",
    "aqs_mnv3_small": "mobilenetv3.MobileNetV3Small",
}
# models whose trunk also reads :class:`~engines.architectures.statistics.ClassicalStatistics`
WITH_STATISTICS = frozenset({"aqs_effnet_b0", "aqs_effnet_lite0"})
MODEL_NAMES: tuple[str, ...] = tuple(BACKBONES)

# names exported from this package -> the module that defines them (imported when first asked for)
_EXPORTS = {
    "AQSNet": "aqs_net",
    "DEFAULT_KEY_FRAMES": "aqs_net",
    "EfficientNetB0": "efficientnet",
    "EfficientNetLite0": "efficientnet",
    "MobileNetV3Small": "mobilenetv3",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def build_model(name: str, key_frames: Sequence[int] | None = None) -> AQSNet:
    """A freshly initialised AQS model by registry name; ``key_frames`` default: the middle frame."""
    try:
        module, backbone = BACKBONES[name].split(".")
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}") from None
    from engines.architectures.aqs_net import DEFAULT_KEY_FRAMES, AQSNet  # noqa: F811 - the torch import

    trunk = getattr(importlib.import_module(f"{__name__}.{module}"), backbone)()
    frames = DEFAULT_KEY_FRAMES if key_frames is None else key_frames
    return AQSNet(trunk, key_frames=frames, statistics=name in WITH_STATISTICS)


__all__ = ["AQSNet", "BACKBONES", "DEFAULT_KEY_FRAMES", "MODEL_NAMES", "WITH_STATISTICS", "build_model",
           "EfficientNetB0", "EfficientNetLite0", "MobileNetV3Small"]
