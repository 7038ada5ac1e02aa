"""Torch definitions of the AQS models (needed by training, export and the torch engine).

``build_model(name)`` is the one registry: ``aqs_effnet_b0`` and ``aqs_effnet_lite0`` (EfficientNet-B0
and its integer-friendly Lite0 variant, which can start from ImageNet weights; their trunks also read
the classical engine's features, computed in the graph) and ``aqs_mnv3_small`` (the light fallback),
same inputs and outputs (see :mod:`engines.contract`).
Importing this package imports torch; engines that only run ONNX never import it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from engines.architectures.aqs_net import DEFAULT_KEY_FRAMES, AQSNet
from engines.architectures.efficientnet import EfficientNetB0, EfficientNetLite0
from engines.architectures.mobilenetv3 import MobileNetV3Small

BACKBONES: dict[str, Callable[[], object]] = {
    "aqs_effnet_b0": EfficientNetB0,
    "aqs_effnet_lite0": EfficientNetLite0,
    "aqs_mnv3_small": MobileNetV3Small,
}
# models whose trunk also reads :class:`~engines.architectures.statistics.ClassicalStatistics`
WITH_STATISTICS = frozenset({"aqs_effnet_b0", "aqs_effnet_lite0"})
MODEL_NAMES: tuple[str, ...] = tuple(BACKBONES)


def build_model(name: str, key_frames: Sequence[int] = DEFAULT_KEY_FRAMES) -> AQSNet:
    """A freshly initialised AQS model by registry name."""
    try:
        backbone = BACKBONES[name]()
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}") from None
    return AQSNet(backbone, key_frames=key_frames, statistics=name in WITH_STATISTICS)


__all__ = ["AQSNet", "DEFAULT_KEY_FRAMES", "MODEL_NAMES", "build_model", "EfficientNetB0", "EfficientNetLite0",
           "MobileNetV3Small"]
