"""BPR-MF: hand-computed loss, score shapes, and learning a planted low-rank structure."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from recsys.errors import ConfigError
from recsys.models import BPRMF


def test_loss_equals_hand_computed_value() -> None:
    model = BPRMF(num_users=2, num_items=3, embedding_dim=2, reg=0.5)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        model.item_embedding.weight.copy_(torch.tensor([[1.0, 1.0], [0.5, -1.0], [0.0, 0.0]]))
        model.item_bias.weight.copy_(torch.tensor([[0.1], [0.2], [0.3]]))
    batch = {"users": torch.tensor([0, 1]), "items": torch.tensor([0, 0]), "negatives": torch.tensor([[1], [2]])}
    # user 0: x_ui = 1 + 0.1, x_uj = 0.5 + 0.2; user 1: x_ui = 2 + 0.1, x_uj = 0 + 0.3
    ranking = -(math.log(1 / (1 + math.exp(-(1.1 - 0.7)))) + math.log(1 / (1 + math.exp(-(2.1 - 0.3))))) / 2
    norms = (1 + 4) + (2 + 2) + (0.25 + 1 + 0)
    expected = ranking + 0.5 * norms / 2
    assert model.loss(batch).item() == pytest.approx(expected, rel=1e-6)


def test_several_negatives_average_pairwise_terms() -> None:
    torch.manual_seed(0)
    model = BPRMF(num_users=3, num_items=5, embedding_dim=4)
    batch = {"users": torch.tensor([0, 2]), "items": torch.tensor([1, 3]), "negatives": torch.tensor([[0, 2, 4], [1, 1, 0]])}
    scores = model.score_users(batch["users"], history=None)
    positive = scores.gather(1, batch["items"].unsqueeze(1))
    negative = scores.gather(1, batch["negatives"])
    expected = -F.logsigmoid(positive - negative).mean()
    assert model.loss(batch).item() == pytest.approx(expected.item(), rel=1e-6)


def test_learns_planted_low_rank_structure() -> None:
    """Two user groups each like one half of the items; held-out likes rank far above random."""
    generator = torch.Generator().manual_seed(0)
    num_users, num_items = 40, 20
    group = torch.arange(num_users) % 2
    liked = (torch.arange(num_items).unsqueeze(0) % 2) == group.unsqueeze(1)  # (U, N)
    keep = torch.rand(num_users, num_items, generator=generator) < 0.7
    train, held_out = liked & keep, liked & ~keep
    users, items = train.nonzero(as_tuple=True)
    model = BPRMF(num_users, num_items, embedding_dim=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        negatives = torch.randint(0, num_items, (users.shape[0], 1), generator=generator)
        loss = model.loss({"users": users, "items": items, "negatives": negatives})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        scores = model.score_users(torch.arange(num_users), history=None).masked_fill(train, -torch.inf)
    top = scores.topk(3, dim=1).indices
    precision = held_out.gather(1, top).float().mean().item()
    assert precision > 0.7  # a random ranking of the 13 unseen items gives 3/13 = 0.23


@pytest.mark.parametrize("kwargs", [{"num_users": 0}, {"num_items": -1}, {"embedding_dim": 0}, {"reg": -1.0}])
def test_bad_sizes_raise_config_error(kwargs: dict) -> None:
    args = {"num_users": 2, "num_items": 2, "embedding_dim": 2, **kwargs}
    with pytest.raises(ConfigError):
        BPRMF(**args)
