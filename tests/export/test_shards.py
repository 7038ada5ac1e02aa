"""Memory-mapped shard windows (export/shards.py) equal what np.load reads."""
from __future__ import annotations

import numpy as np
import pytest

from export.shards import ShardedWindows, memmap_member


def test_members_map_to_the_same_arrays_and_index_like_one_array(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 256, (n, 2, 3, 4, 4), dtype=np.uint8) for n in (3, 1, 5)]
    paths = []
    for i, part in enumerate(parts):
        paths.append(tmp_path / f"shard_{i}.npz")
        np.savez(paths[-1], windows=part, quality=rng.random(len(part)).astype(np.float32))
    mapped = [memmap_member(p, "windows") for p in paths]
    for m, part in zip(mapped, parts):
        assert isinstance(m, np.memmap) and np.array_equal(m, part)
    windows, whole = ShardedWindows(mapped), np.concatenate(parts)
    assert len(windows) == 9 and windows.shape == whole.shape
    index = np.array([8, 0, 3, 3, 4, -1])
    assert np.array_equal(windows[index], whole[index])
    assert np.array_equal(windows[2:7], whole[2:7]) and np.array_equal(windows[5], whole[5])
    assert np.array_equal(np.asarray(windows), whole)


def test_compressed_members_are_refused(tmp_path):
    path = tmp_path / "shard.npz"
    np.savez_compressed(path, windows=np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="compressed"):
        memmap_member(path, "windows")


def test_a_selection_stays_mapped_and_indexes_its_rows(tmp_path):
    whole = np.arange(7 * 2, dtype=np.uint8).reshape(7, 2)
    np.savez(tmp_path / "shard.npz", windows=whole)
    windows = ShardedWindows([memmap_member(tmp_path / "shard.npz", "windows")])
    picked = windows.select(np.array([6, 1, 4]))
    assert len(picked) == 3 and np.array_equal(picked[np.array([0, 2])], whole[[6, 4]])
    assert np.array_equal(picked.select(np.array([1]))[0], whole[1])
