"""AQS, the Aggregate Quality Score: one number per window in 0..1, and its quality bands.

    AQS = quality * prod_k (1 - w_k * p_k * s_k)

``quality`` is the model's VMAF-like estimate (0..1), ``p_k`` the probability that artifact k is
present, ``s_k`` its intensity (0..1) and ``w_k`` a per-artifact weight in 0..1 (how much a fully
present, full-strength artifact takes away). Every factor is in [0, 1] and shrinks as p_k or s_k
grow, so more artifact evidence never raises the score, and the whole range 0..1 is reachable
(``quality`` spans it).

The weights live in ``models/aqs.json``; ``export.fit_aqs`` fits them to VMAF on windows a model never
trained on and writes them there with how they were fitted (``"fitted": null``: chosen by hand). The
artifact a window is blamed for is the one with the most evidence ``p_k * s_k``, whatever its weight.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engines.contract import ARTIFACTS, ModelOutputs
from engines.modelfiles import DEFAULT_MODEL_DIR

WEIGHTS_FILE = DEFAULT_MODEL_DIR / "aqs.json"


def load_weights(path: Path = WEIGHTS_FILE) -> dict[str, float]:
    """Per-artifact weights from ``path``; ValueError naming the file if one is missing or not in 0..1."""
    weights = json.loads(path.read_text())["weights"]
    bad = [name for name in ARTIFACTS if not 0.0 <= float(weights.get(name, -1.0)) <= 1.0]
    if bad or set(weights) != set(ARTIFACTS):
        raise ValueError(f"{path}: weights must be one value in 0..1 for each of {', '.join(ARTIFACTS)} (bad: {bad})")
    return {name: float(weights[name]) for name in ARTIFACTS}


ARTIFACT_WEIGHTS: dict[str, float] = load_weights()
_WEIGHTS = np.array([ARTIFACT_WEIGHTS[name] for name in ARTIFACTS], dtype=np.float32)

# (lower bound, name), best first; a score belongs to the first band whose bound it reaches.
QUALITY_BANDS: tuple[tuple[float, str], ...] = (
    (0.85, "excellent"),
    (0.70, "good"),
    (0.50, "fair"),
    (0.30, "poor"),
    (0.0, "very_poor"),
)


def aqs(quality: np.ndarray, probabilities: np.ndarray, intensities: np.ndarray) -> np.ndarray:
    """AQS for a batch: ``quality`` [N], ``probabilities`` and ``intensities`` [N, 10] -> [N]."""
    quality = np.clip(np.asarray(quality, dtype=np.float32), 0.0, 1.0)
    evidence = np.clip(probabilities, 0.0, 1.0) * np.clip(intensities, 0.0, 1.0)
    penalty = np.prod(1.0 - _WEIGHTS * evidence, axis=-1)
    return (quality * penalty).astype(np.float32)


def score_outputs(outputs: ModelOutputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(AQS [N], probabilities [N, 10], intensities [N, 10] clipped to 0..1) of a batch of model outputs.

    The one step from model outputs to scores, shared by the daemon and ``vqa-monitor score``.
    """
    probabilities = outputs.artifact_probabilities
    intensities = np.clip(np.asarray(outputs.intensity, dtype=np.float32), 0.0, 1.0)
    return aqs(outputs.quality, probabilities, intensities), probabilities, intensities


def quality_level(score: float) -> str:
    """Band name of one AQS value."""
    for bound, name in QUALITY_BANDS:
        if score >= bound:
            return name
    return QUALITY_BANDS[-1][1]


def dominant_artifact(probabilities: np.ndarray, intensities: np.ndarray) -> str:
    """Name of the artifact with the most evidence (probability x intensity) in one window."""
    return ARTIFACTS[int(np.argmax(np.asarray(probabilities) * np.asarray(intensities)))]
