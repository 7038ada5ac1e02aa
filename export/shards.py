"""Windows of many shards as one array, memory-mapped from the shard files.

``export.build_dataset`` writes shards with ``np.savez`` (a zip of uncompressed ``.npy`` members), so
each member's bytes lie contiguous in the file and can be mapped without reading them. Training on
tens of thousands of windows (about 1 MB each) then costs page cache, not process memory: only the
windows of a batch are read.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def memmap_member(path: Path, name: str) -> np.ndarray:
    """The array ``name`` of an uncompressed ``.npz`` file, memory-mapped read-only."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{path}: member {name} is compressed; it cannot be memory-mapped")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(member)
            header = member.tell()
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        local = raw.read(30)  # local file header: name and extra field lengths at bytes 26..29
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
    return np.memmap(path, dtype=dtype, mode="r", offset=start + header, shape=shape, order="F" if fortran else "C")


class ShardedWindows:
    """Concatenation of per-shard window arrays, indexed like one array (ints, slices, index arrays)."""

    def __init__(self, parts: list[np.ndarray], rows: np.ndarray | None = None) -> None:
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])
        self.rows = rows  # a subset of the concatenation's rows, in this order (None: all)

    def __len__(self) -> int:
        return int(self.starts[-1]) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.parts[0].shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.parts[0].dtype

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        if index.ndim == 0:
            return self[index[None]][0]
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = np.where(index < 0, index + len(self), index)
        if self.rows is not None:
            index = self.rows[index]
        part = np.searchsorted(self.starts, index, side="right") - 1
        out = np.empty((len(index), *self.shape[1:]), dtype=self.dtype)
        for k in np.unique(part):
            rows = np.flatnonzero(part == k)
            out[rows] = self.parts[k][index[rows] - self.starts[k]]
        return out

    def select(self, rows: np.ndarray) -> "ShardedWindows":
        """The windows of ``rows`` (indices into this array), still memory-mapped."""
        rows = np.asarray(rows, dtype=np.int64)
        return ShardedWindows(self.parts, rows if self.rows is None else self.rows[rows])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out.astype(dtype) if dtype is not None else out
