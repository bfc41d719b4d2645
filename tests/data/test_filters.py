"""Filters: binarize, deduplicate, k-core fixed point; empty results name the filter."""

from __future__ import annotations

import polars as pl
import pytest

from recsys.data.filters import binarize, compact, deduplicate, k_core
from recsys.data.frame import from_frame
from recsys.errors import ConfigError, DataError


def test_binarize_keeps_threshold_and_compacts():
    data = from_frame(
        pl.DataFrame({"user": [1, 1, 2, 3], "item": [10, 20, 10, 30], "rating": [4.0, 3.5, 5.0, 1.0]})
    )
    kept = binarize(data, 4.0)
    assert kept.users.ids.to_list() == [1, 2] and kept.items.ids.to_list() == [10]
    assert kept.frame["rating"].to_list() == [4.0, 5.0]
    with pytest.raises(DataError, match=r"no interactions left after min_rating / binarize\(threshold=6"):
        binarize(data, 6)
    with pytest.raises(DataError, match="no ratings"):
        binarize(from_frame(pl.DataFrame({"user": [1], "item": [1]})), 1)


def test_deduplicate_keeps_latest_or_first():
    data = from_frame(
        pl.DataFrame({"user": [1, 1, 1], "item": [5, 5, 6], "rating": [1.0, 2.0, 3.0], "timestamp": [9, 1, 5]})
    )
    assert deduplicate(data).frame.sort("item")["rating"].to_list() == [1.0, 3.0]
    assert deduplicate(data, keep="first").frame.sort("item")["rating"].to_list() == [2.0, 3.0]
    with pytest.raises(ConfigError):
        deduplicate(data, keep="any")


def test_k_core_iterates_to_fixed_point():
    # 2-core: item 13 has one interaction -> removed; then user 3 has one -> removed;
    # then item 12 has one -> removed; then user 2 has one -> removed. Users 0,1 x items 10,11 remain.
    rows = [(0, 10), (0, 11), (1, 10), (1, 11), (2, 11), (2, 12), (3, 12), (3, 13)]
    data = from_frame(pl.DataFrame(rows, schema=["user", "item"], orient="row"))
    core = k_core(data, 2, 2)
    assert core.users.ids.to_list() == [0, 1] and core.items.ids.to_list() == [10, 11]
    assert core.num_interactions == 4
    assert core.user_counts().min() >= 2 and core.item_counts().min() >= 2
    assert k_core(core, 2, 2).frame.equals(core.frame)  # a fixed point
    with pytest.raises(DataError, match=r"after k_core\(min_user_interactions=3"):
        k_core(data, 3, 3)


def test_compact_remaps_features():
    data = from_frame(pl.DataFrame({"user": [1, 2], "item": [10, 20]}))
    data.item_features = pl.DataFrame({"item": [0, 1], "title": ["a", "b"]})
    part = compact(data.with_frame(data.frame.filter(pl.col("item") == 1)))
    assert part.items.ids.to_list() == [20] and part.item_features.to_dicts() == [{"item": 0, "title": "b"}]
