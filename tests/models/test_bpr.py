"""BPR-MF: hand-computed loss, score shapes, and learning a planted low-rank structure."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from recsys.data.batches import PairwiseBatches
from recsys.embeddings import CombinedOptimizer, SparseSGD, is_sparse_param
from recsys.errors import ConfigError
from recsys.models import BPRMF
from recsys.training import Trainer
from tests.models.test_cf_contract import planted, precision_at_3


def test_loss_equals_hand_computed_value() -> None:
    model = BPRMF(num_users=2, num_items=3, embedding_dim=2, reg=0.5)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        model.item_embedding.weight.copy_(torch.tensor([[1.0, 1.0], [0.5, -1.0], [0.0, 0.0]]))
        model.item_bias.weight.copy_(torch.tensor([[0.1], [0.2], [0.3]]))
    batch = {"users": torch.tensor([0, 1]), "items": torch.tensor([0, 0]), "negatives": torch.tensor([[1], [2]])}
    # user 0: x_ui = 1 + 0.1, x_uj = 0.5 + 0.2; user 1: x_ui = 2 + 0.1, x_uj = 0 + 0.3
    ranking = -(math.log(1 / (1 + math.exp(-(1.1 - 0.7)))) + math.log(1 / (1 + math.exp(-(2.1 - 0.3))))) / 2
    norms = (1 + 4) + (2 + 2) + (0.25 + 1 + 0) + (0.01 + 0.01) + (0.04 + 0.09)  # users, items, biases
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


def test_summed_loss_gradient_equals_hand_computed_value() -> None:
    """reduction="sum": each pair's gradient is its own, as in per-sample SGD (implicit's BPR)."""
    model = BPRMF(num_users=2, num_items=3, embedding_dim=2, reg=0.25, sparse=True, reduction="sum")
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        model.item_embedding.weight.copy_(torch.tensor([[1.0, 1.0], [0.5, -1.0], [0.0, 0.0]]))
        model.item_bias.weight.copy_(torch.tensor([[0.1], [0.2], [0.3]]))
    batch = {"users": torch.tensor([0, 1]), "items": torch.tensor([0, 0]), "negatives": torch.tensor([[1], [2]])}
    model.loss(batch).backward()
    # pair (u0, i0, j1): x = 1.1 - 0.7 = 0.4; d/dx of -log sigmoid(x) = -sigmoid(-x)
    g0 = -1 / (1 + math.exp(0.4))
    g1 = -1 / (1 + math.exp(1.8))  # pair (u1, i0, j2): x = 2.1 - 0.3
    user_grad = model.user_embedding.weight.grad.to_dense()
    item_grad = model.item_embedding.weight.grad.to_dense()
    bias_grad = model.item_bias.weight.grad.to_dense()
    # user 0: g0 * (i0 - j1) + 2 reg u0 = g0 * (0.5, 2) + (0.5, 0)
    assert user_grad[0].tolist() == pytest.approx([g0 * 0.5 + 0.5, g0 * 2.0], rel=1e-6)
    assert user_grad[1].tolist() == pytest.approx([g1 * 1.0, g1 * 1.0 + 1.0], rel=1e-6)
    # item 0 is the positive of both pairs: g0 * u0 + g1 * u1 + 2 reg * i0 per pair (twice)
    assert item_grad[0].tolist() == pytest.approx([g0 + 1.0, 2 * g1 + 1.0], rel=1e-6)
    assert item_grad[1].tolist() == pytest.approx([-g0 + 0.25, -0.5], rel=1e-6)  # -g0 * u0 + 2 reg * j1
    assert item_grad[2].tolist() == pytest.approx([0.0, -2 * g1], rel=1e-6)
    # biases (0.1, 0.2, 0.3) are regularized like rows: 2 reg b per occurrence
    assert bias_grad.flatten().tolist() == pytest.approx([g0 + g1 + 0.1, -g0 + 0.1, -g1 + 0.15], rel=1e-6)


def test_sum_is_mean_times_pairs_and_tables_are_marked_sparse() -> None:
    torch.manual_seed(0)
    mean, total = BPRMF(5, 7, embedding_dim=3, reg=0.1), BPRMF(5, 7, embedding_dim=3, reg=0.1, sparse=True, reduction="sum")
    total.load_state_dict(mean.state_dict())
    batch = {"users": torch.tensor([0, 4, 2]), "items": torch.tensor([1, 3, 6]), "negatives": torch.tensor([[0, 2], [5, 5], [1, 4]])}
    assert total.loss(batch).item() == pytest.approx(6 * mean.loss(batch).item(), rel=1e-6)
    assert all(is_sparse_param(p) for p in total.parameters()) and not any(is_sparse_param(p) for p in mean.parameters())
    optimizer = CombinedOptimizer(total.parameters(), dense=partial(torch.optim.Adam, lr=0.1), sparse=partial(SparseSGD, lr=0.1))
    assert optimizer.dense is None and isinstance(optimizer.sparse, SparseSGD)


def test_sparse_sgd_path_learns_planted_low_rank_structure() -> None:
    """The config route of conf/model/bpr_sgd.yaml: sparse tables, summed loss, SparseSGD, PairwiseBatches."""
    data, train, held_out = planted()
    torch.manual_seed(0)
    model = BPRMF(data.num_users, data.num_items, embedding_dim=8, init_std=0.01, sparse=True, reduction="sum")
    batches = PairwiseBatches(data, batch_size=256, seed=0)
    Trainer(epochs=60, device="cpu", progress=False, patience=None, tensorboard=False).fit(
        model, batches, partial(SparseSGD, lr=0.1, weight_decay=0.01)
    )
    assert precision_at_3(model, data, train, held_out) > 0.8  # random among the ~22 unseen items: about 4/22 = 0.18


def test_unknown_reduction_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="reduction"):
        BPRMF(2, 2, embedding_dim=2, reduction="max")
