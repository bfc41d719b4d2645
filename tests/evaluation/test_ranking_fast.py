"""The top-k full-ranking path of RankingEvaluator against the exact per-user count: ties at the k-th score,
NaN, excluded items crowding the top (the masked-copy fallback), k beyond the catalogue, unsorted or duplicated
exclusions, memory-budget batches, and candidate scoring in sampled mode equal to gathering the full scores."""

from __future__ import annotations

import pytest
import torch

from recsys.errors import ConfigError, DataError
from recsys.evaluation import METRICS, RankingEvaluator, tie_ranks
from recsys.evaluation import ranking as ranking_module
from recsys.evaluation.metrics import top_k_tie_ranks

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support:UserWarning")
KS = (1, 3, 10)


def hard_case(seed: int, users: int = 30, items: int = 90) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer scores (big tie groups at every k), some NaN and -inf, users whose many excluded items hold the top
    scores (more than the top-k slack), targets tied with excluded items, users without targets."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (users, items), generator=gen).float()
    scores[torch.rand(users, items, generator=gen) < 0.05] = float("nan")
    scores[torch.rand(users, items, generator=gen) < 0.05] = float("-inf")
    exclude = torch.rand(users, items, generator=gen) < 0.2
    exclude[::4, : items * 3 // 4] = True  # 67 excluded items > 10 + 54 slots: these rows go to the fallback
    scores[::4, : items * 3 // 4] += 10.0  # ... and they outscore everything else
    targets = torch.rand(users, items, generator=gen) < 0.1
    targets[::5] = False
    targets[1::4, 0] = True  # some targets also excluded (a miss)
    return scores, exclude, targets


def reference(scores: torch.Tensor, exclude: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per-user values from the exact counts of ``tie_ranks`` on each masked row: the obvious implementation."""
    out: dict[str, list[float]] = {f"{m}@{k}": [] for m in METRICS for k in ks}
    for u in range(scores.shape[0]):
        if targets[u].any():
            ranks = tie_ranks(scores[u].masked_fill(exclude[u], float("-inf"))[None], targets[u].nonzero().T)
            for m, fn in METRICS.items():
                for k in ks:
                    out[f"{m}@{k}"].append(fn(ranks, k).item())
    return {name: torch.tensor(values, dtype=torch.float64) for name, values in out.items()}


def run(scores: torch.Tensor, exclude: torch.Tensor, targets: torch.Tensor, **kwargs) -> tuple[dict, dict]:
    per_user: dict[str, torch.Tensor] = {}
    ev = RankingEvaluator(ks=kwargs.pop("ks", KS), coverage=kwargs.pop("coverage", False), **kwargs)
    out = ev.evaluate(lambda u: scores[u], exclude.to_sparse_csr(), targets.to_sparse_csr(), per_user=per_user)
    return out, per_user


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("batch_size", [7, None])
def test_every_metric_equals_the_exact_per_user_count(seed: int, batch_size: int | None) -> None:
    scores, exclude, targets = hard_case(seed)
    out, per_user = run(scores, exclude, targets, batch_size=batch_size)
    for name, expected in reference(scores, exclude, targets, KS).items():
        torch.testing.assert_close(per_user[name], expected, atol=1e-12, rtol=0, msg=name)
        assert out[name] == pytest.approx(expected.mean().item(), abs=1e-12)


@pytest.mark.parametrize("slack", [0, 1000])
def test_the_masked_copy_fallback_and_the_slots_agree(monkeypatch: pytest.MonkeyPatch, slack: int) -> None:
    scores, exclude, targets = hard_case(2)
    monkeypatch.setattr(ranking_module, "_SLACK", slack)  # 0: most rows on the fallback; 1000: none
    _, per_user = run(scores, exclude, targets)
    for name, expected in reference(scores, exclude, targets, KS).items():
        torch.testing.assert_close(per_user[name], expected, atol=1e-12, rtol=0, msg=name)


def test_k_beyond_the_catalogue_and_constant_scores() -> None:
    gen = torch.Generator().manual_seed(3)
    targets = torch.rand(12, 6, generator=gen) < 0.4
    exclude = (torch.rand(12, 6, generator=gen) < 0.3) & ~targets
    for scores in (torch.zeros(12, 6), torch.randint(0, 2, (12, 6), generator=gen).float()):
        _, per_user = run(scores, exclude, targets, ks=(2, 6, 9))
        for name, expected in reference(scores, exclude, targets, (2, 6, 9)).items():
            torch.testing.assert_close(per_user[name], expected, atol=1e-12, rtol=0, msg=name)


def test_coverage_is_the_union_of_the_masked_top_k() -> None:
    gen = torch.Generator().manual_seed(4)
    scores = torch.randn(40, 300, generator=gen)  # distinct: the top k is unique
    scores[torch.rand(40, 300, generator=gen) < 0.02] = float("nan")
    exclude = torch.rand(40, 300, generator=gen) < 0.3
    exclude[:5] = True
    exclude[:5, :3] = False  # users with 3 scorable items: their top 10 holds 3 (one may be NaN)
    targets = torch.rand(40, 300, generator=gen) < 0.05
    targets[:5, 0] = True
    out, _ = run(scores, exclude, targets, ks=(1, 10), coverage=True, batch_size=16)
    masked = scores.masked_fill(exclude | scores.isnan(), float("-inf"))[targets.any(1)]
    for k in (1, 10):
        top = masked.topk(k, dim=1)
        assert out[f"coverage@{k}"] == top.indices[top.values > float("-inf")].unique().numel() / 300


def test_scores_are_read_only_nan_included() -> None:
    scores, exclude, targets = hard_case(5)
    held = {}  # the tensors score_fn hands out, kept by the caller

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        return held.setdefault(tuple(users.tolist()), scores[users])

    for kwargs in ({}, {"num_negatives": 5}):
        RankingEvaluator(ks=KS, batch_size=3, **kwargs).evaluate(score_fn, exclude.to_sparse_csr(), targets.to_sparse_csr())
    assert len(held) > 1
    for users, tensor in held.items():
        assert torch.equal(tensor.isnan(), scores[list(users)].isnan())
        assert torch.equal(tensor.nan_to_num(), scores[list(users)].nan_to_num())


def test_unsorted_and_duplicated_exclusions_count_once() -> None:
    scores, exclude, targets = hard_case(6)
    rows, cols = exclude.nonzero().unbind(1)
    order = torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(0))
    rows, cols = torch.cat([rows[order], rows[:50]]), torch.cat([cols[order], cols[:50]])  # shuffled, 50 twice
    lens = torch.bincount(rows, minlength=exclude.shape[0])
    by_row = torch.sort(rows, stable=True).indices
    messy = torch.sparse_csr_tensor(torch.cat([lens.new_zeros(1), lens.cumsum(0)]), cols[by_row],
                                    torch.ones(rows.numel()), exclude.shape)
    ev = RankingEvaluator(ks=KS, coverage=True, batch_size=8)
    clean = ev.evaluate(lambda u: scores[u], exclude.to_sparse_csr(), targets.to_sparse_csr())
    assert ev.evaluate(lambda u: scores[u], messy, targets.to_sparse_csr()) == clean


def test_memory_budget_sets_the_batch_size() -> None:
    assert RankingEvaluator().batch_size_for(1_000_000) == 2**30 // 8_000_000 == 134
    assert RankingEvaluator().batch_size_for(12_000) == 4096  # the cap
    assert RankingEvaluator(memory_budget=10).batch_size_for(1_000) == 1
    assert RankingEvaluator(batch_size=5, memory_budget=10).batch_size_for(10**6) == 5
    scores, exclude, targets = hard_case(7)
    sizes: list[int] = []
    ev = RankingEvaluator(ks=(3,), memory_budget=8 * 90 * 4)  # 4 users of 90 items
    ev.evaluate(lambda u: sizes.append(u.numel()) or scores[u], exclude.to_sparse_csr(), targets.to_sparse_csr())
    assert max(sizes) == 4
    for bad in (0, 1.5, None):
        with pytest.raises(ConfigError, match="memory_budget"):
            RankingEvaluator(memory_budget=bad)


def test_top_k_tie_ranks_matches_tie_ranks_up_to_k() -> None:
    gen = torch.Generator().manual_seed(8)
    scores = torch.randint(0, 5, (20, 30), generator=gen).float()
    targets = torch.randint(0, 30, (20, 4), generator=gen)
    mask = torch.rand(20, 4, generator=gen) < 0.8
    exact = tie_ranks(scores, targets, mask)
    k = 6
    top = scores.topk(k, dim=1).values
    ties = (scores == top[:, -1:]).sum(1)
    fast = top_k_tie_ranks(top, scores.gather(1, targets), exact.valid, mask.sum(1), ties, 30)
    inside = exact.greater < k
    assert torch.equal(fast.greater[inside], exact.greater[inside]) and torch.equal(fast.equal[inside], exact.equal[inside])
    assert bool((fast.greater[~inside & exact.valid] == k).all())
    for fn in METRICS.values():
        for cut in (1, 3, k):
            torch.testing.assert_close(fn(fast, cut), fn(exact, cut), atol=1e-12, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_candidate_scoring_equals_gathering_full_scores(seed: int) -> None:
    scores, exclude, targets = hard_case(seed, users=40, items=300)
    calls: list[tuple[int, int]] = []

    def candidate_fn(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(items.shape))
        return scores[users].gather(1, items)

    ev = RankingEvaluator(ks=KS, num_negatives=20, seed=seed, batch_size=16)
    args = (exclude.to_sparse_csr(), targets.to_sparse_csr())
    full_user: dict[str, torch.Tensor] = {}
    cand_user: dict[str, torch.Tensor] = {}
    full = ev.evaluate(lambda u: scores[u], *args, per_user=full_user)
    cand = ev.evaluate(lambda u: pytest.fail("full scores asked for"), *args, per_user=cand_user, candidate_fn=candidate_fn)
    assert cand == full and calls and all(c[1] >= 20 for c in calls)
    for name in full_user:
        assert torch.equal(cand_user[name], full_user[name]), name


def test_candidate_fn_shape_is_checked() -> None:
    scores, exclude, targets = hard_case(0)
    ev = RankingEvaluator(ks=(1,), num_negatives=5)
    with pytest.raises(DataError, match="candidate_fn returned"):
        ev.evaluate(lambda u: scores[u], exclude.to_sparse_csr(), targets.to_sparse_csr(),
                    candidate_fn=lambda u, items: scores[u][:, :3])
