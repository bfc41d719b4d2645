"""Pointwise metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn import metrics as skm

from recsys.errors import DataError
from recsys.evaluation import log_loss, mae, rmse, roc_auc


def test_rating_errors() -> None:
    target = torch.tensor([1.0, 3.0, 5.0, 4.0])
    assert rmse(target, target) == 0.0 and mae(target, target) == 0.0
    pred = torch.tensor([2.0, 3.0, 3.0, 4.0])
    assert rmse(pred, target) == pytest.approx(math.sqrt(5 / 4))
    assert mae(pred, target) == pytest.approx(3 / 4)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, generator=gen), torch.randn(500, generator=gen)
    assert rmse(a, b) == pytest.approx(math.sqrt(skm.mean_squared_error(b.numpy(), a.numpy())), abs=1e-6)
    assert mae(a, b) == pytest.approx(skm.mean_absolute_error(b.numpy(), a.numpy()), abs=1e-6)


def test_roc_auc_hand_and_sklearn_with_ties() -> None:
    assert roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    assert roc_auc(torch.tensor([1.0, 1.0]), torch.tensor([0, 1])) == 0.5
    assert roc_auc(torch.tensor([0.0, 1.0]), torch.tensor([True, False])) == 0.0
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        scores = torch.randint(0, 8, (1000,), generator=gen).float()  # heavy ties
        labels = (torch.rand(1000, generator=gen) < 0.3 + scores / 20).long()
        assert roc_auc(scores, labels) == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-6)


def test_log_loss_hand_and_sklearn() -> None:
    assert log_loss(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == pytest.approx(math.log(2))
    assert log_loss(torch.tensor([1.0, 0.0]), torch.tensor([0, 1])) == pytest.approx(-math.log(1e-7))  # clipped
    gen = torch.Generator().manual_seed(2)
    probs = torch.rand(1000, generator=gen) * 0.98 + 0.01
    labels = (torch.rand(1000, generator=gen) < probs).long()
    assert log_loss(probs, labels) == pytest.approx(skm.log_loss(labels.numpy(), probs.double().numpy()), abs=1e-6)


def test_input_errors() -> None:
    with pytest.raises(DataError, match="single class"):
        roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))
    with pytest.raises(DataError, match="shape"):
        rmse(torch.zeros(3), torch.zeros(4))
    with pytest.raises(DataError, match="NaN"):
        mae(torch.tensor([float("nan")]), torch.zeros(1))
    with pytest.raises(DataError, match="NaN"):
        roc_auc(torch.tensor([float("nan"), 1.0]), torch.tensor([0, 1]))
    with pytest.raises(DataError, match="0/1"):
        log_loss(torch.tensor([0.2, 0.3]), torch.tensor([0, 2]))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        log_loss(torch.tensor([1.2, 0.3]), torch.tensor([0, 1]))
    with pytest.raises(DataError, match="no examples"):
        rmse(torch.zeros(0), torch.zeros(0))
