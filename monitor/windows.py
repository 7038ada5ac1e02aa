"""Per-stream ring buffer of complete 7-frame windows: preallocated, bounded, drops counted.

One writer (the stream's reader thread) and one consumer (the scheduler). Memory is fixed at
construction: ``capacity + 2`` slots of ``[7, 3, 224, 224]`` uint8 (1.05 MB each): up to ``capacity``
complete windows waiting to be scored, one being filled, and one spare so that the next window can
start (and, with overlapping windows, receive the carried-over frames) before the finished one is
published.

The writer hands it every decoded frame::

    ring.write(planes_from_frame(frame), time.monotonic())   # True when the frame completed a window

:meth:`WindowRing.write` samples the frame (:func:`engines.sampler.sample_frame`, fragments at the
cell centres) straight into the slot being filled, unless the stride skips it, so no decoded frame
is kept. :meth:`~WindowRing.frame_slot` and :meth:`~WindowRing.frame_done` are its two halves, for
a writer whose pixels do not come from a decoded frame.

``stride`` is the number of frames between the starts of consecutive windows: 7 gives back-to-back
windows, 1..6 overlapping ones (the last ``7 - stride`` frames are copied into the next window), and
more than 7 skips ``stride - 7`` frames after each window (they are decoded but never sampled).

When the scheduler falls behind and ``capacity`` windows are waiting, completing another window
drops the oldest waiting one (counted in :attr:`dropped`): the queue never grows.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from engines.contract import INPUT_SHAPE, WINDOW_FRAMES
from engines.sampler import Offsets, Planes, grid_offsets, sample_frame

WINDOW_BYTES = int(np.prod(INPUT_SHAPE))


@dataclass(frozen=True)
class WindowMeta:
    """What the scheduler needs besides the pixels."""

    seq: int  # 0, 1, 2 ... per ring
    last_frame_time: float  # time.monotonic() when the window's last frame was sampled
    first_frame_time: float
    frame_size: tuple[int, int]  # (height, width) of the source frames


class WindowRing:
    def __init__(self, capacity: int = 8, stride: int = WINDOW_FRAMES,
                 on_window: Callable[[], None] | None = None,
                 on_drop: Callable[[], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        if stride < 1:
            raise ValueError("stride must be >= 1")
        self.capacity = capacity
        self.stride = stride
        self._buf = np.zeros((capacity + 2, *INPUT_SHAPE), dtype=np.uint8)
        self._lock = threading.Lock()
        self._ready: deque[tuple[int, WindowMeta]] = deque()
        self._free: list[int] = list(range(capacity + 1, 0, -1))
        self._filling = 0
        self._count = 0  # frames in the filling slot
        self._skip = 0  # frames still to skip before the next window starts
        self._first_time = 0.0
        self._size: tuple[int, int] | None = None
        self._on_window = on_window  # a window is ready (wakes the scheduler)
        self._on_drop = on_drop  # a waiting window was dropped (counts vqa_windows_dropped_total)
        self.seq = 0
        self.completed = 0
        self.dropped = 0
        self._offsets: Offsets | None = None
        self._offsets_size: tuple[int, int] | None = None

    @property
    def nbytes(self) -> int:
        return int(self._buf.nbytes)

    # -- writer side ------------------------------------------------------------------------------
    def write(self, planes: Planes, now: float) -> bool:
        """Sample one decoded frame into the window being filled; True when it completed a window.

        ``now`` is the frame's time (it becomes the window's first or last frame time). A frame the
        stride skips is not sampled.
        """
        out = self.frame_slot()
        if out is None:
            return False
        size = (planes.height, planes.width)
        if size != self._offsets_size:
            self._offsets = grid_offsets(*size)
            self._offsets_size = size
        sample_frame(planes, self._offsets, out=out)  # type: ignore[arg-type]
        return self.frame_done(now, size)

    def frame_slot(self) -> np.ndarray | None:
        """Where the next frame goes, or None when the stride says this frame is skipped."""
        if self._skip > 0:
            self._skip -= 1
            return None
        return self._buf[self._filling, self._count]

    def frame_done(self, now: float, size: tuple[int, int]) -> bool:
        """The frame returned by :meth:`frame_slot` is written. Returns True when it completed a window.

        ``size`` is the source frame's (height, width): a change starts a new window, so no window
        mixes fragments from two resolutions (the sampler's offsets depend on the size).
        """
        if size != self._size:
            if self._count and self._size is not None:
                # Move the frame just written to position 0 of a fresh window.
                self._buf[self._filling, 0] = self._buf[self._filling, self._count]
            self._size = size
            self._count = 0
        if self._count == 0:
            self._first_time = now
        self._count += 1
        if self._count < WINDOW_FRAMES:
            return False
        self._complete(now)
        return True

    def reset(self) -> None:
        """Discard a partly filled window (after an outage: a window never spans a gap)."""
        self._count = 0
        self._skip = 0
        self._size = None

    def _complete(self, now: float) -> None:
        meta = WindowMeta(self.seq, now, self._first_time, self._size or (0, 0))
        self.seq += 1
        with self._lock:
            nxt = self._free.pop()
        overlap = WINDOW_FRAMES - self.stride
        if overlap > 0:
            self._buf[nxt, :overlap] = self._buf[self._filling, self.stride:]
            self._count = overlap
            self._first_time = now  # approximate: the carried frames are older
        else:
            self._count = 0
            self._skip = -overlap
        dropped = False
        with self._lock:
            self._ready.append((self._filling, meta))
            self.completed += 1
            if len(self._ready) > self.capacity:
                slot, _ = self._ready.popleft()
                self._free.append(slot)
                self.dropped += 1
                dropped = True
        self._filling = nxt
        if dropped and self._on_drop is not None:
            self._on_drop()
        if self._on_window is not None:
            self._on_window()

    # -- consumer side ----------------------------------------------------------------------------
    def ready(self) -> int:
        with self._lock:
            return len(self._ready)

    def pop_into(self, out: np.ndarray) -> WindowMeta | None:
        """Copy the oldest complete window into ``out`` ([7, 3, 224, 224]) and free its slot."""
        with self._lock:
            if not self._ready:
                return None
            slot, meta = self._ready.popleft()
            np.copyto(out, self._buf[slot])
            self._free.append(slot)
            return meta

    def clear(self) -> int:
        """Drop every waiting window (not counted as dropped); returns how many."""
        with self._lock:
            n = len(self._ready)
            while self._ready:
                self._free.append(self._ready.popleft()[0])
            return n
