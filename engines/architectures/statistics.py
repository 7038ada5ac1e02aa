"""The classical engine's hand-crafted features, computed inside the network (torch, ONNX-exportable).

The AQS network reads these beside its learned features: on this repository's data the classical
features alone detect blocking, ringing, noise, blur and banding better than a backbone trained
from scratch on a few thousand windows, and the two together beat either (model card). Computing
them in the graph keeps one self-contained model file with one input, so every engine (ONNX
Runtime, TensorRT, torch) runs them without knowing they exist.

The definitions are :func:`engines.classical.extract_features`'s, feature for feature, in
:data:`engines.classical.FEATURE_NAMES` order, all but one (:data:`STATISTICS_NAMES`); a test holds
the two implementations together on real windows. The numpy one stays because the classical engine
must run without torch. This one also accepts any fragment-aligned mosaic size (training crops),
not only 224x224.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engines.classical import (
    _IMPULSE,
    _MOVING,
    _STRONG_EDGE,
    FEATURE_NAMES,
    LAPLACIAN_KERNEL,
)
from engines.contract import FRAGMENT_SIZE, WINDOW_FRAMES

# All of them but band_level_ratio: counting a fragment's distinct levels needs a sort of its 1,024
# pixels per channel, which alone took 9 ms per window in ONNX Runtime on a 2-core CPU.
STATISTICS_NAMES: tuple[str, ...] = tuple(name for name in FEATURE_NAMES if name != "band_level_ratio")
NUM_STATISTICS = len(STATISTICS_NAMES)
STATISTICS_COLUMNS = tuple(FEATURE_NAMES.index(name) for name in STATISTICS_NAMES)
# Spatial features on the middle frame only: over the classical engine's three frames the statistics
# took 17 ms per window in ONNX Runtime on a 2-core CPU instead of 11 (the rest of the network: ~18).
GRAPH_SPATIAL_FRAMES = (WINDOW_FRAMES // 2,)
_LUMA = (0.299, 0.587, 0.114)


def _luma(frames: torch.Tensor) -> torch.Tensor:
    """``[n, T, 3, H, W]`` RGB -> ``[n, T, H, W]`` luma, in numpy's order of operations."""
    return _LUMA[0] * frames[:, :, 0] + _LUMA[1] * frames[:, :, 1] + _LUMA[2] * frames[:, :, 2]


def fragments(planes: torch.Tensor) -> torch.Tensor:
    """``[..., H, W]`` fragment-aligned mosaics -> ``[..., H/32 * W/32, 32, 32]`` (row-major grid order)."""
    lead = planes.shape[:-2]
    s = FRAGMENT_SIZE
    rows, cols = planes.shape[-2] // s, planes.shape[-1] // s
    split = planes.reshape(*lead, rows, s, cols, s)
    n = len(lead)
    order = (*range(n), n, n + 2, n + 1, n + 3)
    return split.permute(*order).reshape(*lead, rows * cols, s, s)


def neighbours(f: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The valid interior of ``[..., H, W]`` patches and its four neighbours: centre, up, down, left, right."""
    h, w = f.shape[-2], f.shape[-1]
    return tuple(f[..., dy : h - 2 + dy, dx : w - 2 + dx] for dy, dx in ((1, 1), (0, 1), (2, 1), (1, 0), (1, 2)))


def laplacian(f: torch.Tensor, near: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    """:data:`LAPLACIAN_KERNEL` in valid mode, summed in numpy's order (so the two agree to the bit);
    ``near``: :func:`neighbours` of ``f`` when the caller already has them."""
    centre, up, down, left, right = near if near is not None else neighbours(f)
    k = LAPLACIAN_KERNEL
    out = float(k[1, 1]) * centre
    for weight, side in ((k[0, 1], up), (k[2, 1], down), (k[1, 0], left), (k[1, 2], right)):
        out = out + (side if weight == 1.0 else float(weight) * side)
    return out


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x + 1e-3)


def percentile(x: torch.Tensor, q: float, dim: int) -> torch.Tensor:
    """numpy's default (linear) percentile along ``dim``, by sorting."""
    n = x.shape[dim]
    pos = q / 100.0 * (n - 1)
    lo = int(math.floor(pos))
    frac = pos - lo
    ordered = torch.sort(x, dim=dim).values
    low = ordered.narrow(dim, lo, 1).squeeze(dim)
    if frac == 0.0 or lo + 1 >= n:
        return low
    return low + frac * (ordered.narrow(dim, lo + 1, 1).squeeze(dim) - low)


def _upper_percentile(x: torch.Tensor, q: float) -> torch.Tensor:
    """:func:`percentile` of ``[N, M]`` along dim 1 for a high ``q``, from the top-k values only."""
    n = x.shape[1]
    pos = q / 100.0 * (n - 1)
    lo = int(math.floor(pos))
    frac = pos - lo
    top = torch.topk(x, n - lo, dim=1).values  # descending; the last is the lo-th smallest
    low = top[:, -1]
    if frac == 0.0 or n - lo < 2:
        return low
    return low + frac * (top[:, -2] - low)


def _phase_blockiness(absdiff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """See :func:`engines.classical._phase_blockiness` (31 boundaries, boundary j has phase (j+1) mod 8).

    A zero in front makes 32 entries whose position is the phase, so the per-phase mean is a reshape
    and a sum (no matrix product: it stays fp32 under CUDA autocast); phase 0 has 3 boundaries, the
    others 4.
    """
    sums = F.pad(absdiff, (1, 0)).reshape(*absdiff.shape[:-1], 4, 8).sum(-2)
    # no constant tensor is made here: a host-to-device copy would break CUDA graph capture
    energy = torch.cat([sums[..., :1] / 3.0, sums[..., 1:] / 4.0], -1)
    top = energy.max(-1, keepdim=True)
    opposite = torch.gather(energy, -1, (top.indices + 4) % 8)[..., 0]
    top_value = top.values[..., 0] + 0.1
    return top_value / (energy.mean(-1) + 0.1), top_value / (opposite + 0.1)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Square dilation by (2r+1)^2 inside each ``[..., H, W]`` patch (max pooling pads with -inf)."""
    lead = mask.shape[:-2]
    flat = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])
    grown = F.max_pool2d(flat, 2 * radius + 1, stride=1, padding=radius)
    return grown.reshape(*lead, mask.shape[-2], mask.shape[-1])


class ClassicalStatistics(nn.Module):
    """``[N, 7, 3, H, W]`` float windows (0..255) -> ``[N, NUM_STATISTICS]`` raw feature values
    (:data:`STATISTICS_NAMES`), spatial ones measured on ``spatial_frames`` (default: the key frame
    only, a third of the classical engine's work; the numpy twin is
    ``extract_features(..., spatial_frames=GRAPH_SPATIAL_FRAMES)``)."""

    def __init__(self, spatial_frames: tuple[int, ...] = GRAPH_SPATIAL_FRAMES) -> None:
        super().__init__()
        self.spatial_frames = tuple(spatial_frames)

    def forward(self, win: torch.Tensor, frame_steps: torch.Tensor | None = None) -> torch.Tensor:
        """``frame_steps``: the luma differences ``Y[t+1] - Y[t]`` ``[N, 6, H, W]`` (0..255 scale) when
        the caller already has them (the AQS network's temporal branch does); else computed here."""
        win = win.float()
        # float32 whatever autocast made of the caller's differences (CUDA runs the network in fp16)
        feats = self._features(win, (self.frame_steps(win) if frame_steps is None else frame_steps).float())
        return torch.stack([feats[name] for name in STATISTICS_NAMES], 1)

    @staticmethod
    def frame_steps(win: torch.Tensor) -> torch.Tensor:
        luma = _luma(win)
        return luma[:, 1:] - luma[:, :-1]

    def _features(self, win: torch.Tensor, frame_steps: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: PLR0915 - one pass, in order
        n = win.shape[0]
        # each key frame by a plain slice: indexing with a list made ONNX Runtime transpose the whole window
        keys = torch.cat([win[:, k : k + 1] for k in self.spatial_frames], 1)
        luma = _luma(keys)
        f = fragments(luma)  # [n, S, G, 32, 32]
        rgb = keys[..., ::2, ::2]
        r, g, b = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
        feats: dict[str, torch.Tensor] = {}

        feats["luma_mean"] = luma.mean((1, 2, 3)) / 255.0
        feats["luma_std"] = f.std((-1, -2), unbiased=False).mean((1, 2)) / 255.0
        feats["dark_or_bright_frac"] = ((luma < 16) | (luma > 240)).float().mean((1, 2, 3))

        near = neighbours(f)
        lap = laplacian(f, near)
        lapvar = lap.var((-1, -2), unbiased=False)
        feats["sharp_lapvar_log"] = _log(lapvar).mean((1, 2))
        feats["sharp_lapvar_p90_log"] = _log(percentile(lapvar, 90, 2)).mean(1)
        _, up, down, left, right = near
        gx, gy = right - left, down - up
        ex = (gx * gx).mean((1, 2, 3, 4))
        ey = (gy * gy).mean((1, 2, 3, 4))
        feats["sharp_hf_ratio_log"] = _log((lap * lap).mean((1, 2, 3, 4)) / (ex + ey + 1.0))
        feats["sharp_anisotropy"] = torch.abs(torch.log((ex + 1.0) / (ey + 1.0)))

        d2 = f[..., :-2, :] - 2.0 * f[..., 1:-1, :] + f[..., 2:, :]
        d2 = d2[..., :-2] - 2.0 * d2[..., 1:-1] + d2[..., 2:]
        sigma = math.sqrt(math.pi / 2.0) / 6.0 * d2.abs().mean((-1, -2))
        feats["noise_immerkaer_p10_log"] = _log(percentile(sigma, 10, 2)).mean(1)
        feats["noise_immerkaer_median_log"] = _log(percentile(sigma, 50, 2)).mean(1)

        dh = (f[..., 1:] - f[..., :-1]).abs().sum(1).sum(-2)  # [n, G, 31]
        dv = (f[..., 1:, :] - f[..., :-1, :]).abs().sum(1).sum(-1)
        (bh, bh8), (bv, bv8) = _phase_blockiness(dh), _phase_blockiness(dv)
        feats["block_h_log"] = _log(percentile(bh, 50, 1) - 1.0 + 1e-2)
        feats["block_v_log"] = _log(percentile(bv, 50, 1) - 1.0 + 1e-2)
        feats["block_max_log"] = _log(percentile(torch.maximum(bh, bv), 75, 1) - 1.0 + 1e-2)
        feats["block8_h_log"] = _log(percentile(bh8, 50, 1))
        feats["block8_v_log"] = _log(percentile(bv8, 50, 1))

        grad = gx.abs() + gy.abs()
        edges = (grad > _STRONG_EDGE).float()
        grown1 = _dilate(edges, 1)
        grown3 = _dilate(grown1, 2)
        near = grown3 * (1.0 - grown1)
        far = 1.0 - grown3
        alap = lap.abs()
        near_e = (alap * near).sum((1, 2, 3, 4)) / (near.sum((1, 2, 3, 4)) + 1.0)
        far_e = (alap * far).sum((1, 2, 3, 4)) / (far.sum((1, 2, 3, 4)) + 1.0)
        feats["ringing_near_edge_log"] = _log(near_e)
        feats["ringing_ratio_log"] = _log((near_e + 1.0) / (far_e + 1.0))
        feats["edge_frac"] = edges.mean((1, 2, 3, 4))

        feats.update(self._banding(win[:, WINDOW_FRAMES // 2]))

        rg = r - g
        yb = 0.5 * (r + g) - b
        std_term = torch.sqrt(rg.var((-1, -2), unbiased=False) + yb.var((-1, -2), unbiased=False))
        mean_term = torch.sqrt(rg.mean((-1, -2)) ** 2 + yb.mean((-1, -2)) ** 2)
        feats["colourfulness_log"] = _log((std_term + 0.3 * mean_term).mean(1))
        mx = torch.maximum(torch.maximum(r, g), b)
        mn = torch.minimum(torch.minimum(r, g), b)
        sat = (mx - mn) / (mx + 1.0)
        feats["saturation_mean"] = sat.mean((1, 2, 3))
        feats["saturation_p95"] = _upper_percentile(sat[:, len(self.spatial_frames) // 2].reshape(n, -1), 95)
        clipped = ((rgb == 0.0) | (rgb == 255.0)).float().amax(2)
        feats["clipped_frac"] = clipped.mean((1, 2, 3))

        isolated = ((alap > _IMPULSE) & (grad < 0.5 * alap)).float()
        feats["impulse_frac_log"] = torch.log(isolated.mean((1, 2, 3, 4)) + 1e-5)

        feats.update(self._temporal(frame_steps, feats["sharp_lapvar_log"]))
        return feats

    @staticmethod
    def _banding(mid_rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        n = mid_rgb.shape[0]
        mid = fragments(mid_rgb)  # [n, 3, G, 32, 32]
        flat = mid.reshape(n, 3, mid.shape[2], -1)
        span = flat.amax(-1) - flat.amin(-1) + 1.0
        smooth = ((span >= 6) & (span <= 96)).float()
        gh = (mid[..., 1:] - mid[..., :-1]).abs()
        gv = (mid[..., 1:, :] - mid[..., :-1, :]).abs()
        sm = smooth[..., None, None]
        small_h, small_v = (gh <= 16).float() * sm, (gv <= 16).float() * sm
        n_small = small_h.sum((1, 2, 3, 4)) + small_v.sum((1, 2, 3, 4))
        zeros = ((gh == 0).float() * small_h).sum((1, 2, 3, 4)) + ((gv == 0).float() * small_v).sum((1, 2, 3, 4))
        steps = (gh * small_h).sum((1, 2, 3, 4)) + (gv * small_v).sum((1, 2, 3, 4))
        nonzero = n_small - zeros
        return {
            "band_zero_grad_frac": torch.where(n_small > 0, zeros / n_small.clamp(min=1.0), torch.zeros_like(n_small)),
            "band_step_mean": torch.where(nonzero > 0, steps / nonzero.clamp(min=1.0), torch.zeros_like(nonzero)),
        }

    @staticmethod
    def _temporal(diff: torch.Tensor, sharp_lapvar_log: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per fragment, the six differences' Gram matrix (one batched matrix product) gives every
        energy and lagged cross product the ghosting measures need."""
        feats: dict[str, torch.Tensor] = {}
        n, steps, h, w = diff.shape
        s = FRAGMENT_SIZE
        rows, cols = h // s, w // s
        per_fragment = diff.reshape(n, steps, rows, s, cols, s).permute(0, 2, 4, 1, 3, 5)
        d = per_fragment.reshape(n, rows * cols, steps, s * s)  # [n, G, 6, 1024]
        step = d.abs().mean(-1).transpose(1, 2)  # [n, 6, G]
        motion = step.mean((1, 2))
        feats["motion_log"] = _log(motion)
        steps_w = step.mean(2)
        feats["judder_cv"] = steps_w.std(1, unbiased=False) / (steps_w.mean(1) + 0.5)
        feats["judder_minmax"] = (steps_w.amin(1) + 0.1) / (steps_w.amax(1) + 0.1)
        feats["judder_still_frac"] = (steps_w < 0.3 * steps_w.amax(1, keepdim=True)).float().mean(1)
        moving = (step.mean(1) > _MOVING).float()  # [n, G]
        # on the 0..1 scale a fragment's entries stay below 1,024: inside fp16, where CUDA autocast runs matmul
        unit = d * (1.0 / 255.0)
        gram = torch.matmul(unit, unit.transpose(-1, -2)).float() * (255.0 * 255.0)
        gram = (gram * moving[:, :, None, None]).sum(1)  # [n, 6, 6]
        energy = torch.diagonal(gram, dim1=1, dim2=2)  # [n, 6]
        for lag in (1, 2, 3):
            cross = torch.diagonal(gram, offset=lag, dim1=1, dim2=2).sum(1)
            e_now, e_then = energy[:, lag:].sum(1), energy[:, :-lag].sum(1)
            if lag == 1:
                feats["ghost_lag1_coef"] = cross / (e_then + 1.0)
            else:
                feats[f"ghost_lag{lag}_corr"] = cross / (torch.sqrt(e_now * e_then) + 1.0)
        dsub = d[:, :, ::2].reshape(n, rows * cols, -1, s, s)  # every second step is enough for this ratio
        dlap = laplacian(dsub)
        dg = dsub[..., 1:-1, 1:-1]
        feats["diff_hf_ratio_log"] = _log((dlap * dlap).mean((1, 2, 3, 4)) / ((dg * dg).mean((1, 2, 3, 4)) + 1.0))
        feats["motion_blur_cue"] = feats["motion_log"] - sharp_lapvar_log
        return feats
