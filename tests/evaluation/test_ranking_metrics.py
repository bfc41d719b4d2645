"""Tie-aware ranking metrics: hand-computed cases and an exhaustive tie-breaking reference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from recsys.errors import ConfigError, DataError
from recsys.evaluation.metrics import METRICS, check_metric_names, tie_ranks

INF = float("-inf")


def metric(name: str, scores: list[list[float]], targets: list[list[int]], k: int, mask=None) -> list[float]:
    m = None if mask is None else torch.tensor(mask)
    ranks = tie_ranks(torch.tensor(scores), torch.tensor(targets), m)
    return METRICS[name](ranks, k).tolist()


def reference(scores: np.ndarray, targets: list[int], mask: list[bool], k: int) -> dict[str, float]:
    """Average strict-ranking metrics over every tie-breaking permutation of the items."""
    n = len(scores)
    dense = np.unique(-scores, return_inverse=True)[1].reshape(-1)  # 0 = best score
    prio = np.array(list(itertools.permutations(range(n))))  # (P, n)
    order = np.argsort(dense * n + prio, axis=1)
    pos = np.argsort(order, axis=1)  # (P, n) 0-based position of each item
    num_targets = int(sum(mask))
    scored = [t for t, m in zip(targets, mask) if m and np.isfinite(scores[t])]
    p = np.sort(pos[:, scored], axis=1) if scored else np.full((len(prio), 0), n)  # (P, Rv) ascending
    hit = p < k
    disc = 1.0 / np.log2(p + 2.0)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(num_targets, k)))
    above = np.arange(p.shape[1])  # targets ranked above the i-th best target
    first = np.where(hit[:, 0], 1.0 / (p[:, 0] + 1), 0.0) if scored else np.zeros(len(prio))
    return {
        "hr": hit.any(axis=1).mean(),
        "recall": hit.sum(axis=1).mean() / num_targets,
        "precision": hit.sum(axis=1).mean() / k,
        "ndcg": (disc * hit).sum(axis=1).mean() / idcg,
        "mrr": first.mean(),
        "map": (hit * (1 + above) / (p + 1)).sum(axis=1).mean() / min(num_targets, k),
    }


def test_strict_ranking_single_target() -> None:
    scores, targets = [[3.0, 2.0, 1.0, 0.0]], [[1]]
    assert metric("hr", scores, targets, 1) == [0.0]
    for name, value in [("hr", 1), ("recall", 1), ("precision", 0.5), ("ndcg", 1 / math.log2(3)),
                        ("mrr", 0.5), ("map", 0.5)]:
        assert metric(name, scores, targets, 2) == pytest.approx([value])


def test_single_target_in_tie_group() -> None:
    scores, targets = [[1.0, 1.0, 1.0, 0.0]], [[0]]  # position uniform on {0, 1, 2}
    assert metric("hr", scores, targets, 1) == pytest.approx([1 / 3])
    assert metric("hr", scores, targets, 2) == pytest.approx([2 / 3])
    assert metric("hr", scores, targets, 3) == pytest.approx([1.0])
    assert metric("ndcg", scores, targets, 2) == pytest.approx([(1 + 1 / math.log2(3)) / 3])
    assert metric("mrr", scores, targets, 2) == pytest.approx([(1 + 1 / 2) / 3])
    assert metric("mrr", scores, targets, 3) == pytest.approx([(1 + 1 / 2 + 1 / 3) / 3])
    assert metric("map", scores, targets, 3) == pytest.approx([(1 + 1 / 2 + 1 / 3) / 3])
    assert metric("precision", scores, targets, 2) == pytest.approx([1 / 3])


def test_two_targets_sharing_a_tie_group() -> None:
    scores, targets = [[1.0, 1.0, 1.0, 0.0]], [[0, 1]]  # two targets among three tied slots
    assert metric("hr", scores, targets, 1) == pytest.approx([2 / 3])  # 1 - C(1,1)/C(3,1)
    assert metric("hr", scores, targets, 2) == pytest.approx([1.0])  # C(1,2) = 0
    assert metric("recall", scores, targets, 1) == pytest.approx([1 / 3])
    assert metric("mrr", scores, targets, 1) == pytest.approx([2 / 3])
    assert metric("mrr", scores, targets, 2) == pytest.approx([2 / 3 + 1 / 3 / 2])
    assert metric("map", scores, targets, 1) == pytest.approx([2 / 3])
    # target slots {0,1}: AP 1; {0,2}: 1/2; {1,2}: 1/4 -> mean 7/12
    assert metric("map", scores, targets, 2) == pytest.approx([7 / 12])


def test_excluded_nan_and_masked_targets() -> None:
    scores = [[INF, float("nan"), 2.0, 1.0], [INF, float("nan"), 2.0, 1.0]]
    targets = [[0, 1, 3], [3, 0, 0]]
    mask = [[True, True, True], [True, False, False]]
    # row 0: excluded and NaN targets are misses but count in the denominator; item 3 ranks 2nd
    assert metric("recall", scores, targets, 2, mask) == pytest.approx([1 / 3, 1.0])
    assert metric("hr", scores, targets, 1, mask) == [0.0, 0.0]
    assert metric("hr", scores, targets, 4, mask) == [1.0, 1.0]
    assert metric("ndcg", scores, targets, 2, mask) == pytest.approx([
        (1 / math.log2(3)) / (1 + 1 / math.log2(3)), 1 / math.log2(3)
    ])
    assert metric("map", scores, targets, 2, mask) == pytest.approx([0.5 / 2, 0.5])


def test_user_without_targets_scores_zero() -> None:
    for name in METRICS:
        assert metric(name, [[1.0, 0.0]], [[0]], 1, [[False]]) == [0.0]


@pytest.mark.parametrize("seed", range(6))
def test_matches_exhaustive_tie_breaking(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, users = 7, 6
    scores = rng.integers(0, 3, (users, n)).astype(float)
    scores[rng.random((users, n)) < 0.15] = -np.inf
    width = 4
    targets = np.stack([rng.choice(n, width, replace=False) for _ in range(users)])
    mask = rng.random((users, width)) < 0.7
    mask[:, 0] = True
    ranks = tie_ranks(torch.tensor(scores), torch.tensor(targets), torch.tensor(mask))
    for k in (1, 2, 3, 5, 8):
        got = {name: fn(ranks, k).numpy() for name, fn in METRICS.items()}
        for u in range(users):
            want = reference(scores[u], list(targets[u]), list(mask[u]), k)
            for name in METRICS:
                assert got[name][u] == pytest.approx(want[name], abs=1e-6), (name, k, u)


def test_matches_monte_carlo_on_larger_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (3, 60), generator=gen).float()  # big tie groups
    targets = torch.stack([torch.randperm(60, generator=gen)[:5] for _ in range(3)])
    ranks = tie_ranks(scores, targets)
    samples = 20000
    noise = torch.rand(samples, 3, 60, generator=gen) * 0.5  # random tie-breaking
    pos = (scores + noise).argsort(dim=2, descending=True).argsort(dim=2)  # (S, B, N)
    p = pos.gather(2, targets.expand(samples, 3, 5)).sort(dim=2).values.double()  # (S, B, R)
    k = 10
    hit = p < k
    assert METRICS["hr"](ranks, k) == pytest.approx(hit.any(2).double().mean(0), abs=0.015)
    assert METRICS["recall"](ranks, k) == pytest.approx(hit.double().sum(2).mean(0) / 5, abs=0.015)
    mrr = torch.where(hit[..., 0], 1 / (p[..., 0] + 1), 0.0).mean(0)
    assert METRICS["mrr"](ranks, k) == pytest.approx(mrr, abs=0.015)
    ap = (hit * torch.arange(1, 6) / (p + 1)).sum(2).mean(0) / 5
    assert METRICS["map"](ranks, k) == pytest.approx(ap, abs=0.015)


def test_tie_counts_and_input_checks() -> None:
    r = tie_ranks(torch.tensor([[2.0, 1.0, 1.0, 1.0, 0.0]]), torch.tensor([[2, 0, 4]]))
    assert r.greater.tolist() == [[1.0, 0.0, 4.0]]
    assert r.equal.tolist() == [[3.0, 1.0, 1.0]]
    with pytest.raises(DataError):
        tie_ranks(torch.zeros(2, 3), torch.tensor([[5], [0]]))
    with pytest.raises(DataError):
        tie_ranks(torch.zeros(3), torch.tensor([[0]]))
    with pytest.raises(ConfigError):
        check_metric_names(["hr", "auc"])
