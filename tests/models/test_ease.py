"""EASE equals its closed form on a tiny matrix and scores from the given history."""

from __future__ import annotations

import polars as pl
import torch

from recsys.data.frame import from_frame
from recsys.models.ease import EASE


def test_equals_closed_form_on_tiny_matrix() -> None:
    x = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 0]], dtype=torch.float64)
    users, items = x.nonzero(as_tuple=True)
    data = from_frame(pl.DataFrame({"user": users.numpy(), "item": items.numpy()}))
    model = EASE(num_items=4, reg=2.0)
    model.prepare(data)
    p = torch.linalg.inv(x.T @ x + 2.0 * torch.eye(4, dtype=torch.float64))
    expected = torch.eye(4, dtype=torch.float64) - p / torch.diag(p)  # B = I - P diag(1/diag(P))
    torch.testing.assert_close(model.weights.double(), expected, rtol=1e-5, atol=1e-6)
    # the closed form minimizes ||X - XB||^2 + reg ||B||^2 with diag(B) = 0: its columns solve their own ridge
    j = 2
    others = [i for i in range(4) if i != j]
    ridge = torch.linalg.solve(x[:, others].T @ x[:, others] + 2.0 * torch.eye(3, dtype=torch.float64), x[:, others].T @ x[:, j])
    torch.testing.assert_close(model.weights[others, j].double(), ridge, rtol=1e-5, atol=1e-6)
    scores = model.score_users(torch.tensor([3, 0]), history=data)
    torch.testing.assert_close(scores.double(), x[[3, 0]] @ expected, rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip_gives_the_same_scores() -> None:
    data = from_frame(pl.DataFrame({"user": [0, 0, 1, 1, 2, 2], "item": [0, 1, 1, 2, 0, 2]}))
    model = EASE(num_items=3, reg=1.0)
    model.prepare(data)
    clone = EASE(num_items=3, reg=1.0)
    clone.load_state_dict(model.state_dict())
    users = torch.arange(3)
    assert torch.equal(clone.score_users(users, data), model.score_users(users, data))
