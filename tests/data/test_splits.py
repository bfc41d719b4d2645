"""Splits: hand-computed leave-one-out (ties, short users), temporal cut points, random determinism."""

from __future__ import annotations

import polars as pl
import pytest

from recsys.data.frame import from_frame
from recsys.data.splits import Split, leave_one_out, random_split, temporal_split
from recsys.errors import ConfigError, DataError


@pytest.fixture()
def data():
    # user 1: items 10@1, 30@2, 20@2 (tie: 20 before 30), 40@5 -> train 10,20  valid 30  test 40
    # user 2: items 10@9, 20@3 -> fewer than 3: all train
    # user 3: items 50@1, 10@1, 20@1 (all tied) -> order 10, 20, 50 -> train 10, valid 20, test 50
    return from_frame(
        pl.DataFrame(
            {
                "user": [1, 1, 1, 1, 2, 2, 3, 3, 3],
                "item": [10, 30, 20, 40, 10, 20, 50, 10, 20],
                "timestamp": [1, 2, 2, 5, 9, 3, 1, 1, 1],
            }
        )
    )


def _pairs(part):
    return list(zip(part.users.to_original(part.user_index), part.items.to_original(part.item_index)))


def test_leave_one_out_by_hand(data):
    split = leave_one_out(data)
    assert isinstance(split, Split)
    assert _pairs(split.test) == [(1, 40), (3, 50)]
    assert _pairs(split.valid) == [(1, 30), (3, 20)]
    assert _pairs(split.train) == [(1, 10), (1, 20), (2, 20), (2, 10), (3, 10)]
    for part in split:
        assert part.users is data.users and part.items is data.items  # full vocabularies kept
    assert split.train.concat(split.valid).concat(split.test).frame.equals(data.frame)


def test_leave_one_out_without_timestamps_uses_item_order():
    data = from_frame(pl.DataFrame({"user": [1, 1, 1], "item": [3, 1, 2]}))
    split = leave_one_out(data)
    assert _pairs(split.test) == [(1, 3)] and _pairs(split.valid) == [(1, 2)]


def test_temporal_split_cut_points():
    data = from_frame(pl.DataFrame({"user": list(range(10)), "item": [0] * 10, "timestamp": list(range(10))}))
    split = temporal_split(data, (0.6, 0.2, 0.2))
    assert [p.num_interactions for p in split] == [6, 2, 2]
    assert split.train.timestamps.max() < split.valid.timestamps.min() <= split.valid.timestamps.max() < split.test.timestamps.min()
    # ties at a cut point all go to the later part
    tied = from_frame(pl.DataFrame({"user": [0, 1, 2, 3], "item": [0] * 4, "timestamp": [1, 2, 2, 3]}))
    assert [p.num_interactions for p in temporal_split(tied, (0.5, 0.25, 0.25))] == [1, 2, 1]
    with pytest.raises(DataError, match="no timestamps"):
        temporal_split(from_frame(pl.DataFrame({"user": [1], "item": [1]})))


def test_random_split_deterministic_and_exact():
    data = from_frame(pl.DataFrame({"user": [i % 7 for i in range(100)], "item": list(range(100))}))
    first, again, other = random_split(data, seed=3), random_split(data, seed=3), random_split(data, seed=4)
    assert [p.num_interactions for p in first] == [80, 10, 10]
    assert all(a.frame.equals(b.frame) for a, b in zip(first, again))
    assert not first.test.frame.equals(other.test.frame)
    union = pl.concat([p.frame for p in first]).sort("item")
    assert union["item"].to_list() == list(range(100))


@pytest.mark.parametrize("ratios", [(0.5, 0.5), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_bad_ratios(data, ratios):
    with pytest.raises(ConfigError, match="ratios"):
        random_split(data, ratios)
