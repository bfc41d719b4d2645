"""Interactions: sorting, tensors, CSR matrix, sequences, padded sequences, genres, concat."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from recsys.data.frame import from_frame
from recsys.data.ids import PADDING_INDEX
from recsys.data.interactions import Interactions, mask_index
from recsys.data.sorting import sort_rows
from recsys.data.vocabulary import Vocabulary
from recsys.errors import DataError


@pytest.fixture()
def small() -> Interactions:
    # users a(0), b(1), c(2); items 10(0), 20(1), 30(2), 40(3)
    return from_frame(
        pl.DataFrame(
            {
                "user": ["a", "a", "a", "b", "b", "a"],
                "item": [30, 10, 20, 40, 40, 30],
                "rating": [3.0, 4.0, 5.0, 1.0, 2.0, 5.0],
                "timestamp": [3, 1, 1, 7, 9, 4],
            }
        ).vstack(pl.DataFrame({"user": ["c"], "item": [20], "rating": [4.0], "timestamp": [0]}))
    )


def test_rows_sorted_by_user_time_item(small):
    frame = small.frame
    assert frame.columns == ["user", "item", "rating", "timestamp"]
    assert frame.dtypes == [pl.Int64, pl.Int64, pl.Float32, pl.Int64]
    assert frame["user"].to_list() == [0, 0, 0, 0, 1, 1, 2]
    assert frame["item"].to_list() == [0, 1, 2, 2, 3, 3, 1]  # tie at t=1 broken by item id
    assert small.num_users == 3 and small.num_items == 4 and small.num_interactions == 7
    assert small.has_ratings and small.has_timestamps
    assert repr(small) == "Interactions(name='custom', users=3, items=4, interactions=7)"


def test_tensors(small):
    assert small.user_index.dtype == torch.long and small.user_index.tolist() == [0, 0, 0, 0, 1, 1, 2]
    assert small.item_index.tolist() == [0, 1, 2, 2, 3, 3, 1]
    assert small.ratings.dtype == torch.float32 and small.ratings.tolist() == [4, 5, 3, 5, 1, 2, 4]
    assert small.timestamps.dtype == torch.int64 and small.timestamps.tolist() == [1, 1, 3, 4, 7, 9, 0]


def test_user_item_matrix(small):
    ones = small.user_item_matrix()
    assert ones.layout == torch.sparse_csr and ones.dtype == torch.float32 and ones.shape == (3, 4)
    assert ones.crow_indices().tolist() == [0, 3, 4, 5]
    assert ones.col_indices().tolist() == [0, 1, 2, 3, 1]
    assert ones.to_dense().tolist() == [[1, 1, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]]
    ratings = small.user_item_matrix("ratings").to_dense()
    assert ratings.tolist() == [[4, 5, 5, 0], [0, 0, 0, 2], [0, 4, 0, 0]]  # latest rating of duplicates
    with pytest.raises(DataError, match="values="):
        small.user_item_matrix("counts")


def test_sequences_and_padding(small):
    offsets, items = small.sequences()
    assert offsets.tolist() == [0, 4, 6, 7] and items.tolist() == [0, 1, 2, 2, 3, 3, 1]
    padded = small.padded_sequences(3)
    assert padded.dtype == torch.long
    assert padded.tolist() == [[2, 3, 3], [0, 4, 4], [0, 0, 2]]  # item + 1, left padded, most recent
    assert small.padded_sequences(5)[0].tolist() == [PADDING_INDEX, 1, 2, 3, 3]
    assert small.mask_index == mask_index(4) == 5


def test_user_without_interactions_gets_empty_sequence(small):
    part = small.with_frame(small.frame.filter(pl.col("user") != 1))
    offsets, _ = part.sequences()
    assert part.num_users == 3 and offsets.tolist() == [0, 4, 4, 5]
    assert part.padded_sequences(2)[1].tolist() == [0, 0]


def test_item_genres():
    features = pl.DataFrame({"item": [0, 1, 2], "genres": [["Drama", "War"], [], ["Comedy", "Drama"]]})
    data = Interactions(
        pl.DataFrame({"user": [0, 0], "item": [0, 2]}),
        Vocabulary(pl.Series([1])),
        Vocabulary(pl.Series([5, 6, 7])),
        item_features=features,
    )
    multi_hot, names = data.item_genres()
    assert names == ["Comedy", "Drama", "War"]
    assert multi_hot.tolist() == [[0, 1, 1], [0, 0, 0], [1, 1, 0]]
    with pytest.raises(DataError, match="no item genres"):
        Interactions(data.frame, data.users, data.items).item_genres()


def test_concat_and_with_frame(small):
    first = small.with_frame(small.frame.filter(pl.col("timestamp") <= 3))
    second = small.with_frame(small.frame.filter(pl.col("timestamp") > 3))
    both = second.concat(first)
    assert both.frame.equals(small.frame)
    assert both.users is small.users and both.item_features is small.item_features
    other = from_frame(pl.DataFrame({"user": [1], "item": [1]}))
    with pytest.raises(DataError, match="different vocabularies"):
        small.concat(other)


def test_missing_index_columns():
    with pytest.raises(DataError, match=r"lacks column\(s\) \['item'\]"):
        Interactions(pl.DataFrame({"user": [0]}), Vocabulary(pl.Series([1])), Vocabulary(pl.Series([1])))


def _random_frame(n: int, users: int, items: int, span: int, seed: int = 0) -> pl.DataFrame:
    generator = torch.Generator().manual_seed(seed)
    return pl.DataFrame(
        {
            "user": torch.randint(0, users, (n,), generator=generator).numpy(),
            "item": torch.randint(0, items, (n,), generator=generator).numpy(),
            "rating": (torch.randint(-4, 11, (n,), generator=generator) / 2).numpy(),
            "timestamp": torch.randint(0, span, (n,), generator=generator).numpy() - span // 2,
        }
    ).cast({"rating": pl.Float32})


@pytest.mark.parametrize("span", [50, 2**40, 2**62])  # one 64-bit key, a 128-bit key, fallback
def test_sort_rows_matches_plain_sort(span):
    frame = _random_frame(5000, 40, 30, span)
    expected = frame.sort("user", "timestamp", "item", "rating")
    result = sort_rows(frame)
    assert result.equals(expected)
    assert sort_rows(result) is result  # already sorted: returned as is
    no_time = frame.drop("timestamp")
    assert sort_rows(no_time).equals(no_time.sort("user", "item", "rating"))
