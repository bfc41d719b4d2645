"""Biased MF: hand-computed prediction and loss, clipping, global mean from prepare."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from recsys.data.frame import from_frame
from recsys.models.biased_mf import BiasedMF


def test_prediction_and_loss_hand_computed() -> None:
    data = from_frame(pl.DataFrame({"user": [0, 0, 1], "item": [0, 1, 1], "rating": [5.0, 3.0, 1.0]}))
    model = BiasedMF(2, 2, embedding_dim=2, reg=0.5, bias_reg=0.25, clip=False)
    model.prepare(data)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.5, 1.0]]))
        model.item_embedding.weight.copy_(torch.tensor([[2.0, 1.0], [0.0, -1.0]]))
        model.user_bias.weight.copy_(torch.tensor([[0.5], [-0.5]]))
        model.item_bias.weight.copy_(torch.tensor([[0.0], [1.0]]))
    batch = {"users": torch.tensor([0, 1]), "items": torch.tensor([0, 1]), "ratings": torch.tensor([5.0, 1.0])}
    mean = 3.0
    pred = torch.tensor([mean + 0.5 + 0.0 + 2.0, mean - 0.5 + 1.0 - 1.0])
    assert model.global_mean.item() == pytest.approx(mean)
    torch.testing.assert_close(model.predict(batch), pred)
    mse = ((pred - batch["ratings"]) ** 2).mean()
    expected = mse + 0.5 * ((1 + 5) + (0.25 + 1 + 1)) / 2 + 0.25 * ((0.25 + 0) + (0.25 + 1)) / 2
    assert model.loss(batch).item() == pytest.approx(expected.item(), rel=1e-6)
    scores = model.score_users(torch.tensor([0, 1]), history=None)
    torch.testing.assert_close(scores.gather(1, torch.tensor([[0], [1]])).squeeze(1), pred)


def test_predictions_clip_to_training_range() -> None:
    data = from_frame(pl.DataFrame({"user": [0, 1], "item": [0, 1], "rating": [1.0, 5.0]}))
    model = BiasedMF(2, 2, embedding_dim=1)
    model.prepare(data)
    with torch.no_grad():
        model.user_bias.weight.fill_(10.0)
    assert model.predict({"users": torch.tensor([0]), "items": torch.tensor([0])}).item() == 5.0
