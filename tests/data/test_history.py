"""Behaviour histories (SequenceFeature, previous_items): only earlier items, the most recent max_len, saved exactly."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from recsys.data.features import CategoricalFeature, FeaturePipeline, SequenceFeature
from recsys.data.history import previous_items
from recsys.errors import ConfigError, DataError


def test_history_holds_only_items_with_an_earlier_timestamp() -> None:
    rng = np.random.default_rng(0)
    n = 400
    frame = pl.DataFrame({"user": rng.integers(0, 20, n), "item": rng.integers(0, 30, n),
                          "timestamp": rng.integers(0, 40, n)})  # many ties in time
    values, lengths = previous_items(frame.select("user", "timestamp", pl.col("item").alias("row")),
                                     frame.select("user", "timestamp"), max_len=1000)
    starts = torch.cumsum(lengths, 0) - lengths
    users, items, times = (frame[c].to_numpy() for c in ("user", "item", "timestamp"))
    for i in range(n):  # reference: a loop per row, in the test only
        earlier = (users == users[i]) & (times < times[i])
        got = values[starts[i] : starts[i] + lengths[i]].tolist()
        assert sorted(got) == sorted(items[earlier].tolist())


def test_history_longer_than_max_len_keeps_the_most_recent_in_time_order() -> None:
    frame = pl.DataFrame({"user": [7] * 6, "item": [10, 11, 12, 13, 14, 15], "timestamp": [6, 1, 2, 3, 4, 5]})
    pipe = FeaturePipeline([CategoricalFeature("item"), SequenceFeature("history", max_len=3)]).fit(frame)
    rows = pipe.features_[0].vocabulary_.to_index(pl.Series([13, 14, 15]), unknown="oov").tolist()
    enc = pipe.transform(frame.head(1))  # the row at time 6: five earlier items, three kept
    assert enc.bag_lengths.tolist() == [[3]] and enc.bag_values.tolist() == rows
    assert pipe.field_specs()[0].name == "item" and len(pipe.field_specs()) == 1  # no table of its own


def test_later_split_sees_the_training_items_and_the_pipeline_round_trips() -> None:
    train = pl.DataFrame({"user": [1, 1, 2], "item": [5, 6, 5], "timestamp": [1, 3, 2]})
    test = pl.DataFrame({"user": [1, 2], "item": [7, 6], "timestamp": [2, 9]})
    pipe = FeaturePipeline([CategoricalFeature("item"), SequenceFeature("history")]).fit(train)
    enc = pipe.transform(test)
    vocab = pipe.features_[0].vocabulary_
    assert enc.bag_lengths.tolist() == [[1, 1]]  # user 1 before 2: item 5; user 2 before 9: item 5
    assert enc.bag_values.tolist() == vocab.to_index(pl.Series([5, 5]), unknown="oov").tolist()
    again = FeaturePipeline.from_dict(pipe.to_dict()).transform(test)
    assert torch.equal(again.bag_values, enc.bag_values) and torch.equal(again.bag_lengths, enc.bag_lengths)
    now = pipe.transform(test.drop("timestamp"))  # no time: each user's latest items
    assert now.bag_lengths.tolist() == [[2, 1]]


def test_history_errors_say_what_and_how_to_fix() -> None:
    with pytest.raises(DataError, match="timestamp"):
        FeaturePipeline([CategoricalFeature("item"), SequenceFeature("history")]).fit(pl.DataFrame({"user": [1], "item": [2]}))
    with pytest.raises(ConfigError, match="not declared"):
        FeaturePipeline([CategoricalFeature("user"), SequenceFeature("history")]).fit(
            pl.DataFrame({"user": [1], "item": [2], "timestamp": [3]}))
