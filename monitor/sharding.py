"""Stream sharding: which of N identical daemons runs which stream.

Every instance reads the same config. Instance ``I`` of ``N`` (a :class:`Shard`, counted from 0) runs
exactly the streams whose rendezvous (highest-random-weight, HRW) owner is ``I``: each stream name
gets a weight per shard, and the shard with the highest weight owns it. The weight is the first 8
bytes of BLAKE2b over the shard number and the name, so every process, host and Python version agrees
(Python's own ``hash()`` of a string is salted per process and would not).

Why HRW: no table to keep in sync, and changing the shard count moves as little as possible. Going from
N to N+1 shards moves a stream only if the new shard's weight beats all others, about 1/(N+1) of the
streams, and every one of them moves onto the new shard; removing the last shard moves only its own
streams. (A modulo of a hash would move about N/(N+1) of them.)

Plain HRW balances like dice: with few streams per shard the fullest shard runs far more than the
mean (500 streams on 125 shards: up to 11 on one, where the mean is 4). ``capacity`` bounds that
(rendezvous hashing with bounded loads): streams are placed in name order, each on its
highest-weight shard that has fewer than ``capacity`` streams. Every instance computes the same
placement from the same list. A stream moves only when its first choices fill up or free up, so
with some headroom (slots = count x capacity about 10% above the stream count) changes stay close
to plain HRW's. When every shard is full, the rest go to their first choice anyway: a stream is
never left unmonitored (``--check`` warns).

Where the shard comes from (:meth:`monitor.daemon.Daemon.shard_of` applies the order): ``--shard I/N``
on the command line, else the config's ``shard:`` section (:class:`ShardConfig`; ``index`` may be a
StatefulSet pod name such as ``vqa-monitor-3``, typically ``"${POD_NAME}"`` from the downward API).
Without either, one shard runs everything.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Iterable

from pydantic import Field, ValidationInfo, field_validator

from monitor.strict import Strict

MAX_SHARDS = 1000
# A StatefulSet pod is named <statefulset>-<ordinal>; a bare number is accepted too.
_ORDINAL_RE = re.compile(r"^(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?-)?([0-9]+)$")
_INDEX_HELP = "expected a shard number (0, 1, ...) or a StatefulSet pod name ending in -N (e.g. vqa-monitor-3)"


@dataclass(frozen=True)
class Shard:
    """Instance ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the shard count must be from 1 to {MAX_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} is out of range for {self.count} shard(s) "
                             f"(indexes run from 0 to {self.count - 1})")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


SINGLE = Shard(0, 1)


def weight(shard: int, name: str) -> int:
    """The rendezvous weight of stream ``name`` on shard number ``shard``: stable everywhere."""
    digest = hashlib.blake2b(f"{shard}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(name: str, count: int) -> int:
    """The shard (0..count-1) that runs stream ``name`` when there are ``count`` shards."""
    return max(range(count), key=lambda shard: weight(shard, name))


def placement(names: Iterable[str], count: int, capacity: int | None = None) -> dict[str, int]:
    """Each stream's shard: its HRW owner, or with ``capacity`` its best shard that still has room."""
    names = list(names)
    if capacity is None or count == 1:
        return {name: owner(name, count) for name in names}
    load = [0] * count
    out: dict[str, int] = {}
    for name in sorted(set(names)):  # name order, so that the order in the file does not matter
        ranked = sorted(range(count), key=lambda shard: weight(shard, name), reverse=True)
        choice = next((shard for shard in ranked if load[shard] < capacity), ranked[0])
        load[choice] += 1
        out[name] = choice
    return {name: out[name] for name in names}


def assign(names: Iterable[str], count: int, capacity: int | None = None) -> dict[int, list[str]]:
    """Every shard's streams, in the order given: ``{0: [...], 1: [...], ...}`` (empty lists included)."""
    out: dict[int, list[str]] = {shard: [] for shard in range(count)}
    for name, shard in placement(names, count, capacity).items():
        out[shard].append(name)
    return out


def parse_index(value: Any) -> int:
    """A shard index from a number, a digit string, or a StatefulSet pod name (``vqa-monitor-3`` -> 3)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(_INDEX_HELP)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative; {_INDEX_HELP}")
        return value
    match = _ORDINAL_RE.match(value.strip())
    if not match:
        raise ValueError(_INDEX_HELP)
    return int(match.group(1))


def parse_shard(text: str) -> Shard:
    """``"I/N"`` (``I`` a number or a StatefulSet pod name) -> :class:`Shard`; ValueError with the reason."""
    index_text, slash, count_text = text.strip().rpartition("/")
    if not slash or not index_text:
        raise ValueError(f"{text!r}: expected I/N, e.g. 2/4 (shard 2 of 4, counted from 0)")
    if not count_text.isdigit():
        raise ValueError(f"{text!r}: the shard count after '/' must be a whole number, got {count_text!r}")
    try:
        return Shard(parse_index(index_text), int(count_text))
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None


class ShardConfig(Strict):
    """The ``shard:`` section: which part of the stream list this instance runs."""

    count: int = Field(1, ge=1, le=MAX_SHARDS, description=(
        "number of instances sharing this config's streams (the StatefulSet's replicas); 1 = this "
        "instance runs every stream"))
    index: int = Field(0, description=(
        "this instance, 0..count-1: a number, or a StatefulSet pod name whose ordinal is used "
        "(vqa-monitor-3 -> 3), e.g. \"${POD_NAME}\" set by the downward API"))
    capacity: int | None = Field(None, ge=1, le=100_000, description=(
        "most streams one instance should run (what it sustains, see benchmarks/); a stream goes to its "
        "highest-weight shard with room. null = plain rendezvous hashing (uneven with few streams per shard)"))

    @field_validator("index", mode="before")
    @classmethod
    def _index(cls, value: Any) -> int:
        return parse_index(value)

    @field_validator("index")
    @classmethod
    def _in_range(cls, value: int, info: ValidationInfo) -> int:
        count = info.data.get("count")  # absent when count itself is invalid (reported there)
        if count is not None and value >= count:
            raise ValueError(f"shard {value} does not exist with shard.count {count} (shards run from 0 to {count - 1})")
        return value

    @property
    def shard(self) -> Shard:
        return Shard(self.index, self.count)
