"""sort_rows: every key width (one uint64, user blocks, UInt128, multi-column fallback) against polars' sort."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data import sorting
from recsys.data.frame import remap
from recsys.data.sorting import sort_rows

ORDER = ["user", "timestamp", "item", "rating"]


def _frame(n: int, users: int, span: int, ratings: np.ndarray | None = None, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "user": rng.integers(0, users, n),
            "item": rng.integers(0, 30, n),
            "rating": (rng.integers(-4, 11, n) / 2).astype(np.float32) if ratings is None else ratings,
            "timestamp": rng.integers(0, span, n, dtype=np.int64) - span // 2,
        }
    )


def _path(monkeypatch, frame: pl.DataFrame) -> str:
    """Which key width sorted ``frame``."""
    used = []
    for name in ("_single", "_blocked", "_wide", "_sort_columns"):
        original = getattr(sorting, name)
        monkeypatch.setattr(sorting, name, lambda *a, _o=original, _n=name: used.append(_n) or _o(*a))
    sort_rows(frame)
    monkeypatch.undo()
    return used[0]


@pytest.mark.parametrize(
    ("users", "span", "path"),
    [(40, 50, "_single"), (40, 2**54, "_blocked"), (5000, 2**54, "_blocked"), (40, 2**62, "_wide"), (4, 2**63, "_wide")],
)
def test_every_key_width_matches_polars(monkeypatch, users, span, path):
    frame = _frame(3000, users, span)
    assert _path(monkeypatch, frame) == path
    result = sort_rows(frame)
    assert result.equals(frame.sort(ORDER)) and result.schema == frame.schema
    assert sort_rows(result) is result  # already sorted: returned as is


def test_blocks_cut_by_radix_argsort(monkeypatch):
    """More than 8 blocks of users go through a 16-bit radix argsort rather than masks."""
    monkeypatch.setattr(sorting, "_MASKED_BLOCKS", 1)
    frame = _frame(3000, 5000, 2**54)
    assert sort_rows(frame).equals(frame.sort(ORDER))


@pytest.mark.parametrize("kind", ["few", "many", "float64", "signed zeros and nan"])
def test_ratings_ordered_by_float_bits(kind):
    """Ratings of any kind sort as their order-preserving float bits: -0.0 before 0.0, NaN as polars puts it."""
    rng = np.random.default_rng(1)
    n = 2000
    ratings = {
        "few": (rng.integers(1, 11, n) / 2).astype(np.float32),
        "many": rng.standard_normal(n).astype(np.float32),  # more distinct values than a lookup table takes
        "float64": rng.standard_normal(n),
        "signed zeros and nan": rng.choice(np.array([-0.0, 0.0, np.nan, -1.5, 2.5], dtype=np.float32), n),
    }[kind]
    frame = _frame(n, 3, 5, ratings).select("user", "item", "rating")
    result = sort_rows(frame)
    bits = result["rating"].to_numpy().view(np.uint64 if kind == "float64" else np.uint32)
    code = sorting._float_order(bits)
    keys = list(zip(result["user"].to_list(), result["item"].to_list(), code.tolist()))
    assert keys == sorted(keys)
    before = frame["rating"].to_numpy().view(bits.dtype)
    assert keys == sorted(zip(frame["user"].to_list(), frame["item"].to_list(), sorting._float_order(before).tolist()))
    assert result.schema == frame.schema


def test_many_distinct_ratings_use_offsets(monkeypatch):
    monkeypatch.setattr(sorting, "_LUT", 4)  # every path of the rating code: lookup table off
    frame = _frame(2000, 10, 1000)
    assert sort_rows(frame).equals(frame.sort(ORDER))
    wide = frame.with_columns(pl.Series("rating", np.arange(2000, dtype=np.float32) * -0.25))
    assert sort_rows(wide).equals(wide.sort(ORDER))


def test_ratings_by_binary_search_when_top_bits_do_not_separate(monkeypatch):
    monkeypatch.setattr(sorting, "_LUT", 64)  # 60 distinct ratings whose top bits need a large table
    rng = np.random.default_rng(2)
    values = np.concatenate([np.float32(1.0) + np.arange(30, dtype=np.float32) * np.float32(1e-6), np.arange(30, dtype=np.float32) * 1e5])
    frame = _frame(2000, 10, 1000, rng.choice(values, 2000))
    assert sort_rows(frame).equals(frame.sort(ORDER))


def test_int64_extremes_and_small_dtypes():
    frame = pl.DataFrame({"user": [2, 1, 2, 1], "item": [0, 0, 1, 1], "timestamp": [2**63 - 1, -(2**63), 5, -(2**63)]})
    assert sort_rows(frame).equals(frame.sort(ORDER[:3]))
    small = frame.with_columns(pl.col("user").cast(pl.Int8), pl.col("item").cast(pl.UInt16))
    assert sort_rows(small).equals(small.sort(ORDER[:3])) and sort_rows(small).schema == small.schema


@pytest.mark.parametrize("dtype", [pl.Int8, pl.Int16, pl.Int32, pl.UInt8, pl.UInt32, pl.UInt64])
def test_remap_any_integer_dtype(dtype):
    low = -100 if dtype.is_signed_integer() else 0
    index, vocab = remap(pl.Series([low, 100, low, 50, 100], dtype=dtype))
    assert index.tolist() == [0, 2, 0, 1, 2] and vocab.ids.dtype == dtype and vocab.ids.to_list() == [low, 50, 100]


def test_remap_uint64_ids_above_int64():
    index, vocab = remap(pl.Series([2**63 + 5, 2**63 + 1, 2**63 + 5], dtype=pl.UInt64))
    assert index.tolist() == [1, 0, 1] and vocab.ids.to_list() == [2**63 + 1, 2**63 + 5]
