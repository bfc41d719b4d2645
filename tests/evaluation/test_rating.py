"""RatingEvaluator: a perfect predictor scores 0; hand-computed RMSE/MAE; batches do not change results."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch

from recsys.data.frame import from_frame
from recsys.errors import ConfigError, DataError
from recsys.evaluation.rating import RatingEvaluator
from recsys.models.base import Recommender


class Lookup(Recommender):
    """Predicts from a dense (U, N) table."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)

    def predict(self, batch):
        return self.table[batch["users"], batch["items"]]


def targets():
    return from_frame(pl.DataFrame({"user": [0, 0, 1, 2, 2], "item": [0, 2, 1, 0, 1], "rating": [4.0, 2.0, 5.0, 1.0, 3.0]}))


def test_perfect_predictor_has_zero_error() -> None:
    data = targets()
    table = torch.zeros(3, 3)
    table[data.user_index, data.item_index] = data.ratings
    out = RatingEvaluator(batch_size=2).evaluate_model(Lookup(table), data, data)
    assert out == {"rmse": 0.0, "mae": 0.0}


def test_hand_computed_errors_independent_of_batch_size() -> None:
    data = targets()
    table = torch.full((3, 3), 3.0)  # errors 1, -1, 2, -2, 0
    for batch_size in (1, 2, 100):
        out = RatingEvaluator(batch_size=batch_size).evaluate_model(Lookup(table), data, data)
        assert out["rmse"] == pytest.approx(math.sqrt(10 / 5))
        assert out["mae"] == pytest.approx(6 / 5)


def test_bad_input() -> None:
    with pytest.raises(ConfigError):
        RatingEvaluator(batch_size=0)
    implicit = from_frame(pl.DataFrame({"user": [0], "item": [0]}))
    with pytest.raises(DataError, match="no ratings"):
        RatingEvaluator().evaluate_model(Lookup(torch.zeros(1, 1)), implicit, implicit)
