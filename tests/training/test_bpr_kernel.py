"""The compiled BPR loop (recsys.training.bpr_kernel): implicit's update pair by pair, seen negatives skipped,
reproducible on one thread, and the engine's choice between it and the vectorized torch steps."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from recsys.data.frame import from_frame
from recsys.errors import ConfigError
from recsys.models.bpr import BPRMF
from recsys.training import bpr_kernel
from recsys.training.bpr_hogwild import BPRHogwild, fused_bpr_step

pytestmark = pytest.mark.skipif(not bpr_kernel.available(), reason="numba is not installed")


def _iteration(factors, bias, users, items, num_users, num_items, seed, popularity=False, lr=0.5, reg=0.1, threads=1, bitmap=True):
    indptr, indices = bpr_kernel.csr_rows(users, items, num_users, num_items)
    words = bpr_kernel.seen_bitmap(indptr, indices, num_items) if bitmap else None  # None: binary search in the rows
    return bpr_kernel.bpr_iteration(factors, bias, users, items, indptr, indices, words, num_users=num_users, num_items=num_items,
                                    popularity=popularity, lr=lr, reg=reg, seed=seed, threads=threads)


def test_one_pair_is_the_fused_steps_update_and_a_seen_negative_changes_nothing() -> None:
    # one user who liked item 0 of 2: each iteration draws (0, 0, j); j = 1 trains, j = 0 (seen) is skipped
    rng = np.random.default_rng(0)
    outcomes = set()
    for seed in range(12):
        factors, bias = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
        bias[0] = 0.0
        expected_f, expected_b = torch.from_numpy(factors.copy()), torch.from_numpy(bias.copy())
        skipped = _iteration(factors, bias, np.array([0]), np.array([0]), num_users=1, num_items=2, seed=seed)
        outcomes.add(skipped)
        if skipped == 0:
            fused_bpr_step(expected_f, expected_b, torch.tensor([[0], [1], [2]]), lr=0.5, reg=0.1)
        torch.testing.assert_close(torch.from_numpy(factors), expected_f, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.from_numpy(bias), expected_b, rtol=1e-5, atol=1e-6)
    assert outcomes == {0, 1}  # both branches were exercised


@pytest.mark.parametrize("bitmap", [True, False])
def test_seen_negatives_are_skipped_at_their_share_and_popularity_negatives_of_one_user_all_are(bitmap: bool) -> None:
    users, items = np.zeros(8, dtype=np.int64), np.arange(8, dtype=np.int64)  # user 0 saw items 0..7 of 10
    factors, bias = np.zeros((11, 4), np.float32), np.zeros(11, np.float32)
    skipped = sum(_iteration(factors, bias, users, items, 1, 10, seed=s, lr=0.01, bitmap=bitmap) for s in range(400))
    assert abs(skipped / (400 * 8) - 0.8) < 0.04
    factors, bias = np.ones((11, 4), np.float32), np.zeros(11, np.float32)
    assert _iteration(factors, bias, users, items, 1, 10, seed=1, popularity=True, bitmap=bitmap) == 8  # all hers
    assert (factors == 1).all() and (bias == 0).all()


def _reference_iteration(factors, bias, users, items, num_users, num_items, seed, popularity, lr, reg):
    """The kernel's one-thread iteration written plainly: each pair drawn from the thread's xorshift64* stream,
    checked against the seen set, then trained, one after another in draw order."""
    mask = (1 << 64) - 1
    state = bpr_kernel.splitmix64(seed)

    def below(n: int) -> int:
        nonlocal state
        state ^= state >> 12
        state = (state ^ (state << 25)) & mask
        state ^= state >> 27
        return ((((state * 0x2545F4914F6CDD1D) & mask) >> 32) * n) >> 32

    seen = set(zip(users.tolist(), items.tolist()))
    skipped = 0
    for _ in range(len(users)):
        liked = below(len(users))
        user = int(users[liked])
        negative = int(items[below(len(users))]) if popularity else below(num_items)
        if (user, negative) in seen:
            skipped += 1
            continue
        fused_bpr_step(factors, bias, torch.tensor([[user], [num_users + int(items[liked])], [num_users + negative]]), lr=lr, reg=reg)
    return skipped


@pytest.mark.parametrize(("popularity", "bitmap"), [(False, True), (True, True), (False, False)])
def test_one_thread_trains_exactly_the_reference_draws_in_order(popularity: bool, bitmap: bool) -> None:
    # 700 interactions: the kernel's chunks of 128 draws (checked first, then trained with rows prefetched ahead)
    # must give the tables of the plain pair-by-pair loop
    rng = np.random.default_rng(3)
    users, items = rng.integers(0, 50, 700), rng.integers(0, 40, 700)
    factors = ((rng.random((90, 64)) - 0.5) / 8).astype(np.float32)
    bias = np.zeros(90, np.float32)
    expected_f, expected_b = torch.from_numpy(factors.copy()), torch.from_numpy(bias.copy())
    skipped = _iteration(factors, bias, users, items, 50, 40, seed=11, popularity=popularity, lr=0.05, reg=0.01, bitmap=bitmap)
    assert skipped == _reference_iteration(expected_f, expected_b, users, items, 50, 40, 11, popularity, lr=0.05, reg=0.01)
    assert 0 < skipped < 700
    torch.testing.assert_close(torch.from_numpy(factors), expected_f, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(bias), expected_b, rtol=1e-4, atol=1e-5)


def test_the_bitmap_holds_exactly_the_seen_pairs() -> None:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 30, 200), rng.integers(0, 70, 200)  # 30 x 70 = 2,100 bits across word edges
    indptr, indices = bpr_kernel.csr_rows(users, items, 30, 70)
    words = bpr_kernel.seen_bitmap(indptr, indices, 70)
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")[: 30 * 70].reshape(30, 70).astype(bool)
    expected = np.zeros((30, 70), dtype=bool)
    expected[users, items] = True
    assert (bits == expected).all()


def _blocks() -> tuple:
    """40 users in two groups, each liking 8 of its group's 10 items: the planted signal."""
    rows = [(u, (u // 20) * 10 + k) for u in range(40) for k in range((u % 10) % 3, (u % 10) % 3 + 8)]
    data = from_frame(pl.DataFrame({"user": [r[0] for r in rows], "item": [r[1] for r in rows]}))
    return data, torch.tensor([u // 20 for u in range(40)])


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_both_kernels_learn_the_planted_blocks(kernel: str) -> None:
    data, group = _blocks()
    model = BPRMF(data.num_users, data.num_items, embedding_dim=8)
    engine = BPRHogwild(learning_rate=0.05, regularization=0.001, iterations=60, negatives="uniform", workers=1, kernel=kernel)
    engine.fit_seeded(model, data, device=torch.device("cpu"), seed=0)
    scores = model.score_users(torch.arange(40), history=None).detach()  # (40, 20)
    own = scores.view(40, 2, 10)[torch.arange(40), group].mean(1)
    other = scores.view(40, 2, 10)[torch.arange(40), 1 - group].mean(1)
    assert (own > other).all()


def test_one_thread_is_reproducible_and_the_seed_matters() -> None:
    data, _ = _blocks()

    def fit(seed: int) -> torch.Tensor:
        model = BPRMF(data.num_users, data.num_items, embedding_dim=4)
        BPRHogwild(iterations=3, workers=1, kernel="numba").fit_seeded(model, data, device=torch.device("cpu"), seed=seed)
        return model.user_embedding.weight.detach().clone()

    assert torch.equal(fit(5), fit(5)) and not torch.equal(fit(5), fit(6))


def test_two_threads_share_the_tables() -> None:
    data, _ = _blocks()
    model = BPRMF(data.num_users, data.num_items, embedding_dim=4)
    run = BPRHogwild(iterations=2, workers=2, kernel="numba").fit_seeded(model, data, device=torch.device("cpu"), seed=0)
    assert run.samples == 2 * data.num_interactions and 0 <= run.skipped < run.samples
    assert torch.isfinite(model.user_embedding.weight).all() and model.item_bias.weight.abs().sum() > 0


def test_the_engine_picks_its_kernel() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert BPRHogwild().compiled(cpu) and BPRHogwild(kernel="numba").compiled(cpu)
    assert not BPRHogwild(kernel="torch").compiled(cpu) and not BPRHogwild().compiled(cuda)
    with pytest.raises(ConfigError, match="kernel must be one of"):
        BPRHogwild(kernel="cython")


def test_warm_up_loads_the_loop_in_the_background_only_where_a_fit_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.training.engine import warm_up_in_background

    thread = warm_up_in_background(BPRHogwild(), torch.device("cpu"))
    thread.join(timeout=120)
    assert not thread.is_alive() and len(bpr_kernel._kernel().signatures) >= 1  # compiled or loaded from the cache
    calls = []
    monkeypatch.setattr(bpr_kernel, "load", lambda: calls.append(1))
    BPRHogwild(kernel="torch").warm_up(torch.device("cpu"))
    BPRHogwild().warm_up(torch.device("cuda"))
    assert calls == []
    BPRHogwild().warm_up(torch.device("cpu"))
    assert calls == [1]
