"""Real test clips for the signal checks, encoded with PyAV's libx264 (CRF, 1 s GOP, no B-frames),
then decoded frame by frame exactly as the daemon decodes a stream.

The pictures come from scikit-image's bundled photograph ``coffee`` (600x400), cropped at native
resolution; motion is a sub-pixel pan with cv2.warpAffine (real global motion, not whole-pixel steps).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

W, H, FPS = 480, 272, 25


def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.coffee())  # RGB uint8 400x600


def _crop(img: np.ndarray, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    import cv2

    m = np.float32([[1, 0, -(40.0 + dx)], [0, 1, -(40.0 + dy)]])
    return cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


class _Noise:
    """Fresh-looking Gaussian noise per frame, cheaply: the sum of two fields drawn from a bank of 24
    independent ones (276 distinct pairs, scaled back to unit variance), never the same pair twice in a row."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.bank = rng.standard_normal((24, H, W, 3), dtype=np.float32) / np.float32(np.sqrt(2.0))

    def __call__(self) -> np.ndarray:
        a, b = self.rng.choice(len(self.bank), size=2, replace=False)
        return self.bank[a] + self.bank[b]


def _noisy(img: np.ndarray, noise: _Noise, sigma: float, gain: float = 1.0) -> np.ndarray:
    out = img.astype(np.float32) * np.float32(gain)
    if sigma:
        out += np.float32(sigma) * noise()
    return np.clip(out, 0, 255).astype(np.uint8)


def encode(path: Path, frames: Iterator[np.ndarray], crf: int = 23, gop: int = FPS) -> Path:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": str(crf), "g": str(gop), "bf": "0", "preset": "veryfast"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def black_frames(n: int) -> Iterator[np.ndarray]:
    """FFmpeg's lavfi ``color=black`` source, as RGB frames."""
    with av.open(f"color=c=black:s={W}x{H}:r={FPS}:d={n / FPS}", format="lavfi") as src:
        for frame in src.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def frozen_frames(n: int) -> Iterator[np.ndarray]:
    still = _crop(photo())
    for _ in range(n):
        yield still


def static_noise_frames(n: int, sigma: float = 1.0, seed: int = 1) -> Iterator[np.ndarray]:
    """A camera on a static scene: the same picture, fresh sensor noise in every frame."""
    noise, still = _Noise(np.random.default_rng(seed)), _crop(photo())
    for _ in range(n):
        yield _noisy(still, noise, sigma)


def slow_pan_frames(n: int, speed: float = 0.05, sigma: float = 0.7, gain: float = 1.0,
                    seed: int = 2) -> Iterator[np.ndarray]:
    """Nearly static: a sub-pixel pan of ``speed`` px/frame (1.25 px/s) with light noise."""
    noise, img = _Noise(np.random.default_rng(seed)), photo()
    for i in range(n):
        yield _noisy(_crop(img, speed * i, 0.4 * speed * i), noise, sigma, gain)


def dark_frames(n: int) -> Iterator[np.ndarray]:
    """A dim scene (12% brightness: a night shot), slow pan and sensor noise: dark but not black."""
    return slow_pan_frames(n, speed=0.3, sigma=1.5, gain=0.12, seed=3)


def then(*parts: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    for part in parts:
        yield from part


CLIPS: dict[str, Callable[[], Iterator[np.ndarray]]] = {
    "black": lambda: black_frames(100),
    "dark": lambda: dark_frames(200),
    "frozen": lambda: frozen_frames(200),
    "static_noise": lambda: static_noise_frames(200, sigma=1.0),
    "static_noise_light": lambda: static_noise_frames(200, sigma=0.5),
    "slow_pan": lambda: slow_pan_frames(200),
    "frozen_then_live": lambda: then(frozen_frames(175), slow_pan_frames(100, speed=0.5)),
    "black_then_picture": lambda: then(black_frames(100), slow_pan_frames(75, speed=0.5)),
}


def make_clip(directory: Path, name: str, crf: int = 23) -> Path:
    path = directory / f"{name}_crf{crf}.mp4"
    if not path.exists():
        encode(path, CLIPS[name](), crf=crf)
    return path


def decoded(path: Path) -> Iterator[tuple[float, "av.VideoFrame"]]:
    """(time, frame) for every frame; time is the frame index / fps, a monotonic clock as live."""
    with av.open(str(path)) as src:
        for index, frame in enumerate(src.decode(video=0)):
            yield index / FPS, frame
