"""Degradations made by FFmpeg's own filters (PyAV's filter graph), a second implementation of the
artifacts :mod:`export.degrade` makes with numpy, OpenCV and the scene renderer.

A model that learned one implementation of an artifact should recognise another; training on several
and holding one out per family (``export.build_dataset`` :data:`~export.build_dataset.HELDOUT_GENERATORS`)
measures that. Each generator returns frames (RGB uint8 ``[T, H, W, 3]``) and
:class:`~export.degrade.Labels` on the same intensity scales as :mod:`export.degrade`:

================  ==========================================  ==========================================
filter            artifact                                    intensity
================  ==========================================  ==========================================
noise             gaussian_noise                              measured luma noise std / 25
gblur, avgblur    defocus_blur                                equivalent disk radius (2 sigma) / 6
scale (kernels)   defocus_blur                                (factor - 1) / 3
dblur             motion_blur (a directional smear)           length / 24
tmix, tblend      motion_blur (frames averaged)               speed x (frames - 1) / 24
lagfun            ghosting (long-decay trails)                (decay - 0.5) / 0.5
fps + framerate   ghosting (frame-rate conversion by blending) 0.75
fps               judder (frames dropped and repeated)        mean jump / 30
lutyuv            color_banding (luma bit depth)              (48 - levels) / 40
hue s=            saturation                                  as :func:`export.degrade.saturation_labels`
================  ==========================================  ==========================================

Temporal filters need the frames before the clip: callers pass ``pre`` pre-roll frames in front and
get back ``len(frames) - pre`` frames.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from export.degrade import DEFOCUS_MAX_RADIUS, FPS, Labels, mean_saturation, saturation_labels

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def run_filters(frames: np.ndarray, chain: list[tuple[str, str]], fps: int = FPS) -> np.ndarray:
    """Push RGB frames through ``chain`` (``[(filter, arguments), ...]``) and return every frame out."""
    import av

    graph = av.filter.Graph()
    h, w = frames.shape[1:3]
    time_base = Fraction(1, fps)
    nodes = [graph.add_buffer(width=w, height=h, format="rgb24", time_base=time_base)]
    nodes += [graph.add(name, args) for name, args in chain]
    nodes += [graph.add("format", "rgb24"), graph.add("buffersink")]
    graph.link_nodes(*nodes).configure()
    out: list[np.ndarray] = []

    def drain() -> None:
        while True:
            try:
                out.append(graph.pull().to_ndarray())
            except (av.BlockingIOError, av.EOFError):
                return

    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = i, time_base
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    return np.stack(out)


def _take(out: np.ndarray, n: int) -> np.ndarray:
    """The last ``n`` frames (temporal filters' output after their pre-roll), repeating the last if short."""
    if len(out) < n:
        out = np.concatenate([out, np.repeat(out[-1:], n - len(out), 0)])
    return out[len(out) - n:]


def luma_std_added(before: np.ndarray, after: np.ndarray) -> float:
    """Standard deviation of the luma change: what a noise filter actually added (0..255)."""
    diff = (after.astype(np.float32) - before.astype(np.float32)) @ LUMA
    return float(diff.std())


# ------------------------------------------------------------------------------------------- spatial
def noise(frames: np.ndarray, strength: int, temporal: bool = True, uniform: bool = False) -> tuple[np.ndarray, Labels]:
    """FFmpeg ``noise``: additive noise of ``strength`` (0..100) on every plane, new each frame if ``temporal``."""
    flags = "+".join(f for f, on in (("t", temporal), ("u", uniform)) if on) or "a"
    out = run_filters(frames, [("noise", f"alls={int(strength)}:allf={flags}")])
    sigma = luma_std_added(frames, out)
    return out, Labels().add("gaussian_noise", sigma / 25.0, sigma >= 2.0)


def gaussian_blur(frames: np.ndarray, sigma: float) -> tuple[np.ndarray, Labels]:
    """FFmpeg ``gblur``; a disk of radius 2 sigma has the same spread."""
    out = run_filters(frames, [("gblur", f"sigma={sigma:.3f}")])
    radius = 2.0 * sigma
    return out, Labels().add("defocus_blur", radius / DEFOCUS_MAX_RADIUS, radius >= 1.0)


def box_blur(frames: np.ndarray, radius: int) -> tuple[np.ndarray, Labels]:
    """FFmpeg ``avgblur`` (a (2r+1)-pixel box), labelled by the disk radius of the same spread."""
    out = run_filters(frames, [("avgblur", f"sizeX={int(radius)}")])
    equivalent = 2.0 * np.sqrt(((2 * radius + 1) ** 2 - 1) / 12.0)
    return out, Labels().add("defocus_blur", equivalent / DEFOCUS_MAX_RADIUS, equivalent >= 1.0)


SCALE_KERNELS = ("bilinear", "bicubic", "lanczos", "neighbor", "area", "spline", "gauss")


def rescale(frames: np.ndarray, factor: float, down: str = "bicubic", up: str = "bilinear") -> tuple[np.ndarray, Labels]:
    """FFmpeg ``scale`` down by ``factor`` with one kernel and back up with another (an ABR rung shown
    full-screen without its codec)."""
    h, w = frames.shape[1:3]
    sw, sh = max(16, int(round(w / factor / 2)) * 2), max(16, int(round(h / factor / 2)) * 2)
    out = run_filters(frames, [("scale", f"{sw}:{sh}:flags={down}"), ("scale", f"{w}:{h}:flags={up}")])
    return out, Labels().add("defocus_blur", (factor - 1.0) / 3.0, factor >= 1.5)


def directional_blur(frames: np.ndarray, length: float, angle: float) -> tuple[np.ndarray, Labels]:
    """FFmpeg ``dblur``: a straight smear of about ``length`` px at ``angle`` degrees (camera shake)."""
    out = run_filters(frames, [("dblur", f"angle={angle:.1f}:radius={max(1.0, length / 2):.2f}")])
    return out, Labels().add("motion_blur", length / 24.0, length >= 3.0)


def bit_depth(frames: np.ndarray, bits: int) -> tuple[np.ndarray, Labels]:
    """FFmpeg ``lutyuv`` keeping ``bits`` of the 8 luma bits: smooth gradients become bands."""
    mask = (0xFF << (8 - int(bits))) & 0xFF
    out = run_filters(frames, [("lutyuv", f"y=bitand(val\\,{mask})")])
    levels = 2 ** int(bits)
    return out, Labels().add("color_banding", (48 - levels) / 40.0, levels <= 40)


def hue_saturation(frames: np.ndarray, factor: float) -> tuple[np.ndarray, Labels]:
    """FFmpeg ``hue=s=``: saturation scaled by ``factor``, in its own colour model."""
    out = run_filters(frames, [("hue", f"s={factor:.3f}")])
    return out, saturation_labels(factor, mean_saturation(frames))


# ------------------------------------------------------------------------------------------ temporal
def frame_average(frames: np.ndarray, count: int, speed: float, pre: int) -> tuple[np.ndarray, Labels]:
    """FFmpeg ``tmix``: each frame the mean of the last ``count`` (motion blur by frame averaging)."""
    out = _take(run_filters(frames, [("tmix", f"frames={int(count)}")]), len(frames) - pre)
    length = speed * (count - 1)
    return out, Labels().add("motion_blur", length / 24.0, length >= 3.0)


def blend_pairs(frames: np.ndarray, speed: float, pre: int) -> tuple[np.ndarray, Labels]:
    """FFmpeg ``tblend=all_mode=average``: each frame the mean of itself and the one before."""
    out = _take(run_filters(frames, [("tblend", "all_mode=average")]), len(frames) - pre)
    return out, Labels().add("motion_blur", speed / 24.0, speed >= 3.0)


def trails(frames: np.ndarray, decay: float, speed: float, pre: int) -> tuple[np.ndarray, Labels]:
    """FFmpeg ``lagfun``: bright content leaves trails that fade by ``decay`` per frame."""
    out = _take(run_filters(frames, [("lagfun", f"decay={decay:.3f}")]), len(frames) - pre)
    return out, Labels().add("ghosting", (decay - 0.5) / 0.5, decay >= 0.6 and speed >= 1.0)


def blended_rate_conversion(frames: np.ndarray, rate: float, speed: float, pre: int) -> tuple[np.ndarray, Labels]:
    """Down to ``rate`` fps and back to 25 with FFmpeg ``framerate`` blending neighbours: double images."""
    chain = [("fps", f"{rate:.4f}"), ("framerate", f"fps={FPS}:interp_start=0:interp_end=255")]
    out = _take(run_filters(frames, chain), len(frames) - pre)
    step = speed * FPS / rate
    return out, Labels().add("ghosting", 0.75, step >= 2.0)


def drop_repeat(frames: np.ndarray, rate: float, speed: float, pre: int) -> tuple[np.ndarray, Labels]:
    """FFmpeg ``fps`` down to ``rate`` and back to 25: frames dropped and repeated (uneven motion)."""
    out = _take(run_filters(frames, [("fps", f"{rate:.4f}"), ("fps", str(FPS))]), len(frames) - pre)
    hold = FPS / rate
    jump = speed * hold
    return out, Labels().add("judder", jump / 30.0, jump >= 4.0 and hold >= 1.5)
