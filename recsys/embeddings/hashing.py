"""The hashing trick: deterministic, process-independent hashes of int64 and string ids, and collision reports.

Never Python's ``hash()``: it is salted per process for strings (``PYTHONHASHSEED``), so tables trained
in one process would be looked up with different rows in the next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from recsys.errors import ConfigError, DataError

_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)  # splitmix64 constants, as signed int64
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)


def _shift_right(x: Tensor, bits: int) -> Tensor:
    """Logical (unsigned) right shift of int64 values; torch's ``>>`` is arithmetic."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(ids: Tensor, seed: int | Tensor = 0) -> Tensor:
    """splitmix64 finalizer of int64 ids (wrapping arithmetic): a well-mixed int64 per id, same on every machine.

    >>> mix64(torch.tensor([0, 1, 2])).tolist() == mix64(torch.tensor([0, 1, 2])).tolist()
    True
    """
    if ids.dtype != torch.long:
        raise DataError(f"ids to hash must be torch.long, got {ids.dtype}", where="mix64", fix="convert ids with .long()")
    if isinstance(seed, int):  # wrap the offset to int64 in Python; tensor arithmetic wraps by itself
        offset = ((seed + 1) * _GOLDEN) % (1 << 64)
        z = ids + (offset - (1 << 64) if offset >= 1 << 63 else offset)
    else:
        z = ids + (seed + 1) * _GOLDEN
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


def hash_ids(ids: Tensor, num_buckets: int | Tensor, seed: int | Tensor = 0) -> Tensor:
    """Hash int64 ids (any value, negatives included) into ``[0, num_buckets)``, vectorized.

    >>> buckets = hash_ids(torch.tensor([7, 10**15, -3]), num_buckets=100)
    >>> bool(((buckets >= 0) & (buckets < 100)).all())
    True
    """
    if isinstance(num_buckets, int) and num_buckets <= 0:
        raise ConfigError(f"num_buckets must be positive, got {num_buckets}", where="hash_ids", fix="use num_buckets >= 1")
    return torch.remainder(_shift_right(mix64(ids, seed), 1), num_buckets)


def hash_strings(values: Iterable[str], seed: int = 0) -> Tensor:
    """Stable int64 keys of strings (blake2b, 8 bytes); feed them to :func:`hash_ids` or a vocabulary.

    Runs once at data-preparation time (one digest per string), not in ``forward``.

    >>> bool((hash_strings(["user_a", "user_b"]) == hash_strings(["user_a", "user_b"])).all())
    True
    """
    key = seed.to_bytes(8, "little", signed=True)
    keys = [
        int.from_bytes(hashlib.blake2b(str(v).encode("utf-8"), digest_size=8, key=key).digest(), "little", signed=True)
        for v in values
    ]
    return torch.tensor(keys, dtype=torch.long)


@dataclass(frozen=True)
class CollisionReport:
    """How many distinct ids share a bucket with another id after hashing.

    >>> report = collision_report(torch.arange(1000), num_buckets=100_000)
    >>> report.num_ids, report.collision_rate < 0.05
    (1000, True)
    """

    num_ids: int
    num_buckets: int
    occupied_buckets: int
    colliding_ids: int
    collision_rate: float
    expected_collision_rate: float

    def __str__(self) -> str:
        return (
            f"{self.num_ids:,} distinct ids in {self.num_buckets:,} buckets: {self.occupied_buckets:,} occupied, "
            f"{self.colliding_ids:,} ids collide ({self.collision_rate:.2%}; uniform hashing expects "
            f"{self.expected_collision_rate:.2%})"
        )


def collision_report(ids: Tensor, num_buckets: int, seed: int = 0) -> CollisionReport:
    """Collision statistics of hashing the distinct values of ``ids`` into ``num_buckets`` rows."""
    unique = torch.unique(ids.long().flatten())
    buckets, counts = torch.unique(hash_ids(unique, num_buckets, seed), return_counts=True)
    colliding = int(counts[counts > 1].sum())
    n = len(unique)
    expected = 1.0 - (1.0 - 1.0 / num_buckets) ** max(n - 1, 0)
    return CollisionReport(n, num_buckets, len(buckets), colliding, colliding / max(n, 1), expected)
