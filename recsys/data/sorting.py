"""Row order of interaction frames: (user, timestamp, item, rating), sorted fast."""

from __future__ import annotations

import numpy as np
import polars as pl

__all__ = ["sort_rows"]


def _bits(value: int) -> int:
    return max(int(value).bit_length(), 1)


_SIGN, _ALL = 0x80000000, 0xFFFFFFFF


def _float_code(values: pl.Series) -> pl.Series:
    """float32 -> uint32 codes in the same order (flip all bits of negatives, the sign of the rest)."""
    bits = pl.Series(values.to_numpy().astype(np.float32, copy=False).view(np.uint32))
    negative = bits >= _SIGN
    return bits.to_frame("b").select(
        pl.col("b").xor(pl.when(negative).then(pl.lit(_ALL, pl.UInt32)).otherwise(pl.lit(_SIGN, pl.UInt32)))
    ).to_series()


def _float_decode(codes: pl.Series) -> pl.Series:
    """Inverse of ``_float_code``."""
    was_positive = codes >= _SIGN
    bits = codes.to_frame("b").select(
        pl.col("b").xor(pl.when(was_positive).then(pl.lit(_SIGN, pl.UInt32)).otherwise(pl.lit(_ALL, pl.UInt32)))
    ).to_series()
    return pl.Series(bits.to_numpy().view(np.float32))


def _sorted_words(words: pl.DataFrame) -> pl.DataFrame:
    """Rows of one or two UInt64 words (h[, l]) sorted lexicographically; None if already sorted."""
    if words.width == 1:
        return None if _ascending(words) else words.sort("h")
    if _ascending(words):
        return None
    wide, shift = pl.UInt128, pl.lit(1 << 64, dtype=pl.UInt128)
    key = words.select((pl.col("h").cast(wide) * shift + pl.col("l").cast(wide)).sort().alias("k"))
    return key.select((pl.col("k") // shift).cast(pl.UInt64).alias("h"), (pl.col("k") % shift).cast(pl.UInt64).alias("l"))


def _ascending(words: pl.DataFrame) -> bool:
    """Whether rows of (h[, l]) are in lexicographic order (one vectorized pass)."""
    step = pl.col("h") > pl.col("h").shift(1)
    same = pl.col("h") == pl.col("h").shift(1)
    if words.width == 1:
        ordered = step | same
    else:
        ordered = step | (same & (pl.col("l") >= pl.col("l").shift(1)))
    return bool(words.select(ordered.slice(1).all()).item())


def _sort_columns(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Stable multi-column sort (the general fallback); the frame itself when already sorted."""
    ordered = pl.lit(True)
    for column in reversed(columns):  # (a, b) ordered: a increases, or a ties and b is ordered
        before = pl.col(column).shift(1)
        ordered = (pl.col(column) > before) | ((pl.col(column) == before) & ordered)
    if frame.select(ordered.slice(1).all()).item():
        return frame
    return frame.sort(columns, maintain_order=True, nulls_last=True)


def sort_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows sorted by (user, timestamp, item, rating); the frame itself when already sorted.

    All columns are packed into one unsigned key of 64 or 128 bits (ids and time as offsets
    from their minimum, ratings by their float bits), the key is sorted alone and unpacked:
    a payload-free single-key sort avoids the random-access gather that dominates a
    multi-column sort (about 3x faster on 20M rows). Rows with equal keys are identical, so
    the result is deterministic. Falls back to a stable multi-column sort beyond 128 bits.
    """
    if frame.height < 2:
        return frame
    columns = [c for c in ("user", "timestamp", "item", "rating") if c in frame.columns]
    if any(frame[c].null_count() for c in columns):
        return frame.sort(columns, maintain_order=True, nulls_last=True)
    ints = [c for c in columns if c != "rating"]
    low = frame.select(pl.col(ints).min()).row(0, named=True)
    high = frame.select(pl.col(ints).max()).row(0, named=True)
    codes = frame.select((pl.col(c) - low[c]).cast(pl.UInt64) for c in ints)
    widths = {c: _bits(high[c] - low[c]) for c in ints}
    if "rating" in columns:
        codes = codes.with_columns(_float_code(frame["rating"]).cast(pl.UInt64).alias("rating"))
        widths["rating"] = 32
    groups: list[list[str]] = [[]]
    used = 0
    for column in columns:  # fields never straddle a word, so each word unpacks on its own
        if used + widths[column] > 64:
            groups.append([])
            used = 0
        groups[-1].append(column)
        used += widths[column]
    if len(groups) > 2:
        return _sort_columns(frame, columns)
    shifts: dict[str, tuple[str, int]] = {}
    packed = []
    for word, group in zip("hl", groups):
        expr, shift = pl.lit(0, pl.UInt64), 0
        for column in reversed(group):
            expr = expr + pl.col(column) * pl.lit(1 << shift, pl.UInt64)
            shifts[column] = (word, shift)
            shift += widths[column]
        packed.append(expr.alias(word))
    words = codes.select(packed)
    del codes  # free each intermediate as soon as possible: peak memory matters at 1e7+ rows
    ordered = _sorted_words(words)
    del words
    if ordered is None:
        return frame
    fields = ordered.select(
        (pl.col(word) // pl.lit(1 << shift, pl.UInt64) % pl.lit(1 << widths[c], pl.UInt64)).alias(c)
        for c, (word, shift) in shifts.items()
    )
    del ordered
    out = fields.select((pl.col(c).cast(pl.Int64) + low[c]).alias(c) for c in ints)
    if "rating" in columns:
        out = out.with_columns(_float_decode(fields["rating"].cast(pl.UInt32)).alias("rating"))
    return out.select(frame.columns).cast({c: frame.schema[c] for c in frame.columns})
