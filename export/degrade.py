"""Degradation generators: each makes one artifact at native resolution and says how strong it is.

Every generator returns the distorted frames (RGB uint8 ``[T, H, W, 3]``) or file, together with
:class:`Labels` - per-artifact presence (0/1) and intensity (0..1) in :data:`engines.contract.ARTIFACTS`
order.  Pixel generators work on frames; motion blur and judder need the moving scene itself
(:class:`export.references.Scene`), because they are made by integrating or resampling the motion
(judder: the scene rendered at :func:`judder_times`, labelled by :func:`judder_labels`);
encoders are the real libraries (libx264, libx265, libvpx-vp9, libsvtav1, mpeg2video, mpeg4, mjpeg)
through PyAV, at constant quality, constant quantiser and starved constant bitrate; FFmpeg's own
filters make a second implementation of the other artifacts (:mod:`export.filters`).

Intensity mappings (one place, used by the labels and the tests):

==============  =====================================================  ============================
artifact        parameter                                              intensity
==============  =====================================================  ============================
blocking        encoder ladder position ``c`` (e.g. x264 CRF 23..51)   ``c``; present if c >= 0.32
ringing         same                                                   ``c``; present if c >= 0.5
gaussian_noise  sigma (0..255 scale)                                   sigma / 25
impulse_noise   fraction of pixels hit ``p``                           log(p/0.001) / log(50)
defocus_blur    disk radius r px / down-up scale factor f              r / 6  /  (f - 1) / 3
motion_blur     blur length L = speed * shutter (px)                   L / 24
ghosting        blend weight a of the delayed frame                    a / 0.5
judder          mean jump of held frames J (px)                        J / 30
color_banding   luma levels n                                          (48 - n) / 40
saturation      HSV saturation factor s; input's mean saturation m     (|s - 1| (down), (s - 1)/1.6 (up))
                                                                       * min(1, m / 0.15); present if
                                                                       |s-1| >= 0.25 and m >= 0.075
==============  =====================================================  ============================

The saturation intensity is scaled by how much colour the input had: scaling the saturation of a
(nearly) grey picture changes nothing, so it is not labelled.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from engines.contract import ARTIFACTS, NUM_ARTIFACTS

FPS = 25
DEFOCUS_MAX_RADIUS = 6.0
INDEX = {name: i for i, name in enumerate(ARTIFACTS)}


@dataclass
class Labels:
    presence: np.ndarray = field(default_factory=lambda: np.zeros(NUM_ARTIFACTS, np.float32))
    intensity: np.ndarray = field(default_factory=lambda: np.zeros(NUM_ARTIFACTS, np.float32))

    def add(self, name: str, intensity: float, present: bool = True) -> "Labels":
        i = INDEX[name]
        if present:
            self.presence[i] = 1.0
            self.intensity[i] = max(self.intensity[i], float(np.clip(intensity, 0.05, 1.0)))
        return self

    def merge(self, other: "Labels") -> "Labels":
        self.presence = np.maximum(self.presence, other.presence)
        self.intensity = np.maximum(self.intensity, other.intensity)
        return self

    def names(self) -> list[str]:
        return [ARTIFACTS[i] for i in np.flatnonzero(self.presence)]


def _clip01(x: float) -> float:
    return float(np.clip(x, 0.0, 1.0))


# ------------------------------------------------------------------------------------------- noise
def gaussian_noise(frames: np.ndarray, sigma: float, rng: np.random.Generator) -> tuple[np.ndarray, Labels]:
    """Independent per-pixel, per-frame, per-channel gaussian noise of std ``sigma`` (0..255)."""
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        noisy = f.astype(np.float32) + rng.normal(0.0, sigma, size=f.shape).astype(np.float32)
        out[i] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out, Labels().add("gaussian_noise", sigma / 25.0, sigma >= 2.0)


def impulse_noise(frames: np.ndarray, amount: float, rng: np.random.Generator, salt: float = 0.5) -> tuple[np.ndarray, Labels]:
    """Salt-and-pepper: a fraction ``amount`` of pixels (all channels) set to 255 (salt) or 0 (pepper)."""
    out = frames.copy()
    t, h, w = frames.shape[:3]
    for i in range(t):
        hit = rng.random((h, w)) < amount
        white = rng.random((h, w)) < salt
        out[i][hit & white] = 255
        out[i][hit & ~white] = 0
    inten = np.log(max(amount, 1e-6) / 0.001) / np.log(50.0)
    return out, Labels().add("impulse_noise", inten, amount >= 0.001)


def impulse_noise_channels(frames: np.ndarray, amount: float, rng: np.random.Generator) -> tuple[np.ndarray, Labels]:
    """Impulses in each colour channel independently (coloured specks, as from bit errors in RGB)."""
    out = frames.copy()
    hit = rng.random(frames.shape) < amount
    white = rng.random(frames.shape) < 0.5
    out[hit & white] = 255
    out[hit & ~white] = 0
    inten = np.log(max(amount, 1e-6) / 0.001) / np.log(50.0)
    return out, Labels().add("impulse_noise", inten, amount >= 0.001)


# -------------------------------------------------------------------------------------------- blur
def disk_kernel(radius: float) -> np.ndarray:
    """Normalised disk PSF (defocus) of ``radius`` px, anti-aliased at the rim."""
    r = max(float(radius), 0.5)
    n = int(np.ceil(r)) * 2 + 1
    yy, xx = np.mgrid[:n, :n] - n // 2
    k = np.clip(r + 0.5 - np.hypot(yy, xx), 0.0, 1.0).astype(np.float32)
    return k / k.sum()


def defocus_blur(frames: np.ndarray, radius: float) -> tuple[np.ndarray, Labels]:
    """Out-of-focus blur: convolution with a disk of ``radius`` px."""
    import cv2

    k = disk_kernel(radius)
    out = np.stack([cv2.filter2D(f, -1, k, borderType=cv2.BORDER_REFLECT101) for f in frames])
    return out, Labels().add("defocus_blur", radius / DEFOCUS_MAX_RADIUS, radius >= 1.0)


def rescale_blur(frames: np.ndarray, factor: float, down: str = "area", up: str = "linear") -> tuple[np.ndarray, Labels]:
    """Down-scale by ``factor`` then back up (a low-resolution rendition upscaled by the player)."""
    import cv2

    interp = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
    h, w = frames.shape[1:3]
    sw, sh = max(16, int(round(w / factor))), max(16, int(round(h / factor)))
    out = np.stack([cv2.resize(cv2.resize(f, (sw, sh), interpolation=interp[down]), (w, h), interpolation=interp[up]) for f in frames])
    return out, Labels().add("defocus_blur", (factor - 1.0) / 3.0, factor >= 1.5)


def motion_blur(scene, times: Sequence[float], shutter: float, substeps: int = 0) -> tuple[np.ndarray, Labels]:
    """Temporal integration of the moving scene over ``shutter`` frame intervals (1.0 = 360 degree shutter).

    The scene is rendered at ``substeps`` sub-frame positions inside the shutter and averaged, exactly as a
    camera sensor integrates light.  Blur length = scene speed x shutter.
    """
    speed = scene.motion_speed()
    length = speed * shutter
    if substeps <= 0:
        substeps = int(np.clip(np.ceil(length / 1.5), 3, 16))
    # Scene.render samples both ends of the interval it is given, which smears n/(n-1) x too far (1.5x at
    # n = 3).  Samples at the centres of n equal slices of the shutter (midpoint rule, spacing L/n) are
    # the end points of an interval (n-1)/n as long.
    frames = scene.render(times, shutter=shutter * (substeps - 1) / substeps, substeps=substeps)
    return frames, Labels().add("motion_blur", length / 24.0, length >= 3.0)


# ------------------------------------------------------------------------------------------ temporal
def ghosting(frames: np.ndarray, alpha: float, delay: int, speed: float) -> tuple[np.ndarray, Labels]:
    """``out[t] = (1 - alpha) * f[t] + alpha * f[t - delay]``: a faint delayed copy (echo) of moving content.

    ``frames`` must hold ``delay`` pre-roll frames in front; the result has ``delay`` fewer frames.
    ``speed`` (px/frame) decides whether the echo is visible (it is invisible on static content).
    """
    cur = frames[delay:].astype(np.float32)
    old = frames[:-delay].astype(np.float32) if delay else cur
    out = np.clip(np.rint((1.0 - alpha) * cur + alpha * old), 0, 255).astype(np.uint8)
    visible = alpha >= 0.1 and speed * delay >= 2.0
    return out, Labels().add("ghosting", alpha / 0.5, visible)


JUDDER_PATTERNS = {
    "12.5fps": (2,),  # every frame shown twice: 25 -> 12.5 fps with duplicates
    "pulldown23": (2, 3),  # 10 fps content on 25 fps, uneven 2-3 holds (like telecine pulldown)
    "drop3": (3,),  # 8.3 fps, each frame shown three times
    "uneven": (1, 2, 1, 3),  # irregular drops (a stuttering encoder / network)
}


def judder_times(n_frames: int, pattern: Sequence[int], offset: int = 0) -> np.ndarray:
    """Frame times for a hold pattern: each source time is shown ``pattern[k]`` times, cycling.

    The source advances by the hold length, so the motion keeps its speed on average but moves in uneven
    jumps; holds are at most 3 frames, so it never looks like a freeze.
    """
    times = []
    t, k = float(-offset), 0
    while len(times) < n_frames + offset:
        hold = int(pattern[k % len(pattern)])
        times += [t] * hold
        t += hold
        k += 1
    return np.asarray(times[offset:offset + n_frames], dtype=np.float64)


def judder_labels(speed: float, pattern: Sequence[int]) -> Labels:
    """Labels of a scene moving ``speed`` px/frame shown at :func:`judder_times` of ``pattern``: the mean
    jump between held frames, visible from 4 px when some frame is held."""
    jump = speed * float(np.mean(pattern))
    return Labels().add("judder", jump / 30.0, jump >= 4.0 and max(pattern) >= 2)


# ------------------------------------------------------------------------------------------- colour
def color_banding(frames: np.ndarray, levels: int, chroma_levels: int | None = None) -> tuple[np.ndarray, Labels]:
    """Posterise luma to ``levels`` (and chroma to ``chroma_levels``) in YCrCb: smooth gradients become bands."""
    import cv2

    chroma_levels = chroma_levels or max(4, levels // 2)
    out = np.empty_like(frames)
    ly, lc = 255.0 / (levels - 1), 255.0 / (chroma_levels - 1)
    for i, f in enumerate(frames):
        ycc = cv2.cvtColor(f, cv2.COLOR_RGB2YCrCb).astype(np.float32)
        ycc[..., 0] = np.rint(ycc[..., 0] / ly) * ly
        ycc[..., 1:] = np.rint((ycc[..., 1:] - 128.0) / lc) * lc + 128.0
        out[i] = cv2.cvtColor(np.clip(ycc, 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB)
    return out, Labels().add("color_banding", (48 - levels) / 40.0, levels <= 40)


SATURATION_COLOURFUL = 0.15  # mean HSV saturation (0..1) from which a picture has its full colour to lose or gain


def saturation(frames: np.ndarray, factor: float) -> tuple[np.ndarray, Labels]:
    """Scale HSV saturation by ``factor`` (< 1 washed out, 0 = grey; > 1 oversaturated)."""
    import cv2

    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        hsv = cv2.cvtColor(f, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0, 255)
        out[i] = cv2.cvtColor(np.rint(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB)
    return out, saturation_labels(factor, mean_saturation(frames))


def mean_saturation(frames: np.ndarray) -> float:
    """Mean HSV saturation (0..1) of RGB uint8 frames ``[T, H, W, 3]``."""
    import cv2

    return float(np.mean([cv2.cvtColor(f, cv2.COLOR_RGB2HSV)[..., 1].mean() for f in frames])) / 255.0


def saturation_labels(factor: float, mean_saturation: float) -> Labels:
    """Labels of a saturation change by ``factor`` on a picture of mean HSV saturation ``mean_saturation`` (0..1)."""
    colour = min(1.0, mean_saturation / SATURATION_COLOURFUL)
    inten = ((1.0 - factor) if factor < 1 else (factor - 1.0) / 1.6) * colour
    return Labels().add("saturation", inten, abs(factor - 1.0) >= 0.25 and colour >= 0.5)


# ------------------------------------------------------------------------------------------ encoders
@dataclass(frozen=True)
class Ladder:
    codec: str
    param: str  # "crf" | "qp" | "q" | "bitrate"
    lo: float  # value at strength 0 (nearly clean)
    hi: float  # value at strength 1 (worst)
    container: str = "mkv"


ENCODERS: dict[str, Ladder] = {
    "x264": Ladder("libx264", "crf", 23, 51),
    "x265": Ladder("libx265", "crf", 23, 51),
    "vp9": Ladder("libvpx-vp9", "crf", 28, 63),
    "mpeg2": Ladder("mpeg2video", "q", 2, 31),
    "mjpeg": Ladder("mjpeg", "q", 2, 31),
    "x264br": Ladder("libx264", "bitrate", 0.15, 0.003),  # bits per pixel per frame (log scale)
    "x264qp": Ladder("libx264", "qp", 23, 51),  # constant quantiser: no rate control at all
    "x265br": Ladder("libx265", "bitrate", 0.15, 0.003),
    "vp9br": Ladder("libvpx-vp9", "bitrate", 0.15, 0.003),
    "av1": Ladder("libsvtav1", "crf", 30, 63),
    "mpeg4": Ladder("mpeg4", "q", 2, 31),
}
BLOCKING_FROM = 0.32
RINGING_FROM = 0.5


def ladder_strength(name: str, value: float) -> float:
    lad = ENCODERS[name]
    if lad.param == "bitrate":
        return _clip01(np.log(lad.lo / value) / np.log(lad.lo / lad.hi))
    return _clip01((value - lad.lo) / (lad.hi - lad.lo))


def encoder_labels(name: str, value: float) -> Labels:
    c = ladder_strength(name, value)
    lab = Labels().add("blocking", c, c >= BLOCKING_FROM)
    lab.add("ringing", c, c >= RINGING_FROM)
    return lab


def encode(frames: np.ndarray, path: str | Path, name: str, value: float, fps: int = FPS,
           preset: str = "veryfast", threads: int = 1) -> tuple[Path, Labels]:
    """Encode RGB frames with a real encoder (``name`` in :data:`ENCODERS`) at ladder ``value``.

    x264/x265 CRF, VP9 constant quality (CRF with b=0), MPEG-2 and MJPEG fixed quantiser (qmin = qmax),
    x264 bitrate in bits per pixel per frame.  The output keeps the encoder's own pixel format
    (yuv420p; yuvj420p for MJPEG) so decoding it gives exactly what a viewer of such a stream gets.
    """
    import av

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only
    lad = ENCODERS[name]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    h, w = frames.shape[1:3]
    pix = "yuvj420p" if lad.codec == "mjpeg" else "yuv420p"
    opts: dict[str, str] = {}
    v = float(value)
    kbps = max(8, int(v * w * h * fps / 1000))
    starved = {"b": f"{kbps}k", "maxrate": f"{kbps}k", "bufsize": f"{2 * kbps}k"}
    if lad.codec == "libx264":
        opts = {"preset": preset, "threads": str(threads)}
        opts.update(starved if lad.param == "bitrate" else {lad.param: str(int(round(v)))})
    elif lad.codec == "libx265":
        opts = {"preset": "ultrafast" if preset in ("ultrafast", "superfast") else "veryfast",
                "x265-params": f"log-level=error:pools={threads}:frame-threads=1"}
        opts.update(starved if lad.param == "bitrate" else {"crf": str(int(round(v)))})
    elif lad.codec == "libvpx-vp9":
        opts = {"deadline": "realtime", "cpu-used": "7", "threads": str(threads), "row-mt": "0"}
        opts.update(starved if lad.param == "bitrate" else {"crf": str(int(round(v))), "b": "0"})
    elif lad.codec == "libsvtav1":
        opts = {"crf": str(int(round(v))), "preset": "12", "svtav1-params": f"lp={threads}"}
    else:  # mpeg2video, mpeg4, mjpeg: fixed quantiser
        q = str(int(round(v)))
        opts = {"qmin": q, "qmax": q, "b": "200M", "threads": str(threads)}
    with av.open(str(tmp), "w", format="matroska") as c:
        s = c.add_stream(lad.codec, rate=Fraction(fps, 1))
        s.width, s.height, s.pix_fmt = w, h, pix
        if lad.codec in ("libx264", "libx265", "mpeg2video", "mpeg4", "libsvtav1"):
            s.codec_context.gop_size = fps
        s.options = opts
        for rgb in frames:
            fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    if lad.codec == "libsvtav1":
        reset_scheduling()
    os.replace(tmp, path)
    return path, encoder_labels(name, value)


def reset_scheduling() -> None:
    """Put every thread of this process back on the normal scheduler.

    Run as root, SVT-AV1 gives the threads it creates real-time priority (SCHED_FIFO 99), and what this
    process starts afterwards (VMAF's ffmpeg, a test's daemon) would inherit it and starve the machine."""
    for task in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else []:
        try:
            if os.sched_getscheduler(int(task)) != os.SCHED_OTHER:
                os.sched_setscheduler(int(task), os.SCHED_OTHER, os.sched_param(0))
        except OSError:  # the thread has ended
            pass


def decode_rgb(path: str | Path) -> np.ndarray:
    """All frames of a file as RGB uint8 (tests and tools)."""
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
