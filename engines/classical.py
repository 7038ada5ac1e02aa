"""The classical engine: hand-crafted features and a small calibrated regressor, no neural network.

It is the last fallback of the engine chain and the honest baseline the trained models are measured
against. It reads the same input as every model (``uint8`` windows ``[N, 7, 3, 224, 224]``, the 7x7
mosaics of 32x32 native-resolution fragments made by :mod:`engines.sampler`) and returns the same
:class:`~engines.contract.ModelOutputs`. Only numpy runs here.

Spatial features are measured *inside* each 32x32 fragment, never across the seams between
fragments; temporal features compare the same fragment across the 7 frames (the sampler keeps the
fragment positions fixed within a window). See :data:`FEATURE_NAMES` for the list.

The regressor (``engines/models/classical.json``, fitted by ``export/train_classical.py``) is:
standardised features ``z`` (clipped to +-5) expanded to ``[z, z**2 - 1]``, then
- quality: ridge regression followed by a monotone piecewise-linear calibration to VMAF / 100;
- artifact logits: one logistic regression per artifact;
- intensity: one ridge regression per artifact (fitted where the artifact is present), clipped to 0..1.
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Backend, BaseEngine, EngineInfo, EngineUnavailable, LoadOptions, check_windows
from engines.contract import (
    ARTIFACTS,
    FRAGMENT_GRID,
    FRAGMENT_SIZE,
    INPUT_SHAPE,
    NUM_ARTIFACTS,
    WINDOW_FRAMES,
    ModelOutputs,
)
from engines.modelfiles import resolve_model_dir

ENGINE_NAME = "classical"
MODEL_FILE = "classical.json"
FORMAT = "vqa-monitor-classical/1"
# Bumped whenever a feature's definition changes: a model file fitted on other features is refused.
FEATURES_VERSION = 2

# The one Laplacian used for every sharpness measure (4-neighbour, 3x3); Laplacian-variance values
# depend strongly on the kernel, so it is defined here and nowhere else.
LAPLACIAN_KERNEL = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float32)

SPATIAL_FRAMES = (1, 3, 5)  # frames of a window whose spatial features are measured
_CHUNK = 8  # windows per feature pass (bounds temporary memory to ~100 MB per thread)
_MIN_CHUNK = 2  # smallest share of a batch worth handing to another thread
_EPS = 1e-6
_STRONG_EDGE = 48.0  # luma gradient (|gx| + |gy|, central differences) that counts as a strong edge
_IMPULSE = 160.0  # |Laplacian| of an isolated extreme pixel (~40 levels above all 4 neighbours)
_MOVING = 1.0  # mean |frame difference| of a fragment that counts as moving

FEATURE_NAMES: tuple[str, ...] = (
    # brightness and contrast
    "luma_mean",
    "luma_std",
    "dark_or_bright_frac",
    # sharpness / blur
    "sharp_lapvar_log",
    "sharp_lapvar_p90_log",
    "sharp_hf_ratio_log",
    "sharp_anisotropy",
    # noise
    "noise_immerkaer_p10_log",
    "noise_immerkaer_median_log",
    # coding artifacts
    "block_h_log",
    "block_v_log",
    "block_max_log",
    "block8_h_log",
    "block8_v_log",
    "ringing_near_edge_log",
    "ringing_ratio_log",
    "edge_frac",
    # banding
    "band_level_ratio",
    "band_zero_grad_frac",
    "band_step_mean",
    # colour
    "colourfulness_log",
    "saturation_mean",
    "saturation_p95",
    "clipped_frac",
    # impulse noise
    "impulse_frac_log",
    # temporal
    "motion_log",
    "judder_cv",
    "judder_minmax",
    "judder_still_frac",
    "ghost_lag1_coef",
    "ghost_lag2_corr",
    "ghost_lag3_corr",
    "diff_hf_ratio_log",
    "motion_blur_cue",
)
NUM_FEATURES = len(FEATURE_NAMES)


# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------
def extract_features(windows: np.ndarray, pool: "ThreadPoolExecutor | None" = None,
                     spatial_frames: tuple[int, ...] = SPATIAL_FRAMES) -> np.ndarray:
    """Features of ``uint8`` windows ``[N, 7, 3, 224, 224]`` -> ``float32`` ``[N, NUM_FEATURES]``.

    With a thread ``pool``, chunks of windows run in parallel (numpy releases the GIL in its loops).
    ``spatial_frames``: the frames whose spatial features are measured (the AQS network measures
    only its key frame, to save time; this engine averages three).
    """
    windows = np.asarray(windows)
    if windows.ndim != 5 or windows.shape[1:] != INPUT_SHAPE:
        raise ValueError(f"windows must be [N, {', '.join(map(str, INPUT_SHAPE))}], got {list(windows.shape)}")
    if windows.dtype != np.uint8:
        raise ValueError(f"windows must be uint8, got {windows.dtype}")
    out = np.empty((windows.shape[0], NUM_FEATURES), dtype=np.float32)
    n = windows.shape[0]
    if pool is None or n <= _MIN_CHUNK:
        for start in range(0, n, _CHUNK):
            out[start : start + _CHUNK] = _features_chunk(windows[start : start + _CHUNK], spatial_frames)
        return out
    workers = getattr(pool, "_max_workers", 2)
    size = min(_CHUNK, max(_MIN_CHUNK, -(-n // workers)))
    starts = list(range(0, n, size))
    for start, values in zip(starts, pool.map(lambda s: _features_chunk(windows[s : s + size], spatial_frames), starts)):
        out[start : start + size] = values
    return out


def fragment_features(windows: np.ndarray, pool: "ThreadPoolExecutor | None" = None,
                      spatial_frames: tuple[int, ...] = SPATIAL_FRAMES) -> np.ndarray:
    """The features of each fragment on its own: ``[N, 7, 3, 224, 224]`` -> ``[N, 49, NUM_FEATURES]``.

    Each fragment's 7 frames are measured as if they were the whole window (a 1x1 mosaic), so the
    regressor can say what it would say of a frame that looked like this fragment everywhere.
    """
    windows = np.asarray(windows)
    n = windows.shape[0]
    g, s = FRAGMENT_GRID, FRAGMENT_SIZE
    if n == 0:
        return np.empty((0, g * g, NUM_FEATURES), dtype=np.float32)
    per_fragment = windows.reshape(n, WINDOW_FRAMES, 3, g, s, g, s).transpose(0, 3, 5, 1, 2, 4, 6)
    per_fragment = np.ascontiguousarray(per_fragment).reshape(n * g * g, WINDOW_FRAMES, 3, s, s)
    chunk = _CHUNK * g * g  # the same pixels per pass as a chunk of whole windows
    parts = [per_fragment[i : i + chunk] for i in range(0, len(per_fragment), chunk)]
    run = (lambda part: _features_chunk(part, spatial_frames))
    values = list(pool.map(run, parts)) if pool is not None and len(parts) > 1 else [run(p) for p in parts]
    return np.concatenate(values).reshape(n, g * g, NUM_FEATURES)


def fragments(planes: np.ndarray) -> np.ndarray:
    """``[..., 32k, 32k]`` mosaics -> ``[..., k*k, 32, 32]`` fragments (row-major grid order)."""
    lead = planes.shape[:-2]
    g, s = planes.shape[-1] // FRAGMENT_SIZE, FRAGMENT_SIZE
    split = planes.reshape(*lead, g, s, g, s)
    axes = tuple(range(len(lead)))
    n = len(lead)
    return split.transpose(*axes, n, n + 2, n + 1, n + 3).reshape(*lead, g * g, s, s)


def laplacian(f: np.ndarray) -> np.ndarray:
    """:data:`LAPLACIAN_KERNEL` applied to the interior of each ``[..., H, W]`` patch (valid mode)."""
    k = LAPLACIAN_KERNEL
    out = k[1, 1] * f[..., 1:-1, 1:-1]
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        out = out + k[dy, dx] * f[..., dy : f.shape[-2] - 2 + dy, dx : f.shape[-1] - 2 + dx]
    return out


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2r+1)^2 square inside each patch (separable, by shifted ORs)."""
    out = mask
    for _ in range(radius):
        grown = out.copy()
        grown[..., 1:, :] |= out[..., :-1, :]
        grown[..., :-1, :] |= out[..., 1:, :]
        out = grown
        grown = out.copy()
        grown[..., :, 1:] |= out[..., :, :-1]
        grown[..., :, :-1] |= out[..., :, 1:]
        out = grown
    return out


def _log(x: np.ndarray | float) -> np.ndarray:
    return np.log(np.asarray(x, dtype=np.float64) + 1e-3)


def _phase_blockiness(absdiff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient energy at the 8 phase positions of an 8x8 grid: max-phase vs mean and vs opposite.

    ``absdiff`` [..., 31] holds |gradient| summed along the other axis, for the 31 boundaries
    inside a 32-pixel fragment; boundary j (between pixels j and j+1) has phase (j + 1) mod 8. The
    fragment's alignment to the codec's grid is unknown, so the strongest phase is compared with
    the mean of all 8 (~1 for natural content, > 1 where one phase carries block edges; also > 1
    for 4- and 2-periodic structure) and with the phase 4 away (> 1 only for an 8-pixel period,
    not for the 2-pixel pattern of upsampled chroma or 2x upscaling).
    """
    n = absdiff.shape[-1]
    phase = (np.arange(n) + 1) % 8
    onehot = (phase[:, None] == np.arange(8)[None, :]).astype(np.float32)  # [31, 8]
    energy = (absdiff @ onehot) / onehot.sum(axis=0)  # mean per phase, [..., 8]
    best = energy.argmax(axis=-1)
    top = np.take_along_axis(energy, best[..., None], axis=-1)[..., 0]
    opposite = np.take_along_axis(energy, ((best + 4) % 8)[..., None], axis=-1)[..., 0]
    top = top + 0.1  # both ratios are >= 1, and ~1 on flat fragments
    return top / (energy.mean(axis=-1) + 0.1), top / (opposite + 0.1)


def _features_chunk(win: np.ndarray, spatial_frames: tuple[int, ...] = SPATIAL_FRAMES) -> np.ndarray:
    n = win.shape[0]
    # luma of all 7 frames (temporal features); spatial features on spatial_frames only
    c = (np.float32(0.299), np.float32(0.587), np.float32(0.114))
    luma_all = c[0] * win[:, :, 0] + c[1] * win[:, :, 1] + c[2] * win[:, :, 2]  # [n, 7, 224, 224] float32
    f_all = fragments(luma_all)  # [n, 7, 49, 32, 32]
    sel = list(spatial_frames)
    luma = luma_all[:, sel]  # [n, S, 224, 224]
    f = f_all[:, sel]  # [n, S, 49, 32, 32]
    # colour statistics on every second pixel (chroma is 4:2:0, so nothing is lost there)
    rgb = win[:, sel, :, ::2, ::2].astype(np.float32)  # [n, S, 3, 112, 112]
    r, g, b = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
    feats: dict[str, np.ndarray] = {}

    # -- brightness and contrast
    feats["luma_mean"] = luma.mean(axis=(1, 2, 3)) / 255.0
    feats["luma_std"] = f.std(axis=(-1, -2)).mean(axis=(1, 2)) / 255.0
    feats["dark_or_bright_frac"] = ((luma < 16) | (luma > 240)).mean(axis=(1, 2, 3))

    # -- sharpness: Laplacian variance, its ratio to gradient energy, and directionality
    lap = laplacian(f)  # [n, 7, 49, 30, 30]
    lapvar = lap.var(axis=(-1, -2))  # [n, 7, 49]
    feats["sharp_lapvar_log"] = _log(lapvar).mean(axis=(1, 2))
    feats["sharp_lapvar_p90_log"] = _log(np.percentile(lapvar, 90, axis=2)).mean(axis=1)
    gx = f[..., 1:-1, 2:] - f[..., 1:-1, :-2]  # central differences on the same 30x30 interior
    gy = f[..., 2:, 1:-1] - f[..., :-2, 1:-1]
    ex = (gx * gx).mean(axis=(1, 2, 3, 4))
    ey = (gy * gy).mean(axis=(1, 2, 3, 4))
    feats["sharp_hf_ratio_log"] = _log((lap * lap).mean(axis=(1, 2, 3, 4)) / (ex + ey + 1.0))
    feats["sharp_anisotropy"] = np.abs(np.log((ex + 1.0) / (ey + 1.0)))

    # -- noise: Immerkaer's estimator per fragment; the flattest fragments give the noise floor
    d2 = f[..., :-2, :] - 2.0 * f[..., 1:-1, :] + f[..., 2:, :]
    d2 = d2[..., :-2] - 2.0 * d2[..., 1:-1] + d2[..., 2:]  # [n, 7, 49, 30, 30]
    sigma = np.sqrt(np.pi / 2.0) / 6.0 * np.abs(d2).mean(axis=(-1, -2))  # [n, 7, 49]
    feats["noise_immerkaer_p10_log"] = _log(np.percentile(sigma, 10, axis=2)).mean(axis=1)
    feats["noise_immerkaer_median_log"] = _log(np.median(sigma, axis=2)).mean(axis=1)

    # -- 8x8 blockiness per fragment, by phase, summed over the 7 frames (same offsets)
    dh = np.abs(np.diff(f, axis=-1)).sum(axis=(1, -2))  # [n, 49, 31]
    dv = np.abs(np.diff(f, axis=-2)).sum(axis=(1, -1))  # [n, 49, 31]
    (bh, bh8), (bv, bv8) = _phase_blockiness(dh), _phase_blockiness(dv)  # [n, 49] each
    feats["block_h_log"] = _log(np.median(bh, axis=1) - 1.0 + 1e-2)
    feats["block_v_log"] = _log(np.median(bv, axis=1) - 1.0 + 1e-2)
    feats["block_max_log"] = _log(np.percentile(np.maximum(bh, bv), 75, axis=1) - 1.0 + 1e-2)
    feats["block8_h_log"] = _log(np.median(bh8, axis=1))
    feats["block8_v_log"] = _log(np.median(bv8, axis=1))

    # -- ringing: high-frequency energy in the band 2..3 px around strong edges
    grad = np.abs(gx) + np.abs(gy)  # [n, 7, 49, 30, 30]
    edges = grad > _STRONG_EDGE
    grown1 = _dilate(edges, 1)
    grown3 = _dilate(grown1, 2)
    near = grown3 & ~grown1
    far = ~grown3
    alap = np.abs(lap)
    near_n = near.sum(axis=(1, 2, 3, 4))
    near_e = (alap * near).sum(axis=(1, 2, 3, 4)) / (near_n + 1.0)
    far_e = (alap * far).sum(axis=(1, 2, 3, 4)) / (far.sum(axis=(1, 2, 3, 4)) + 1.0)
    feats["ringing_near_edge_log"] = _log(near_e)
    feats["ringing_ratio_log"] = _log((near_e + 1.0) / (far_e + 1.0))
    feats["edge_frac"] = edges.mean(axis=(1, 2, 3, 4))

    # -- banding, on the middle frame's RGB channels: few distinct levels and long flat runs with
    #    isolated steps in smooth fragments (false contours)
    mid = fragments(win[:, 3])  # [n, 3, 49, 32, 32] uint8
    flat = mid.reshape(-1, FRAGMENT_SIZE * FRAGMENT_SIZE)  # one row per (window, channel, fragment)
    seen = np.zeros((flat.shape[0], 256), dtype=bool)
    seen[np.arange(flat.shape[0])[:, None], flat] = True
    levels = seen.sum(axis=1).reshape(n, 3, -1)  # distinct values per fragment and channel
    span = (flat.max(axis=1).astype(np.float32) - flat.min(axis=1) + 1.0).reshape(n, 3, -1)
    smooth = (span >= 6) & (span <= 96)  # gradients, not flat fields and not busy texture
    ratio = np.where(smooth, levels / span, 0.0)
    count = smooth.sum(axis=(1, 2))
    feats["band_level_ratio"] = np.where(count > 0, ratio.sum(axis=(1, 2)) / np.maximum(count, 1), 1.0)
    midf = mid.astype(np.int16)
    gh = np.abs(np.diff(midf, axis=-1))  # [n, 3, 49, 32, 31]
    gv = np.abs(np.diff(midf, axis=-2))
    sm = smooth[..., None, None]
    small_h, small_v = (gh <= 16) & sm, (gv <= 16) & sm
    n_small = small_h.sum(axis=(1, 2, 3, 4)) + small_v.sum(axis=(1, 2, 3, 4))
    zeros = ((gh == 0) & small_h).sum(axis=(1, 2, 3, 4)) + ((gv == 0) & small_v).sum(axis=(1, 2, 3, 4))
    steps = (gh * small_h).sum(axis=(1, 2, 3, 4)) + (gv * small_v).sum(axis=(1, 2, 3, 4))
    nonzero = n_small - zeros
    feats["band_zero_grad_frac"] = np.where(n_small > 0, zeros / np.maximum(n_small, 1), 0.0)
    feats["band_step_mean"] = np.where(nonzero > 0, steps / np.maximum(nonzero, 1), 0.0)

    # -- colour: Hasler-Suesstrunk colourfulness, saturation, clipping
    rg = r - g
    yb = 0.5 * (r + g) - b
    std_term = np.sqrt(rg.var(axis=(-1, -2)) + yb.var(axis=(-1, -2)))
    mean_term = np.sqrt(rg.mean(axis=(-1, -2)) ** 2 + yb.mean(axis=(-1, -2)) ** 2)
    feats["colourfulness_log"] = _log((std_term + 0.3 * mean_term).mean(axis=1))
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    sat = (mx - mn) / (mx + 1.0)  # [n, 7, 224, 224]
    sat_mid = sat[:, len(sel) // 2].reshape(n, -1)
    feats["saturation_mean"] = sat.mean(axis=(1, 2, 3))
    feats["saturation_p95"] = np.percentile(sat_mid, 95, axis=1)
    feats["clipped_frac"] = ((rgb == 0.0) | (rgb == 255.0)).any(axis=2).mean(axis=(1, 2, 3))

    # -- impulse noise: isolated extreme pixels (inside fragments only)
    # an isolated spike has a large Laplacian but a small central-difference gradient (central
    # differences skip the centre pixel), unlike an edge
    isolated = (alap > _IMPULSE) & (grad < 0.5 * alap)
    feats["impulse_frac_log"] = np.log(isolated.mean(axis=(1, 2, 3, 4)) + 1e-5)

    # -- temporal: per-fragment step differences across the 7 frames
    diff = np.diff(f_all, axis=1)  # [n, 6, 49, 32, 32]
    step = np.abs(diff).mean(axis=(-1, -2))  # [n, 6, 49]
    motion = step.mean(axis=(1, 2))
    feats["motion_log"] = _log(motion)
    steps_w = step.mean(axis=2)  # [n, 6]
    feats["judder_cv"] = steps_w.std(axis=1) / (steps_w.mean(axis=1) + 0.5)
    feats["judder_minmax"] = (steps_w.min(axis=1) + 0.1) / (steps_w.max(axis=1) + 0.1)
    feats["judder_still_frac"] = (steps_w < 0.3 * steps_w.max(axis=1, keepdims=True)).mean(axis=1)
    # ghosting: out[t] = (1 - a) f[t] + a f[t - d] makes the frame differences echo each other at
    # lag d (1..3 frames): correlation of the step differences at lags 1, 2, 3, in moving fragments
    m = (step.mean(axis=1) > _MOVING).astype(np.float32)[:, None, :, None, None]  # [n, 1, 49, 1, 1]
    dm = diff * m
    energy = (dm * dm).sum(axis=(2, 3, 4))  # [n, 6]
    for lag in (1, 2, 3):
        cross = (dm[:, lag:] * dm[:, :-lag]).sum(axis=(2, 3, 4)).sum(axis=1)
        e_now, e_then = energy[:, lag:].sum(axis=1), energy[:, :-lag].sum(axis=1)
        if lag == 1:
            feats["ghost_lag1_coef"] = cross / (e_then + 1.0)
        else:
            feats[f"ghost_lag{lag}_corr"] = cross / (np.sqrt(e_now * e_then) + 1.0)
    # motion blur: moving content whose frame differences carry little high-frequency energy
    dsub = diff[:, ::2]  # every second step is enough for this ratio
    dlap = laplacian(dsub)
    dg = dsub[..., 1:-1, 1:-1]
    feats["diff_hf_ratio_log"] = _log((dlap * dlap).mean(axis=(1, 2, 3, 4)) / ((dg * dg).mean(axis=(1, 2, 3, 4)) + 1.0))
    feats["motion_blur_cue"] = feats["motion_log"] - feats["sharp_lapvar_log"]

    return np.stack([np.asarray(feats[name], dtype=np.float32) for name in FEATURE_NAMES], axis=1)


# ----------------------------------------------------------------------------------------------
# Regressor
# ----------------------------------------------------------------------------------------------
def expand(z: np.ndarray) -> np.ndarray:
    """Standardised features ``[N, F]`` -> regressor inputs ``[N, 2F]``: ``[z, z**2 - 1]``."""
    return np.concatenate([z, z * z - 1.0], axis=1)


def payload_sha256(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a model file's payload (everything but ``sha256``)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ClassicalModel:
    """The fitted regressor as plain arrays (read from ``classical.json``)."""

    def __init__(self, data: dict[str, Any]) -> None:
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        if tuple(data.get("feature_names", ())) != FEATURE_NAMES or data.get("features_version") != FEATURES_VERSION:
            raise ValueError(
                f"feature_names / features_version {data.get('features_version')!r} do not match this "
                f"engines/classical.py (version {FEATURES_VERSION}); refit with python -m export.train_classical"
            )
        if tuple(data.get("artifacts", ())) != ARTIFACTS:
            raise ValueError("artifact order does not match engines/contract.py")
        f2 = 2 * NUM_FEATURES
        self.mean = _array(data, "mean", (NUM_FEATURES,))
        self.scale = _array(data, "scale", (NUM_FEATURES,))
        if np.any(self.scale <= 0):
            raise ValueError("scale must be positive")
        self.clip_z = float(data.get("clip_z", 5.0))
        q = data["quality"]
        self.q_coef = _array(q, "coef", (f2,))
        self.q_intercept = float(q["intercept"])
        self.q_knots_x = _array(q, "calibration_x", None)
        self.q_knots_y = _array(q, "calibration_y", self.q_knots_x.shape)
        if self.q_knots_x.ndim != 1 or self.q_knots_x.size < 2 or np.any(np.diff(self.q_knots_x) < 0):
            raise ValueError("quality calibration knots must be increasing")
        p = data["presence"]
        self.p_coef = _array(p, "coef", (NUM_ARTIFACTS, f2))
        self.p_intercept = _array(p, "intercept", (NUM_ARTIFACTS,))
        s = data["intensity"]
        self.s_coef = _array(s, "coef", (NUM_ARTIFACTS, f2))
        self.s_intercept = _array(s, "intercept", (NUM_ARTIFACTS,))

    def predict(self, feats: np.ndarray, fragment_feats: np.ndarray | None = None) -> ModelOutputs:
        """Outputs for window features ``[N, F]``; with ``fragment_feats`` ``[N, 49, F]`` also the
        per-fragment map (the artifact regressions applied to each fragment's own features)."""
        x = self._inputs(feats)
        raw_q = x @ self.q_coef + self.q_intercept
        quality = np.clip(np.interp(raw_q, self.q_knots_x, self.q_knots_y), 0.0, 1.0)
        intensity = np.clip(x @ self.s_coef.T + self.s_intercept, 0.0, 1.0)
        artifact_map = None
        if fragment_feats is not None:
            n = fragment_feats.shape[0]
            cells = self._logits(self._inputs(fragment_feats.reshape(-1, fragment_feats.shape[-1])))
            artifact_map = cells.reshape(n, FRAGMENT_GRID, FRAGMENT_GRID, NUM_ARTIFACTS).transpose(0, 3, 1, 2)
        return ModelOutputs(
            quality=quality.astype(np.float32),
            artifact_logits=self._logits(x).astype(np.float32),
            intensity=intensity.astype(np.float32),
            artifact_map=None if artifact_map is None else np.ascontiguousarray(artifact_map, dtype=np.float32),
        )

    def _inputs(self, feats: np.ndarray) -> np.ndarray:
        z = np.clip((feats - self.mean) / self.scale, -self.clip_z, self.clip_z)
        return expand(np.nan_to_num(z, nan=0.0, posinf=self.clip_z, neginf=-self.clip_z))

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.p_coef.T + self.p_intercept


def _array(data: dict[str, Any], key: str, shape: tuple[int, ...] | None) -> np.ndarray:
    arr = np.asarray(data[key], dtype=np.float64)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{key!r} has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{key!r} holds non-finite values")
    return arr


def read_model_file(path: Path) -> ClassicalModel:
    """Parse and verify ``classical.json``; raises :class:`EngineUnavailable` naming path and reason."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EngineUnavailable(f"classical: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        claimed = data.get("sha256")
        payload = {k: v for k, v in data.items() if k != "sha256"}
        if not isinstance(claimed, str) or payload_sha256(payload) != claimed:
            raise ValueError("sha256 of the content does not match the recorded one (file altered or corrupt)")
        return ClassicalModel(payload)
    except (ValueError, KeyError, TypeError) as exc:
        reason = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise EngineUnavailable(f"classical: corrupt model file {path}: {reason}") from exc


# ----------------------------------------------------------------------------------------------
# Engine
# ----------------------------------------------------------------------------------------------
class ClassicalEngine(BaseEngine):
    """Feature-based engine: numpy only, always available when its model file is intact."""

    def __init__(self, model: ClassicalModel, path: Path, threads: int = 1) -> None:
        super().__init__(EngineInfo(engine=ENGINE_NAME, model=path.name, provider="cpu"))
        self._model = model
        self.threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="classical") if self.threads > 1 else None

    def _run(self, windows: np.ndarray) -> ModelOutputs:
        return self._model.predict(extract_features(windows, self._pool))

    def artifact_map(self, windows: np.ndarray) -> np.ndarray:
        """Per-fragment artifact logits ``[N, 10, 7, 7]`` (about twice the cost of :meth:`infer`, so
        it is asked for, not computed with every window)."""
        windows = check_windows(windows)
        out = self._model.predict(extract_features(windows, self._pool), fragment_features(windows, self._pool))
        return out.artifact_map

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def load(model: str = "classical", model_dir: Path | None = None, threads: int | None = None) -> ClassicalEngine:
    """Load the classical engine from ``model_dir/classical.json``.

    ``model`` is the model name (``classical`` or ``classical.json``). ``threads``: feature threads
    for batches of several windows (default 1: on small machines the decoders keep the other cores).
    """
    name = model if model.endswith(".json") else f"{model}.json"
    if name != MODEL_FILE:
        raise EngineUnavailable(f"classical: unknown model {model!r} (only {MODEL_FILE!r})")
    path = resolve_model_dir(model_dir) / name
    return ClassicalEngine(read_model_file(path), path, threads or 1)


def _load_for_chain(model: str | None, options: LoadOptions) -> ClassicalEngine:
    del model  # takes none: the one classical.json
    return load(model_dir=options.model_dir, threads=options.threads)


BACKEND = Backend(name=ENGINE_NAME, load=_load_for_chain, takes_model=False)
