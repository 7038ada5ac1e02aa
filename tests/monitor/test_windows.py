"""Ring buffer of 7-frame windows: sampling frames in, stride, overlap, drops, bounded memory, size changes."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from engines.contract import INPUT_SHAPE, WINDOW_FRAMES
from engines.sampler import grid_offsets, planes_from_rgb, sample_frame
from monitor.windows import WindowRing


def push(ring: WindowRing, value: int, t: float = 0.0, size: tuple[int, int] = (360, 640)) -> bool:
    """Write a frame whose pixels all equal ``value``; returns True if it completed a window."""
    out = ring.frame_slot()
    if out is None:
        return False
    out[...] = value
    return ring.frame_done(t, size)


def frame_values(window: np.ndarray) -> list[int]:
    return [int(window[i, 0, 0, 0]) for i in range(WINDOW_FRAMES)]


def test_write_samples_each_frame_at_the_cell_centres_of_its_size() -> None:
    rng = np.random.default_rng(5)
    small = [planes_from_rgb(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) for _ in range(3)]
    large = [planes_from_rgb(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)) for _ in range(WINDOW_FRAMES)]
    ring = WindowRing(capacity=2, stride=7)
    completed = [ring.write(planes, float(t)) for t, planes in enumerate(small + large)]
    assert completed == [False] * 9 + [True]  # the size change started a new window at frame 3
    out = np.empty(INPUT_SHAPE, np.uint8)
    meta = ring.pop_into(out)
    assert meta is not None and meta.frame_size == (360, 640) and meta.first_frame_time == 3.0
    offsets = grid_offsets(360, 640)
    assert np.array_equal(out, np.stack([sample_frame(planes, offsets) for planes in large]))


def test_back_to_back_windows() -> None:
    ring = WindowRing(capacity=4, stride=7)
    out = np.empty(INPUT_SHAPE, np.uint8)
    completed = [push(ring, v, t=float(v)) for v in range(14)]
    assert completed == [False] * 6 + [True] + [False] * 6 + [True]
    meta = ring.pop_into(out)
    assert meta is not None and meta.seq == 0 and frame_values(out) == list(range(7))
    assert meta.last_frame_time == 6.0 and meta.first_frame_time == 0.0
    assert ring.pop_into(out) is not None and frame_values(out) == list(range(7, 14))
    assert ring.pop_into(out) is None


@pytest.mark.parametrize("stride", [1, 3, 5])
def test_overlapping_windows_carry_frames(stride: int) -> None:
    ring = WindowRing(capacity=64, stride=stride)
    out = np.empty(INPUT_SHAPE, np.uint8)
    for v in range(7 + 4 * stride):
        push(ring, v)
    starts = []
    while (meta := ring.pop_into(out)) is not None:
        values = frame_values(out)
        assert values == list(range(values[0], values[0] + 7))
        starts.append(values[0])
    assert starts == [k * stride for k in range(5)]


def test_stride_above_window_skips_frames() -> None:
    ring = WindowRing(capacity=8, stride=10)
    out = np.empty(INPUT_SHAPE, np.uint8)
    for v in range(27):
        push(ring, v)
    firsts = []
    while ring.pop_into(out) is not None:
        firsts.append(frame_values(out))
    assert firsts == [list(range(0, 7)), list(range(10, 17)), list(range(20, 27))]


def test_full_ring_drops_oldest_and_counts() -> None:
    drops = []
    wakes = []
    ring = WindowRing(capacity=3, stride=7, on_window=lambda: wakes.append(1), on_drop=lambda: drops.append(1))
    for v in range(7 * 10):
        push(ring, v % 250)
    assert ring.completed == 10 and ring.dropped == 7 and len(drops) == 7 and len(wakes) == 10
    assert ring.ready() == 3
    out = np.empty(INPUT_SHAPE, np.uint8)
    seqs = [ring.pop_into(out).seq for _ in range(3)]  # type: ignore[union-attr]
    assert seqs == [7, 8, 9]  # the newest survive


def test_memory_is_fixed() -> None:
    ring = WindowRing(capacity=5, stride=2)
    before = ring.nbytes
    assert before == 7 * int(np.prod(INPUT_SHAPE)) == (5 + 2) * 7 * 3 * 224 * 224
    for v in range(1000):
        push(ring, v % 256)
    assert ring.nbytes == before and ring.ready() == 5


def test_size_change_starts_a_new_window() -> None:
    ring = WindowRing(capacity=4, stride=7)
    out = np.empty(INPUT_SHAPE, np.uint8)
    for v in range(4):
        push(ring, v, size=(360, 640))
    for v in range(10, 17):
        push(ring, v, size=(720, 1280))
    meta = ring.pop_into(out)
    assert meta is not None and meta.frame_size == (720, 1280)
    assert frame_values(out) == list(range(10, 17))
    assert ring.pop_into(out) is None


def test_reset_discards_partial_window() -> None:
    ring = WindowRing(capacity=4)
    out = np.empty(INPUT_SHAPE, np.uint8)
    for v in range(5):
        push(ring, v)
    ring.reset()
    for v in range(20, 27):
        push(ring, v)
    assert ring.pop_into(out) is not None and frame_values(out) == list(range(20, 27))


def test_concurrent_writer_and_consumer_never_tear_windows() -> None:
    ring = WindowRing(capacity=2, stride=7)
    stop = threading.Event()
    torn = []
    got = []

    def consume() -> None:
        out = np.empty(INPUT_SHAPE, np.uint8)
        while not stop.is_set() or ring.ready():
            meta = ring.pop_into(out)
            if meta is None:
                continue
            vals = frame_values(out)
            got.append(meta.seq)
            # every frame of window seq was written with value (7*seq + i) % 256
            if vals != [(7 * meta.seq + i) % 256 for i in range(7)]:
                torn.append((meta.seq, vals))

    thread = threading.Thread(target=consume)
    thread.start()
    for v in range(7 * 2000):
        push(ring, v % 256)
    stop.set()
    thread.join(10)
    assert not torn
    assert len(got) + ring.dropped == 2000
