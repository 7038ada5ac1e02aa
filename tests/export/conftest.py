"""Fixtures for the export tests (model side): windows made by the real sampling pipeline."""
from __future__ import annotations

import numpy as np
import pytest

from engines.contract import INPUT_SHAPE
from engines.sampler import grid_offsets, planes_from_rgb, sample_frame


def make_windows(n: int = 3, step: int = 6) -> np.ndarray:
    """``n`` windows the way the daemon makes them: a pan of ``step`` px per frame over a real
    photograph (scikit-image's astronaut, tiled to 512x1024), converted to YUV 4:2:0 by swscale
    and cut into fragments by the shared sampler (random even offsets per window)."""
    skimage_data = pytest.importorskip("skimage.data")
    image = np.ascontiguousarray(np.tile(skimage_data.astronaut(), (1, 2, 1)))
    out = np.empty((n, *INPUT_SHAPE), dtype=np.uint8)
    for w in range(n):
        frames = []
        for t in range(INPUT_SHAPE[0]):
            x = step * (w * INPUT_SHAPE[0] + t) % (image.shape[1] - 640)
            frames.append(planes_from_rgb(np.ascontiguousarray(image[:, x : x + 640])))
        offsets = grid_offsets(frames[0].height, frames[0].width, np.random.default_rng(w))
        for t, planes in enumerate(frames):
            sample_frame(planes, offsets, out=out[w, t])
    return out


@pytest.fixture(scope="session")
def sampled_windows():
    """Factory: ``sampled_windows(n)`` -> uint8 ``[n, 7, 3, 224, 224]``."""
    return make_windows
