"""Fragment sampler: the one way a decoded frame becomes a 224x224 model input.

Each frame is cut into a 7x7 grid of cells; from every cell one 32x32 fragment is taken at
native resolution (no resizing, so blocking, ringing and noise survive) and the 49 fragments are
tiled into a 224x224 image. The same offsets are used for all 7 frames of a window so that
temporal differences between fragments show motion, judder and ghosting.

Sampling works straight on the decoded YUV 4:2:0 planes: only the 49 fragments (5% of a 720p
frame) are converted to RGB, never the whole frame. Training and inference both go through
:func:`sample_frame`, so they see identical pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.contract import FRAGMENT_GRID, FRAGMENT_SIZE, INPUT_SIZE

_CHROMA_RANGE = np.arange(FRAGMENT_SIZE // 2)
_YUV_FORMATS = {"yuv420p": False, "yuvj420p": True}  # name -> full range


@dataclass(frozen=True)
class Planes:
    """Views of one frame's Y, U, V planes (4:2:0), plus whether the range is full (JPEG)."""

    y: np.ndarray  # [H, W] uint8
    u: np.ndarray  # [H/2, W/2] uint8
    v: np.ndarray  # [H/2, W/2] uint8
    full_range: bool = False

    @property
    def height(self) -> int:
        return int(self.y.shape[0])

    @property
    def width(self) -> int:
        return int(self.y.shape[1])


@dataclass(frozen=True)
class Offsets:
    """Top-left corner of each fragment: ``ys`` [7] rows, ``xs`` [7] columns (all even)."""

    ys: np.ndarray
    xs: np.ndarray


def planes_from_frame(frame: Any) -> Planes:
    """Zero-copy plane views of a PyAV ``VideoFrame``, converting only if it is not 8-bit 4:2:0.

    Frames smaller than 224 px in either dimension, or with odd sizes, are rescaled by swscale
    to the smallest even size that fits the grid.
    """
    width, height = frame.width, frame.height
    target_w = max(width + (width & 1), INPUT_SIZE)
    target_h = max(height + (height & 1), INPUT_SIZE)
    name = frame.format.name
    if name not in _YUV_FORMATS or (target_w, target_h) != (width, height):
        frame = frame.reformat(width=target_w, height=target_h, format="yuv420p")
        name = "yuv420p"
    views = []
    for index, plane in enumerate(frame.planes):
        h = frame.height if index == 0 else frame.height // 2
        w = frame.width if index == 0 else frame.width // 2
        buf = np.frombuffer(plane, dtype=np.uint8)
        views.append(buf.reshape(h, plane.line_size)[:, :w])
    return Planes(views[0], views[1], views[2], _YUV_FORMATS[name])


def planes_from_rgb(rgb: np.ndarray) -> Planes:
    """Planes of an RGB uint8 image [H, W, 3] through swscale, for tests and tools."""
    import av  # local: engines only need PyAV where frames are made from pixels

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return planes_from_frame(frame.reformat(format="yuv420p"))


def grid_offsets(height: int, width: int, rng: np.random.Generator | None = None) -> Offsets:
    """Fragment positions for a frame size: cell centres, or a random even position per cell.

    Training passes an ``rng`` (one draw per window); inference uses the centres.
    """
    if height < INPUT_SIZE or width < INPUT_SIZE:
        raise ValueError(f"frame {width}x{height} is smaller than {INPUT_SIZE}x{INPUT_SIZE}")
    return Offsets(_axis_offsets(height, rng), _axis_offsets(width, rng))


def _axis_offsets(length: int, rng: np.random.Generator | None) -> np.ndarray:
    cell = length // FRAGMENT_GRID
    slack = cell - FRAGMENT_SIZE
    starts = np.arange(FRAGMENT_GRID) * cell
    if rng is None:
        shift = np.full(FRAGMENT_GRID, slack // 2)
    else:
        shift = rng.integers(0, slack + 1, size=FRAGMENT_GRID)
    # even positions (4:2:0 chroma stays aligned) that keep the fragment inside its cell, also
    # where a cell starts on an odd row or column
    first_even, last_even = (starts + 1) // 2 * 2, (starts + slack) // 2 * 2
    return np.clip((starts + shift) // 2 * 2, first_even, last_even).astype(np.intp)


def sample_frame(planes: Planes, offsets: Offsets, out: np.ndarray | None = None) -> np.ndarray:
    """Tile the 49 native-resolution fragments of one frame into RGB uint8 ``[3, 224, 224]``.

    ``out`` (for example a slot in a preallocated ring buffer) is filled in place when given.
    """
    luma = _tile(planes.y, offsets).astype(np.float32)
    crows = (offsets.ys[:, None] // 2 + _CHROMA_RANGE).reshape(-1)
    ccols = (offsets.xs[:, None] // 2 + _CHROMA_RANGE).reshape(-1)
    u = _upsample2(planes.u[crows[:, None], ccols[None, :]]).astype(np.float32) - 128.0
    v = _upsample2(planes.v[crows[:, None], ccols[None, :]]).astype(np.float32) - 128.0
    return _yuv_to_rgb(luma, u, v, planes.full_range, out)


def _tile(plane: np.ndarray, offsets: Offsets) -> np.ndarray:
    """The 49 full-size fragments of ``plane`` tiled into ``[224, 224]``, block by block (half the
    time of one fancy-indexed gather on a 720p plane)."""
    s = FRAGMENT_SIZE
    out = np.empty((INPUT_SIZE, INPUT_SIZE), dtype=plane.dtype)
    xs = offsets.xs.tolist()
    for i, y0 in enumerate(offsets.ys.tolist()):
        band, row = plane[y0 : y0 + s], out[i * s : (i + 1) * s]
        for j, x0 in enumerate(xs):
            row[:, j * s : (j + 1) * s] = band[:, x0 : x0 + s]
    return out


def _upsample2(plane: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(plane, 2, axis=0), 2, axis=1)


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, full_range: bool, out: np.ndarray | None) -> np.ndarray:
    # BT.601 as swscale uses for untagged video; training and inference share it, so it only has
    # to be consistent, not colourimetrically perfect for every source.
    if full_range:
        r, g, b = y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u
    else:
        y = (y - 16.0) * 1.164383
        r, g, b = y + 1.596027 * v, y - 0.391762 * u - 0.812968 * v, y + 2.017232 * u
    if out is None:
        out = np.empty((3, INPUT_SIZE, INPUT_SIZE), dtype=np.uint8)
    for channel, values in enumerate((r, g, b)):
        np.clip(values, 0.0, 255.0, out=values)
        np.rint(values, out=values)
        out[channel] = values
    return out
