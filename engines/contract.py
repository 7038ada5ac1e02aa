"""The model contract: one definition of what a window is and what a model returns.

Used by training, export, every engine, the daemon and `vqa-monitor score`.

Input: a batch of windows, ``uint8`` array ``[N, 7, 3, 224, 224]``, RGB, 0..255, produced by
:func:`engines.sampler.sample_frame`, one frame at a time. Normalisation happens *inside* every
model, so engines feed raw uint8 and never copy to float in Python.

Outputs (:class:`ModelOutputs`): ``quality`` ``[N]`` in 0..1 (trained against VMAF / 100),
``artifact_logits`` ``[N, 10]`` (sigmoid gives the probability that the artifact is present),
``intensity`` ``[N, 10]`` in 0..1 (how strong it is when present), artifacts in ``ARTIFACTS`` order.
Optional: ``artifact_map`` ``[N, 10, 7, 7]``, artifact logits per fragment of the 7x7 grid (row 0 is
the top of the frame, column 0 its left), for models and engines that localise; ``None`` otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARTIFACTS: tuple[str, ...] = (
    "blocking",
    "ringing",
    "ghosting",
    "judder",
    "gaussian_noise",
    "impulse_noise",
    "motion_blur",
    "defocus_blur",
    "color_banding",
    "saturation",
)
NUM_ARTIFACTS = len(ARTIFACTS)

WINDOW_FRAMES = 7
INPUT_SIZE = 224
FRAGMENT_GRID = 7
FRAGMENT_SIZE = INPUT_SIZE // FRAGMENT_GRID  # 32 px fragments at native resolution
INPUT_DTYPE = np.uint8
INPUT_SHAPE = (WINDOW_FRAMES, 3, INPUT_SIZE, INPUT_SIZE)  # per window; batch dim in front

# ImageNet statistics, applied inside the models to x / 255.
NORMALIZE_MEAN = (0.485, 0.456, 0.406)
NORMALIZE_STD = (0.229, 0.224, 0.225)

INPUT_NAME = "windows"
OUTPUT_NAMES = ("quality", "artifact_logits", "intensity")
MAP_OUTPUT_NAME = "artifact_map"
MAP_SHAPE = (NUM_ARTIFACTS, FRAGMENT_GRID, FRAGMENT_GRID)  # per window


@dataclass(frozen=True)
class ModelOutputs:
    """Raw outputs for a batch of N windows."""

    quality: np.ndarray  # [N] float32, 0..1
    artifact_logits: np.ndarray  # [N, 10] float32
    intensity: np.ndarray  # [N, 10] float32, 0..1
    artifact_map: np.ndarray | None = None  # [N, 10, 7, 7] float32 logits per fragment, or None

    @property
    def artifact_map_probabilities(self) -> np.ndarray | None:
        return None if self.artifact_map is None else sigmoid(self.artifact_map)

    @property
    def artifact_probabilities(self) -> np.ndarray:
        return sigmoid(self.artifact_logits)

    def __len__(self) -> int:
        return int(self.quality.shape[0])

    def validate(self, batch: int) -> "ModelOutputs":
        """Raise ValueError unless shapes match the contract for ``batch`` windows."""
        expected = {"quality": (batch,), "artifact_logits": (batch, NUM_ARTIFACTS), "intensity": (batch, NUM_ARTIFACTS)}
        if self.artifact_map is not None:
            expected[MAP_OUTPUT_NAME] = (batch, *MAP_SHAPE)
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"model output {name!r} has shape {got}, expected {shape}")
        return self


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))).astype(np.float32)
