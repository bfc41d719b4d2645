"""RankingEvaluator: full and sampled ranking, exclusion, coverage, batching, errors."""

from __future__ import annotations

import pytest
import torch

from recsys.errors import ConfigError, DataError
from recsys.evaluation import METRICS, RankingEvaluator, tie_ranks

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support:UserWarning")


def random_case(seed: int, users: int = 40, items: int = 15) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer scores (many ties), exclude and targets overlapping a little, some users without targets."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (users, items), generator=gen).float()
    exclude = torch.rand(users, items, generator=gen) < 0.3
    targets = torch.rand(users, items, generator=gen) < 0.15
    targets[::7] = False
    return scores, exclude, targets


def reference(scores: torch.Tensor, exclude: torch.Tensor, targets: torch.Tensor, k: int) -> dict[str, float]:
    """Per-user loop over the dense matrices: the obvious implementation."""
    sums = {name: 0.0 for name in METRICS}
    users = [u for u in range(scores.shape[0]) if targets[u].any()]
    for u in users:
        row = scores[u].masked_fill(exclude[u], float("-inf"))
        ranks = tie_ranks(row[None], targets[u].nonzero().T)
        for name, fn in METRICS.items():
            sums[name] += fn(ranks, k).item()
    return {f"{name}@{k}": total / len(users) for name, total in sums.items()}


@pytest.mark.parametrize("batch_size", [1, 7, 1024])
def test_full_ranking_matches_per_user_reference(batch_size: int) -> None:
    scores, exclude, targets = random_case(0)
    ev = RankingEvaluator(ks=(1, 3, 10), batch_size=batch_size, coverage=False)
    out = ev.evaluate(lambda u: scores[u], exclude.to_sparse_csr(), targets.to_sparse_csr())
    assert out["num_users"] == float(targets.any(1).sum())
    for k in (1, 3, 10):
        for key, value in reference(scores, exclude, targets, k).items():
            assert out[key] == pytest.approx(value, abs=1e-9), key
    assert list(out) == [f"{m}@{k}" for m in METRICS for k in (1, 3, 10)] + ["num_users"]


def test_users_without_targets_are_left_out_and_excluded_targets_miss() -> None:
    scores = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    exclude = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 0, 0]]).to_sparse_csr()
    targets = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0]]).to_sparse_csr()  # user 1's target is excluded
    seen = []
    out = RankingEvaluator(ks=(1,), metrics=("hr", "recall")).evaluate(
        lambda u: seen.append(u.tolist()) or scores[u], exclude, targets
    )
    assert seen == [[0, 1]]  # user 2 has no target: never scored
    assert out == {"hr@1": 0.5, "recall@1": 0.5, "coverage@1": 1 / 3, "num_users": 2.0}


def test_coverage_counts_items_in_any_top_k() -> None:
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    exclude = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]).to_sparse_csr()
    targets = torch.tensor([[0, 0, 0, 0, 1], [1, 0, 0, 0, 0]]).to_sparse_csr()
    out = RankingEvaluator(ks=(1, 2, 20), metrics=()).evaluate(lambda u: scores[u], exclude, targets)
    # top-1: items 1 and 4; top-2: 1, 2, 4, 3; top-20 holds every scorable item, not excluded item 0 of user 0
    assert out == {"coverage@1": 0.4, "coverage@2": 0.8, "coverage@20": 1.0, "num_users": 2.0}


def test_scores_of_caller_are_not_modified_and_integer_scores_work() -> None:
    scores = torch.arange(12).reshape(2, 6)
    before = scores.clone()
    exclude = torch.eye(2, 6).to_sparse_csr()
    targets = torch.tensor([[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1]]).to_sparse_csr()
    out = RankingEvaluator(ks=(1,), metrics=("ndcg",)).evaluate(lambda u: scores[u], exclude, targets)
    assert out["ndcg@1"] == 1.0
    assert torch.equal(scores, before)


def test_sampled_keys_ties_and_perfect_scorer() -> None:
    users, items = 50, 400
    gen = torch.Generator().manual_seed(1)
    targets = torch.zeros(users, items, dtype=torch.bool)
    targets[torch.arange(users), torch.randint(items, (users,), generator=gen)] = True
    exclude = ((torch.rand(users, items, generator=gen) < 0.2) & ~targets).to_sparse_csr()
    ev = RankingEvaluator(ks=(10,), metrics=("hr", "ndcg"), num_negatives=100)
    constant = ev.evaluate(lambda u: torch.zeros(len(u), items), exclude, targets.to_sparse_csr())
    assert set(constant) == {"hr@10[sampled-100]", "ndcg@10[sampled-100]", "num_users"}
    assert constant["hr@10[sampled-100]"] == pytest.approx(10 / 101)  # target tied with 100 negatives
    perfect = ev.evaluate(lambda u: targets[u].float(), exclude, targets.to_sparse_csr())
    assert perfect["hr@10[sampled-100]"] == 1.0 and perfect["ndcg@10[sampled-100]"] == 1.0


def test_sampled_negatives_avoid_the_users_other_targets() -> None:
    targets = torch.zeros(30, 12, dtype=torch.bool)
    targets[:, :6] = True  # half the catalogue is test items: sampling them would tie with the target
    exclude = torch.zeros(30, 12, dtype=torch.bool)
    exclude[:, 6:9] = True
    ev = RankingEvaluator(ks=(1,), metrics=("hr", "mrr"), num_negatives=50)
    out = ev.evaluate(lambda u: targets[u].float(), exclude.to_sparse_csr(), targets.to_sparse_csr())
    assert out["hr@1[sampled-50]"] == 1.0 and out["mrr@1[sampled-50]"] == 1.0


def test_sampled_is_seeded_and_near_its_expectation() -> None:
    users, items = 2000, 300
    gen = torch.Generator().manual_seed(2)
    scores = torch.rand(users, items, generator=gen)
    exclude = (torch.rand(users, items, generator=gen) < 0.1).to_sparse_csr()
    targets = torch.zeros(users, items, dtype=torch.bool)
    targets[torch.arange(users), torch.randint(items, (users,), generator=gen)] = True
    args = (lambda u: scores[u], exclude, targets.to_sparse_csr())
    a = RankingEvaluator(ks=(10,), metrics=("hr",), num_negatives=100, seed=3).evaluate(*args)
    b = RankingEvaluator(ks=(10,), metrics=("hr",), num_negatives=100, seed=3, batch_size=333).evaluate(*args)
    c = RankingEvaluator(ks=(10,), metrics=("hr",), num_negatives=100, seed=4).evaluate(*args)
    assert a == RankingEvaluator(ks=(10,), metrics=("hr",), num_negatives=100, seed=3).evaluate(*args)
    assert a != c
    for out in (a, b, c):
        assert out["hr@10[sampled-100]"] == pytest.approx(10 / 101, abs=0.03)  # random scores


def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    scores, exclude, targets = random_case(1)
    RankingEvaluator(ks=(5,), batch_size=8).evaluate(
        lambda u: scores[u], exclude.to_sparse_csr(), targets.to_sparse_csr(), progress=True
    )
    assert "evaluate" in capsys.readouterr().err


def test_errors() -> None:
    scores, exclude, targets = random_case(2)
    ex, tg = exclude.to_sparse_csr(), targets.to_sparse_csr()
    with pytest.raises(DataError, match="score_fn returned"):
        RankingEvaluator().evaluate(lambda u: scores[u, :-1], ex, tg)
    with pytest.raises(DataError, match="sparse CSR"):
        RankingEvaluator().evaluate(lambda u: scores[u], exclude, tg)
    with pytest.raises(DataError, match="differ in shape"):
        RankingEvaluator().evaluate(lambda u: scores[u], ex, targets[:, :-1].to_sparse_csr())
    with pytest.raises(DataError, match="no user"):
        RankingEvaluator().evaluate(lambda u: scores[u], ex, torch.zeros_like(targets).to_sparse_csr())
    for kwargs in ({"ks": ()}, {"ks": (0,)}, {"metrics": ("auc",)}, {"batch_size": 0}, {"num_negatives": 0}):
        with pytest.raises(ConfigError):
            RankingEvaluator(**kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("num_negatives", [None, 20])
def test_cuda_matches_cpu(num_negatives: int | None) -> None:
    scores, exclude, targets = random_case(3, users=100, items=40)
    ev = RankingEvaluator(ks=(5, 10), num_negatives=num_negatives, batch_size=16)
    ex, tg = exclude.to_sparse_csr(), targets.to_sparse_csr()
    cpu = ev.evaluate(lambda u: scores[u.cpu()], ex, tg)
    gpu_scores = scores.cuda()
    gpu = ev.evaluate(lambda u: gpu_scores[u], ex.cuda(), tg.cuda(), device="cuda")
    assert gpu == pytest.approx(cpu, abs=1e-9)


@pytest.mark.parametrize("num_negatives", [None, 5])
def test_per_user_values_are_what_the_means_average(num_negatives: int | None) -> None:
    scores, exclude, targets = random_case(3)
    ev = RankingEvaluator(ks=(1, 3), batch_size=7, coverage=False, num_negatives=num_negatives)
    per_user: dict[str, torch.Tensor] = {}
    out = ev.evaluate(lambda u: scores[u], exclude.to_sparse_csr(), targets.to_sparse_csr(), per_user=per_user)
    expected_users = targets.any(1).nonzero().squeeze(1)
    assert torch.equal(per_user["user"], expected_users)
    assert set(per_user) == {"user", *(k for k in out if k != "num_users")}
    for name, values in per_user.items():
        if name != "user":
            assert values.shape == (len(expected_users),) and values.dtype == torch.float64
            assert values.mean().item() == pytest.approx(out[name], abs=1e-12)
    if num_negatives is None:  # one user's full-ranking value against the per-user reference
        user = int(expected_users[0])
        single = reference(scores[user : user + 1], exclude[user : user + 1], targets[user : user + 1], 3)
        assert per_user["ndcg@3"][0].item() == pytest.approx(single["ndcg@3"])
