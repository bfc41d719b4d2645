"""Hogwild BPR (the engine and its implicit-style facade): implicit's per-triple update, planted structure, skipped negatives, errors."""

from __future__ import annotations

import math

import pytest
import torch

from recsys.errors import ConfigError, DataError
from recsys.estimators.bpr import BayesianPersonalizedRanking
from recsys.models.bpr import BPRMF
from recsys.training import bpr_hogwild, hogwild
from recsys.training.bpr_hogwild import BPRHogwild, bpr_step
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
    bpr_step(users, items, u, i, j, lr=0.1, reg=0.01)
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
    if not bitmap:
        monkeypatch.setattr(bpr_hogwild, "_BITMAP_BYTES", 0)
    gen = torch.Generator().manual_seed(0)
    users, items = torch.randint(50, (300,), generator=gen), torch.randint(70, (300,), generator=gen)
    seen = bpr_hogwild.SeenPairs(users, items, num_items=70)
    assert (seen.words is not None) == bitmap
    query_users, query_items = torch.randint(60, (2000,), generator=gen), torch.randint(70, (2000,), generator=gen)
    pairs = set(zip(users.tolist(), items.tolist()))
    expected = [(u, i) in pairs for u, i in zip(query_users.tolist(), query_items.tolist())]
    assert seen.contains(query_users, query_items).tolist() == expected


def test_facade_is_the_bprmf_model_plus_the_engine() -> None:
    """The estimator trains nothing itself: its model equals the engine run on a BPRMF with the same seed."""
    data, _, _ = planted()
    facade = BayesianPersonalizedRanking(factors=4, iterations=5, workers=1, seed=3, device="cpu").fit(data).model_
    model = BPRMF(data.num_users, data.num_items, embedding_dim=4)
    BPRHogwild(iterations=5, workers=1).fit_seeded(model, data, device=torch.device("cpu"), seed=3)
    for name, value in facade.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_engine_from_a_generator_is_reproducible_and_can_continue_from_the_model() -> None:
    data, train, held = planted()
    models = []
    for _ in range(2):
        model = BPRMF(data.num_users, data.num_items, embedding_dim=8)
        BPRHogwild(learning_rate=0.1, iterations=150, batch_size=64, workers=1).fit(
            model, data, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), progress=False)
        models.append(model)
    assert torch.equal(models[0].item_bias.weight, models[1].item_bias.weight)
    assert precision_at_3(models[0], data, train, held) > 0.9
    before = models[0].user_embedding.weight.clone()
    BPRHogwild(iterations=1, workers=1, init="model").fit(models[0], data, device=torch.device("cpu"), generator=torch.Generator(), progress=False)
    assert (models[0].user_embedding.weight - before).abs().max() < 0.1  # a small step from where it was, not a restart
    assert precision_at_3(models[0], data, train, held) > 0.9
