"""Row order of interaction frames: (user, timestamp, item, rating), sorted fast.

Every column becomes a small non-negative integer code: ids and time as offsets from their minimum,
ratings as the rank of their order-preserving float bits among the distinct ratings (10 half stars
need 4 bits, not 32). The codes are packed into one mixed-radix key, user most significant; the key
is sorted alone and unpacked. A payload-free single-key sort avoids the random-access gather that
dominates a multi-column sort, and a uint64 key goes through numpy's SIMD sort (20M rows: 0.4 s,
against 2.2 s for polars' 128-bit sort and 2-6 s for an argsort).

By key width, fastest first: <= 64 bits, one uint64 sort; the columns after the first in <= 63 bits,
rows split into blocks of consecutive users (each block's key fits 64 bits), each block sorted alone;
<= 128 bits, one polars UInt128 sort; wider, or with nulls or other dtypes, a stable multi-column sort.
Rows with equal keys are identical, so the result is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import polars as pl

__all__ = ["sort_rows"]

ORDER = ("user", "timestamp", "item", "rating")
_INTS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)
_BITS = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}
_SIGN = np.uint64(1 << 63)
_LUT = 1 << 20  # distinct ratings are ranked through a lookup table of at most this many entries
_MASKED_BLOCKS = 8  # up to this many user blocks are cut out with masks, more with a radix argsort
_MAX_BLOCKS = 1 << 16

Decode = Callable[[np.ndarray], np.ndarray]


def _float_order(bits: np.ndarray) -> np.ndarray:
    """Float bits -> unsigned codes in the same order (flip all bits of negatives, the sign of the rest)."""
    top = bits.dtype.type(bits.dtype.itemsize * 8 - 1)
    return bits ^ (np.negative(bits >> top) | (bits.dtype.type(1) << top))


def _float_unorder(codes: np.ndarray) -> np.ndarray:
    """Inverse of ``_float_order``."""
    kind = codes.dtype.type
    top = kind(codes.dtype.itemsize * 8 - 1)
    return codes ^ (np.negative((codes >> top) ^ kind(1)) | (kind(1) << top))


def _int_code(values: np.ndarray, low: int, high: int) -> tuple[np.ndarray, int, Decode, int]:
    """int64 -> (uint64 view, radix, decoder, offset): the code is ``view - offset`` in wrapping uint64
    arithmetic (exact for any int64 range), subtracted by ``_pack`` once for all columns."""
    offset = np.uint64(low % (1 << 64))

    def decode(codes: np.ndarray) -> np.ndarray:  # in place: codes are fresh arrays from _unpack
        codes += offset
        return codes.view(np.int64)

    return values.view(np.uint64), high - low + 1, decode, int(offset)


def _rating_code(values: np.ndarray) -> tuple[np.ndarray, int, Decode]:
    """Floats -> their rank among the distinct values, in float-bit order (-0.0 before 0.0, NaNs at the ends).

    The rank comes from a lookup table indexed by the fewest top bits that keep the distinct values
    apart (one shift and one gather); else a binary search; with too many distinct values, offsets
    of the order-preserving bits.
    """
    dtype = values.dtype
    bits = values.view(_BITS[dtype])
    kind = bits.dtype.type
    distinct = pl.Series(bits).unique().to_numpy()
    distinct = distinct[np.argsort(_float_order(distinct))]  # rank r <-> distinct[r]
    if len(distinct) > _LUT:
        ordered = _float_order(bits).astype(np.uint64)
        low, high = int(ordered.min()), int(ordered.max())
        return ordered - np.uint64(low), high - low + 1, lambda c: _float_unorder((c + np.uint64(low)).astype(kind)).view(dtype)
    decode: Decode = lambda c: distinct[c].view(dtype)  # noqa: E731
    shift = next(s for s in range(bits.itemsize * 8 - 1, -1, -1) if len(np.unique(distinct >> kind(s))) == len(distinct))
    top = distinct >> kind(shift)
    base = top.min()
    if int(top.max() - base) < _LUT:
        table = np.zeros(int(top.max() - base) + 1, dtype=np.uint8 if len(distinct) <= 256 else np.uint32)
        table[top - base] = np.arange(len(distinct))
        return table[(bits >> kind(shift)) - base], len(distinct), decode
    return np.searchsorted(_float_order(distinct), _float_order(bits)), len(distinct), decode


def _sort_columns(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Stable multi-column sort (the general fallback); the frame itself when already sorted."""
    ordered = pl.lit(True)
    for column in reversed(columns):  # (a, b) ordered: a increases, or a ties and b is ordered
        before = pl.col(column).shift(1)
        ordered = (pl.col(column) > before) | ((pl.col(column) == before) & ordered)
    if frame.select(ordered.slice(1).all()).item():
        return frame
    return frame.sort(columns, maintain_order=True, nulls_last=True)


def _codes(frame: pl.DataFrame, columns: list[str]) -> tuple[list[np.ndarray], list[int], list[Decode], list[int]] | None:
    """Codes (before offsets), radices, decoders and offsets of the columns, or None when a column's
    dtype has no code here."""
    ints = [c for c in columns if frame.schema[c] in _INTS]
    floats = [c for c in columns if frame.schema[c] in (pl.Float32, pl.Float64)]
    if len(ints) + len(floats) < len(columns):
        return None
    stats = frame.select(*(pl.col(c).min().alias(f"{c}_min") for c in ints), *(pl.col(c).max().alias(f"{c}_max") for c in ints))
    stats = stats.row(0, named=True) if ints else {}
    coded: tuple[list, list, list, list] = ([], [], [], [])
    for column in columns:
        if column in floats:
            code = (*_rating_code(frame[column].to_numpy()), 0)
        else:
            values = frame[column].cast(pl.Int64).to_numpy()
            code = _int_code(values, stats[f"{column}_min"], stats[f"{column}_max"])
        for part, value in zip(coded, code):
            part.append(value)
    return coded


def _pack(codes: list[np.ndarray], radices: list[int], offsets: list[int]) -> np.ndarray:
    """Mixed-radix uint64 key of ``codes[i] - offsets[i]``, the first most significant (the caller
    checks that it fits). Consumes ``codes``: its arrays are released as they are added."""
    key = codes[0].astype(np.uint64, copy=True)
    codes[0] = None
    shift = offsets[0]
    for i in range(1, len(codes)):
        key *= np.uint64(radices[i])
        key += codes[i].astype(np.uint64, copy=False)
        codes[i] = None
        shift = (shift * radices[i] + offsets[i]) % (1 << 64)
    key -= np.uint64(shift)  # wrapping: the result is the exact key, which fits 64 bits
    return key


def _unpack(key: np.ndarray, radices: list[int], decoders: list[Decode]) -> list[np.ndarray]:
    """Inverse of ``_pack`` (divides ``key`` in place): decoded values in column order."""
    values = []
    for radix, decode in zip(reversed(radices[1:]), reversed(decoders[1:])):
        remainder = key % np.uint64(radix)
        key //= np.uint64(radix)
        values.append(decode(remainder))
    values.append(decoders[0](key))
    return values[::-1]


def _sort_uint64(key: np.ndarray) -> None:
    """In-place ascending sort of a uint64 key through numpy's (faster) int64 SIMD sort."""
    key ^= _SIGN  # order-preserving bijection uint64 -> int64
    key.view(np.int64).sort()
    key ^= _SIGN


def _single(codes: list[np.ndarray], radices: list[int], decoders: list[Decode], offsets: list[int]) -> list[np.ndarray] | None:
    """One uint64 key; None when already sorted."""
    key = _pack(codes, radices, offsets)
    if np.all(key[1:] >= key[:-1]):
        return None
    _sort_uint64(key)
    return _unpack(key, radices, decoders)


def _blocked(codes: list[np.ndarray], radices: list[int], decoders: list[Decode], offsets: list[int]) -> list[np.ndarray] | None:
    """Rows in blocks of ``per_block`` consecutive first codes, in each of which the key fits 64 bits;
    None when already sorted."""
    per_block = (1 << 64) // math.prod(radices[1:])
    blocks = -(-radices[0] // per_block)
    first = codes[0] - np.uint64(offsets[0])
    block = (first // np.uint64(per_block)).astype(np.uint16)
    first %= np.uint64(per_block)
    codes[0] = first
    del first
    key = _pack(codes, [per_block, *radices[1:]], [0, *offsets[1:]])
    if np.all((block[1:] > block[:-1]) | ((block[1:] == block[:-1]) & (key[1:] >= key[:-1]))):
        return None
    if blocks <= _MASKED_BLOCKS:
        parts = [key[block == b] for b in range(blocks)]
        counts = np.array([len(p) for p in parts])
        key = np.concatenate(parts)
        del parts
    else:
        counts = np.bincount(block, minlength=blocks)
        key = key[np.argsort(block, kind="stable")]  # a radix sort of 16-bit block numbers
    del block
    ends = np.cumsum(counts)
    for start, end in zip(ends - counts, ends):
        _sort_uint64(key[start:end])
    values = _unpack(key, [per_block, *radices[1:]], [lambda c: c, *decoders[1:]])
    starts = np.repeat(np.arange(blocks, dtype=np.uint64) * np.uint64(per_block), counts)
    values[0] = decoders[0](starts + values[0])
    return values


def _wide(codes: list[np.ndarray], radices: list[int], decoders: list[Decode], offsets: list[int]) -> list[np.ndarray] | None:
    """One mixed-radix UInt128 key sorted by polars; None when already sorted."""
    wide = pl.UInt128
    key = pl.lit(0, wide)
    for i, radix in enumerate(radices):  # codes[i] - offsets[i] as uint64 (wrapping), then widened
        key = key * pl.lit(radix, wide) + (pl.col(str(i)) - pl.lit(offsets[i], pl.UInt64)).cast(wide)
    keys = pl.DataFrame({str(i): code for i, code in enumerate(codes)}).select(key.alias("k"))
    codes.clear()
    if keys.select((pl.col("k").slice(1) >= pl.col("k").slice(0, keys.height - 1)).all()).item():
        return None
    keys = keys.sort("k")
    fields, stride = [], 1
    for i in reversed(range(len(radices))):
        fields.append((pl.col("k") // pl.lit(stride, wide) % pl.lit(radices[i], wide)).cast(pl.UInt64).alias(str(i)))
        stride *= radices[i]
    unpacked = keys.select(fields)
    return [decode(unpacked[str(i)].to_numpy(writable=True)) for i, decode in enumerate(decoders)]


def sort_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows sorted by (user, timestamp, item, rating), whichever are present; the frame itself
    when already sorted. Falls back to a stable multi-column sort beyond 128 key bits or with nulls."""
    if frame.height < 2:
        return frame
    columns = [c for c in ORDER if c in frame.columns]
    if len(columns) < frame.width:  # other columns would need a gather: plain sort
        return _sort_columns(frame, columns)
    if any(frame[c].null_count() for c in columns):
        return frame.sort(columns, maintain_order=True, nulls_last=True)
    coded = _codes(frame, columns)
    if coded is None:
        return _sort_columns(frame, columns)
    radices = coded[1]
    total, rest = math.prod(radices), math.prod(radices[1:])
    if total <= 1 << 64:
        values = _single(*coded)
    elif rest <= 1 << 63 and -(-radices[0] // ((1 << 64) // rest)) <= _MAX_BLOCKS:
        values = _blocked(*coded)
    elif total <= 1 << 128:
        values = _wide(*coded)
    else:
        return _sort_columns(frame, columns)
    if values is None:
        return frame
    out = pl.DataFrame({c: v for c, v in zip(columns, values)})
    return out.cast({c: frame.schema[c] for c in columns}).select(frame.columns)
