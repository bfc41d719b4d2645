"""Popularity baseline: scores are training counts."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from recsys.data.frame import from_frame
from recsys.errors import ConfigError
from recsys.models import Popularity


def test_scores_are_training_counts() -> None:
    frame = pl.DataFrame({"user": [1, 1, 2, 3, 3, 3], "item": [10, 20, 10, 10, 20, 30]})
    data = from_frame(frame, rating_col=None, time_col=None)
    model = Popularity(num_items=data.num_items)
    model.prepare(data)
    scores = model.score_users(torch.tensor([0, 2]), history=data)
    assert scores.tolist() == [[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]
    scores[0, 0] = -1  # the evaluator masks in place: rows must not alias the counts
    assert model.item_counts[0].item() == 3.0


def test_non_trainable_and_rejects_empty_catalogue() -> None:
    assert not Popularity(num_items=3).trainable
    with pytest.raises(ConfigError):
        Popularity(num_items=0)


def test_state_dict_round_trip_keeps_the_counts() -> None:
    data = from_frame(pl.DataFrame({"user": [1, 1, 2], "item": [10, 20, 10]}), rating_col=None, time_col=None)
    model = Popularity(num_items=data.num_items)
    model.prepare(data, torch.Generator())
    clone = Popularity(num_items=data.num_items)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.score_users(torch.tensor([0, 1]), data), model.score_users(torch.tensor([0, 1]), data))
