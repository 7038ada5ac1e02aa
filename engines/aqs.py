"""AQS, the Aggregate Quality Score: one number per window in 0..1, and its quality bands.

    AQS = min(quality, prod_k (1 - c_k * d(p_k * s_k))),   d(e) = max(0, e - z) / (1 - z)

``quality`` is the model's VMAF-like estimate (0..1), ``p_k`` the probability that artifact k is
present, ``s_k`` its intensity (0..1), ``c_k`` the artifact's *cap* in 0..1 and ``z`` the *dead zone*
in 0..1 (one for all artifacts): evidence ``p_k * s_k`` up to ``z`` is not counted, so the weak evidence
that clean or lightly damaged content also raises does not pull its score down, while a fully present,
full-strength artifact still keeps the score at or below ``1 - c_k``. A cap only bites where the
quality estimate is above it, so damage the quality output already saw is not counted twice, while
heavy damage it underrates is still brought down. Every factor is in [0, 1] and shrinks as p_k or
s_k grow, so more artifact evidence never raises the score; with no evidence AQS is the quality
estimate, so the whole range 0..1 is reachable.

The caps and the dead zone live in ``models/aqs.json``; ``export.fit_aqs`` fits them to VMAF on
windows the default model never trained on and writes them there with how they were fitted. The
artifact a window is blamed for is the one with the most evidence ``p_k * s_k``, whatever its cap.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engines.contract import ARTIFACTS, ModelOutputs
from engines.modelfiles import DEFAULT_MODEL_DIR

CAPS_FILE = DEFAULT_MODEL_DIR / "aqs.json"


def load_caps(path: Path = CAPS_FILE) -> np.ndarray:
    """Per-artifact caps [10] from ``path``; ValueError naming the file and the artifact if one is missing or not in 0..1."""
    caps = json.loads(path.read_text()).get("caps")
    if not isinstance(caps, dict):
        raise ValueError(f"{path}: 'caps' must map each of {', '.join(ARTIFACTS)} to a value in 0..1")
    bad = [name for name in ARTIFACTS if not _in_unit_range(caps.get(name))] + sorted(set(caps) - set(ARTIFACTS))
    if bad:
        raise ValueError(f"{path}: caps must be one value in 0..1 for each of {', '.join(ARTIFACTS)} (bad: {bad})")
    return np.array([float(caps[name]) for name in ARTIFACTS], dtype=np.float32)


def load_dead_zone(path: Path = CAPS_FILE) -> float:
    """The dead zone from ``path`` (0 when the file has none); ValueError naming the file unless it is in 0..1 (1 excluded)."""
    value = json.loads(path.read_text()).get("dead_zone", 0.0)
    if not _in_unit_range(value) or value == 1.0:
        raise ValueError(f"{path}: 'dead_zone' must be a number in 0..1, below 1 (got {value!r})")
    return float(value)


def _in_unit_range(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0


SHIPPED_CAPS = load_caps()
SHIPPED_DEAD_ZONE = load_dead_zone()

# (lower bound, name), best first; a score belongs to the first band whose bound it reaches.
QUALITY_BANDS: tuple[tuple[float, str], ...] = (
    (0.85, "excellent"),
    (0.70, "good"),
    (0.50, "fair"),
    (0.30, "poor"),
    (0.0, "very_poor"),
)


def aqs(quality: np.ndarray, probabilities: np.ndarray, intensities: np.ndarray,
        caps: np.ndarray = SHIPPED_CAPS, dead_zone: float = SHIPPED_DEAD_ZONE) -> np.ndarray:
    """AQS for a batch: ``quality`` [N], ``probabilities`` and ``intensities`` [N, 10] -> [N]."""
    quality = np.clip(np.asarray(quality, dtype=np.float32), 0.0, 1.0)
    evidence = np.clip(probabilities, 0.0, 1.0) * np.clip(intensities, 0.0, 1.0)
    counted = np.clip(evidence - dead_zone, 0.0, None) / (1.0 - dead_zone)
    ceiling = np.prod(1.0 - np.clip(caps, 0.0, 1.0) * counted, axis=-1)
    return np.minimum(quality, ceiling).astype(np.float32)


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
