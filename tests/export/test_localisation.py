"""The localisation measure: which fragments a half or quadrant covers, and the hit rate."""
from __future__ import annotations

import numpy as np
import pytest

from export.localisation import DAMAGE, REGIONS, damaged_window, fragment_mask, hit_rate, region_mask


def test_fragment_masks_follow_the_daemons_grid():
    left = fragment_mask(region_mask("left"))
    # 1280 px: cells of 182 px, fragment centres at 91 + 182 k: columns 0..3 lie left of 640
    assert left.shape == (7, 7) and left[:, :4].all() and not left[:, 4:].any()
    quadrant = fragment_mask(region_mask("bottom_right"))
    assert quadrant[4:, 4:].all() and quadrant.sum() == 9
    assert not (fragment_mask(region_mask("left")) & fragment_mask(region_mask("right"))).any()


def test_hit_rate_is_one_for_a_map_of_the_damage_and_zero_for_its_opposite():
    damaged = fragment_mask(region_mask("top_left"))
    assert hit_rate(damaged.astype(np.float32), damaged) == 1.0
    assert hit_rate(-damaged.astype(np.float32), damaged) == 0.0


@pytest.mark.parametrize("artifact", sorted(DAMAGE))
def test_damage_changes_only_its_region(artifact):
    rng = np.random.default_rng(0)
    frame = rng.integers(40, 200, (720, 1280, 3), dtype=np.uint8)
    window, damaged = damaged_window(frame, artifact, REGIONS[0], rng)
    assert window.shape == (7, 3, 224, 224) and damaged.shape == (7, 7)
    from engines.sampler import grid_offsets, planes_from_rgb, sample_frame

    reference = sample_frame(planes_from_rgb(frame), grid_offsets(720, 1280))
    cells = lambda a: a.reshape(3, 7, 32, 7, 32)  # noqa: E731
    changed = (cells(window[0]) != cells(reference)).any(axis=(0, 2, 4))
    assert changed[:, :3].all(), artifact  # the damaged fragments changed
    assert not changed[:, 4:].any(), artifact  # the clean half did not
