"""Hogwild BPR estimator: implicit's per-triple update, planted structure, skipped negatives, errors."""

from __future__ import annotations

import math

import pytest
import torch

from recsys.errors import ConfigError, DataError
from recsys.estimators import hogwild
from recsys.estimators.bpr import BayesianPersonalizedRanking, _bpr_step
from tests.models.test_cf_contract import planted, precision_at_3


def reference_update(users: torch.Tensor, items: torch.Tensor, triples: list[tuple[int, int, int]], lr: float, reg: float) -> None:
    """implicit's Cython loop, one triple at a time (the last column is the item bias; the user's stays 1)."""
    factors = users.shape[1] - 1
    for u, i, j in triples:
        user, liked, disliked = users[u], items[i], items[j]
        z = 1.0 / (1.0 + math.exp(float(user @ (liked - disliked))))
        for f in range(factors):
            old = float(user[f])
            user[f] += lr * (z * (liked[f] - disliked[f]) - reg * user[f])
            liked[f] += lr * (z * old - reg * liked[f])
            disliked[f] += lr * (-z * old - reg * disliked[f])
        liked[factors] += lr * (z - reg * liked[factors])
        disliked[factors] += lr * (-z - reg * disliked[factors])


def test_step_equals_implicits_update_on_distinct_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    users, items = torch.randn(4, 5, generator=gen), torch.randn(8, 5, generator=gen)
    users[:, -1] = 1.0
    triples = [(0, 1, 2), (1, 3, 4), (3, 5, 0)]  # no row appears twice, so batched == sequential
    expected_users, expected_items = users.clone(), items.clone()
    reference_update(expected_users, expected_items, triples, lr=0.1, reg=0.01)
    u, i, j = (torch.tensor(column) for column in zip(*triples))
    _bpr_step(users, items, u, i, j, lr=0.1, reg=0.01)
    assert torch.allclose(users, expected_users, atol=1e-6)
    assert torch.allclose(items, expected_items, atol=1e-6)
    assert (users[:, -1] == 1).all()


@pytest.mark.parametrize("options", [{"negatives": "uniform", "workers": 1}, {"negatives": "popularity", "workers": 2}])
def test_learns_planted_structure(options: dict) -> None:
    data, train, held = planted()
    estimator = BayesianPersonalizedRanking(factors=8, learning_rate=0.1, regularization=0.01, iterations=150, batch_size=64, device="cpu", **options)
    model = estimator.fit(data).model_
    random_precision = held.float().sum().item() / (~train).sum().item()
    precision = precision_at_3(model, data, train, held)
    assert precision > 0.9 and precision > 2.5 * random_precision


def test_thread_workers_learn_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hogwild, "can_fork", lambda: False)
    data, train, held = planted()
    model = BayesianPersonalizedRanking(factors=8, learning_rate=0.1, iterations=150, batch_size=64, workers=2, device="cpu").fit(data).model_
    assert precision_at_3(model, data, train, held) > 0.9


def test_same_seed_one_worker_is_deterministic() -> None:
    data, _, _ = planted()
    first, second = (BayesianPersonalizedRanking(factors=4, iterations=5, workers=1, seed=3, device="cpu").fit(data).model_ for _ in range(2))
    assert torch.equal(first.user_embedding.weight, second.user_embedding.weight)
    assert torch.equal(first.item_bias.weight, second.item_bias.weight)


@pytest.mark.parametrize("bad", [{"factors": 0}, {"iterations": 0}, {"learning_rate": 0.0}, {"regularization": -1.0}, {"negatives": "hard"}])
def test_bad_hyperparameters_raise_config_errors(bad: dict) -> None:
    data, _, _ = planted()
    with pytest.raises(ConfigError):
        BayesianPersonalizedRanking(device="cpu", **bad).fit(data)


def test_empty_data_raises() -> None:
    data, _, _ = planted()
    empty = data.with_frame(data.frame.head(0))
    with pytest.raises(DataError, match="no interactions"):
        BayesianPersonalizedRanking(device="cpu").fit(empty)


@pytest.mark.parametrize("bitmap", [True, False])
def test_seen_pairs_membership_matches_a_set(bitmap: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.estimators import bpr

    if not bitmap:
        monkeypatch.setattr(bpr, "_BITMAP_BYTES", 0)
    gen = torch.Generator().manual_seed(0)
    users, items = torch.randint(50, (300,), generator=gen), torch.randint(70, (300,), generator=gen)
    seen = bpr.SeenPairs(users, items, num_items=70)
    assert (seen.words is not None) == bitmap
    query_users, query_items = torch.randint(60, (2000,), generator=gen), torch.randint(70, (2000,), generator=gen)
    pairs = set(zip(users.tolist(), items.tolist()))
    expected = [(u, i) in pairs for u, i in zip(query_users.tolist(), query_items.tolist())]
    assert seen.contains(query_users, query_items).tolist() == expected
