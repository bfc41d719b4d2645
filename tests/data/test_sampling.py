"""NegativeSampler: exclusion, distributions, determinism, errors."""

from __future__ import annotations

import pytest
import torch

from recsys.data.sampling import NegativeSampler
from recsys.errors import ConfigError, DataError

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support:UserWarning")


def chi_square(draws: torch.Tensor, probs: torch.Tensor) -> float:
    observed = torch.bincount(draws.reshape(-1), minlength=probs.numel()).double()
    expected = probs.double() / probs.sum() * draws.numel()
    keep = expected > 0
    assert observed[~keep].sum() == 0  # never an item of probability 0
    return float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum())


# chi-square quantiles at 1 - 1e-6 (scipy.stats.chi2.ppf), by degrees of freedom
CHI2_LIMIT = {19: 63.7, 10: 46.9, 9: 44.8, 2: 27.6}


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_excluded_items_never_returned(distribution: str) -> None:
    gen = torch.Generator().manual_seed(0)
    seen = torch.rand(60, 30, generator=gen) < 0.6
    seen[5] = True
    seen[5, 17] = False  # one allowed item left
    counts = torch.randint(0, 50, (30,), generator=gen)
    counts[17] = 3
    sampler = NegativeSampler(
        30, distribution=distribution, alpha=0.75, item_counts=counts, exclude=seen.to_sparse_csr()
    )
    users = torch.arange(60).repeat(5)
    neg = sampler.sample(users, 40, generator=gen)
    assert neg.shape == (300, 40) and neg.dtype == torch.long
    assert not seen[users[:, None], neg].any()
    assert (neg[users == 5] == 17).all()


def test_uniform_frequencies() -> None:
    gen = torch.Generator().manual_seed(1)
    draws = NegativeSampler(20).sample(torch.zeros(1000, dtype=torch.long), 200, generator=gen)
    assert chi_square(draws, torch.ones(20)) < CHI2_LIMIT[19]


def test_popularity_frequencies_with_exclusion() -> None:
    counts = torch.tensor([0, 1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1])
    seen = torch.zeros(2, 12, dtype=torch.bool)
    seen[1, [10, 9]] = True  # user 1 excludes the two most popular items
    sampler = NegativeSampler(
        12, distribution="popularity", alpha=0.75, item_counts=counts, exclude=seen.to_sparse_csr()
    )
    gen = torch.Generator().manual_seed(2)
    probs = counts.double() ** 0.75
    assert chi_square(sampler.sample(torch.zeros(1000, dtype=torch.long), 200, generator=gen), probs) < CHI2_LIMIT[10]
    probs[[10, 9]] = 0
    assert chi_square(sampler.sample(torch.ones(1000, dtype=torch.long), 200, generator=gen), probs) < CHI2_LIMIT[9]


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_exact_fallback_after_max_rounds(distribution: str) -> None:
    seen = torch.ones(1, 50, dtype=torch.bool)
    seen[0, [3, 20, 41]] = False  # 94% of the items excluded, one rejection round only
    counts = torch.arange(1, 51)
    sampler = NegativeSampler(
        50, distribution=distribution, item_counts=counts, exclude=seen.to_sparse_csr(), max_rounds=1
    )
    draws = sampler.sample(torch.zeros(3000, dtype=torch.long), 20, generator=torch.Generator().manual_seed(3))
    probs = torch.zeros(50)
    probs[[3, 20, 41]] = counts[[3, 20, 41]].float() if distribution == "popularity" else 1.0
    assert chi_square(draws, probs) < CHI2_LIMIT[2]


def test_deterministic_with_seeded_generator() -> None:
    seen = (torch.rand(10, 100, generator=torch.Generator().manual_seed(0)) < 0.5).to_sparse_csr()
    sampler = NegativeSampler(100, exclude=seen)
    users = torch.arange(10)
    a = sampler.sample(users, 50, generator=torch.Generator().manual_seed(7))
    b = sampler.sample(users, 50, generator=torch.Generator().manual_seed(7))
    c = sampler.sample(users, 50, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_million_samples_with_exclusion() -> None:
    gen = torch.Generator().manual_seed(4)
    num_users, num_items, per_user = 10_000, 100_000, 50
    rows = torch.arange(num_users).repeat_interleave(per_user)
    cols = torch.randint(num_items, (num_users * per_user,), generator=gen)
    seen = torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(rows.numel()), (num_users, num_items))
    seen = seen.coalesce().to_sparse_csr()
    counts = torch.randint(1, 1000, (num_items,), generator=gen)
    for distribution in ("uniform", "popularity"):
        sampler = NegativeSampler(num_items, distribution=distribution, item_counts=counts, exclude=seen)
        neg = sampler.sample(torch.arange(num_users), 100, generator=gen)  # 1M negatives
        keys = torch.arange(num_users)[:, None] * num_items + neg
        seen_keys = rows * num_items + cols
        assert not torch.isin(keys, seen_keys).any()


def test_user_with_every_item_excluded() -> None:
    seen = torch.zeros(4, 5, dtype=torch.bool)
    seen[3] = True
    sampler = NegativeSampler(5, exclude=seen.to_sparse_csr())
    assert sampler.sample(torch.tensor([0, 1]), 3).shape == (2, 3)
    with pytest.raises(DataError, match="user 3"):
        sampler.sample(torch.tensor([0, 3]), 3)
    seen[3] = False
    seen[2, 1:] = True  # only item 0 left, and it has popularity 0
    counts = torch.tensor([0, 1, 1, 1, 1])
    pop = NegativeSampler(5, distribution="popularity", item_counts=counts, exclude=seen.to_sparse_csr())
    with pytest.raises(DataError, match="user 2"):
        pop.sample(torch.tensor([2]), 1)
    with pytest.raises(DataError, match="user indices"):
        pop.sample(torch.tensor([4]), 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"distribution": "zipf"},
        {"alpha": -0.5, "distribution": "popularity", "item_counts": torch.ones(5)},
        {"distribution": "popularity"},
        {"distribution": "popularity", "item_counts": torch.ones(4)},
        {"distribution": "popularity", "item_counts": torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0])},
        {"max_rounds": 0},
        {"exclude": torch.zeros(3, 4)},  # wrong number of items
    ],
)
def test_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        NegativeSampler(5, **kwargs)


def test_num_negatives_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        NegativeSampler(5).sample(torch.tensor([0]), 0)


def test_bitmap_and_binary_search_agree_with_the_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(3)
    seen = torch.rand(70, 97, generator=gen) < 0.1  # 97 items: keys cross 64-bit word boundaries
    seen.view(-1)[torch.tensor([0, 63, 64, 127, 70 * 97 - 1])] = True  # first, last bits of words, the last key
    users, items = torch.randint(0, 70, (20000,), generator=gen), torch.randint(0, 97, (20000,), generator=gen)
    users, items = torch.cat([users, torch.tensor([0, 0, 0, 1, 69])]), torch.cat([items, torch.tensor([0, 63, 64, 30, 96])])
    truth = seen[users, items]
    bitmap = NegativeSampler(97, exclude=seen.to_sparse_csr())
    monkeypatch.setattr("recsys.data.sampling._BITMAP_BITS", 100)  # too small here: the binary search
    search = NegativeSampler(97, exclude=seen.to_sparse_csr())
    assert bitmap._bits_ is not None and search._bits_ is None
    assert torch.equal(bitmap._is_excluded(users, items), truth) and torch.equal(search._is_excluded(users, items), truth)
    same = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(bitmap.sample(users[:500], 6, generator=same[0]), search.sample(users[:500], 6, generator=same[1]))
