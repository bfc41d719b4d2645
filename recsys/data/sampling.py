"""Vectorized negative sampling: uniform or popularity**alpha, optionally excluding each user's positives."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.errors import ConfigError, DataError

__all__ = ["NegativeSampler", "csr_keys"]

_DISTRIBUTIONS = ("uniform", "popularity")
_BITMAP_BITS = 1 << 31  # exclusions as a users x items bitmap up to 256 MiB, else binary search in the sorted keys


def csr_keys(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Rows and columns of a sparse CSR matrix as flat long tensors ``(rows, cols)``, in storage order."""
    if matrix.layout != torch.sparse_csr:
        raise DataError(f"expected a sparse CSR tensor, got layout {matrix.layout}", fix="use tensor.to_sparse_csr()")
    crow, col = matrix.crow_indices().long(), matrix.col_indices().long()
    rows = torch.repeat_interleave(torch.arange(matrix.shape[0], device=crow.device), crow.diff())
    return rows, col


class NegativeSampler:
    """Vectorized negative sampling, uniform or popularity**alpha, optionally excluding each user's positives.

    Draws are made on the CPU (with replacement) and returned on the device of ``users``. Excluded
    items are removed by rejection: membership is one bit of a users x items bitmap (up to 256 MiB), else a
    ``searchsorted`` in the sorted keys ``user * num_items + item``, and only rejected entries are redrawn. Entries still rejected after
    ``max_rounds`` rounds (users who exclude most of the mass) are drawn exactly from the allowed
    items by bisection on the user's allowed cumulative mass.

    >>> seen = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 0]]).to_sparse_csr()
    >>> sampler = NegativeSampler(4, exclude=seen)
    >>> neg = sampler.sample(torch.tensor([0, 1]), 5, generator=torch.Generator().manual_seed(0))
    >>> neg.shape, bool((neg[0] >= 2).all()), bool((neg[1] != 2).all())
    (torch.Size([2, 5]), True, True)
    """

    def __init__(
        self,
        num_items: int,
        *,
        distribution: str = "uniform",
        alpha: float = 1.0,
        item_counts: Tensor | None = None,
        exclude: Tensor | None = None,
        max_rounds: int = 100,
    ) -> None:
        self.num_items = num_items
        self.distribution = distribution
        self.alpha = alpha
        self.item_counts = item_counts
        self.exclude = exclude
        self.max_rounds = max_rounds
        self._validate()
        weights = self._weights()  # (N,) float64, None for uniform
        self._weights_ = weights
        self._cdf_ = None if weights is None else weights.cumsum(0)  # inclusive
        self._keys_: Tensor | None = None
        if exclude is not None:
            rows, cols = csr_keys(exclude.cpu())
            keys = torch.unique(rows * num_items + cols)  # sorted, deduplicated
            rows, cols = keys // num_items, keys % num_items
            self._keys_ = keys
            self._bits_: Tensor | None = None
            if exclude.shape[0] * num_items <= _BITMAP_BITS:  # membership by one load instead of a binary search
                words = torch.zeros((exclude.shape[0] * num_items + 63) // 64, dtype=torch.int64)
                self._bits_ = words.index_add_(0, keys >> 6, torch.ones_like(keys) << (keys & 63))  # distinct bits: + is |
            self._starts_ = torch.searchsorted(keys, torch.arange(exclude.shape[0] + 1) * num_items)  # (U + 1,)
            w = torch.ones(num_items, dtype=torch.float64) if weights is None else weights
            self._excluded_mass_prefix_ = torch.cat([w.new_zeros(1), w[cols].cumsum(0)])  # (nnz + 1,)
            positive = (w > 0).double()
            blocked_count = torch.zeros(exclude.shape[0], dtype=torch.float64).index_add_(0, rows, positive[cols])
            self._blocked_ = blocked_count >= positive.sum()  # (U,) users with no allowed item

    def _validate(self) -> None:
        if not isinstance(self.num_items, int) or self.num_items < 1:
            raise ConfigError(f"num_items must be a positive int, got {self.num_items!r}", where="NegativeSampler")
        if self.distribution not in _DISTRIBUTIONS:
            raise ConfigError(
                f"unknown distribution {self.distribution!r}",
                where="NegativeSampler",
                fix=f"use one of {_DISTRIBUTIONS}",
            )
        if not self.alpha >= 0:
            raise ConfigError(f"alpha must be >= 0, got {self.alpha}", where="NegativeSampler")
        if not isinstance(self.max_rounds, int) or self.max_rounds < 1:
            raise ConfigError(f"max_rounds must be a positive int, got {self.max_rounds!r}", where="NegativeSampler")
        if self.distribution == "popularity":
            counts = self.item_counts
            if counts is None:
                raise ConfigError("distribution='popularity' needs item_counts", where="NegativeSampler")
            if counts.shape != (self.num_items,):
                raise ConfigError(
                    f"item_counts has shape {tuple(counts.shape)}, expected ({self.num_items},)",
                    where="NegativeSampler",
                )
            if counts.isnan().any() or (counts < 0).any() or not counts.double().pow(self.alpha).sum() > 0:
                raise ConfigError("item_counts must be >= 0, without NaN, with positive total", where="NegativeSampler")
        if self.exclude is not None and (self.exclude.dim() != 2 or self.exclude.shape[1] != self.num_items):
            raise ConfigError(
                f"exclude has shape {tuple(self.exclude.shape)}, expected (num_users, {self.num_items})",
                where="NegativeSampler",
            )

    def _weights(self) -> Tensor | None:
        if self.distribution == "uniform":
            return None
        return self.item_counts.detach().cpu().double().pow(self.alpha)

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        """n unconstrained draws from the item distribution: (n,) long."""
        if self._cdf_ is None:
            return torch.randint(self.num_items, (n,), generator=generator)
        u = torch.rand(n, generator=generator, dtype=torch.float64) * self._cdf_[-1]
        return torch.searchsorted(self._cdf_, u, right=True).clamp_(max=self.num_items - 1)

    def _is_excluded(self, users: Tensor, items: Tensor) -> Tensor:
        keys = users * self.num_items + items
        if self._bits_ is not None:
            return (self._bits_[keys >> 6] >> (keys & 63)) & 1 == 1
        pos = torch.searchsorted(self._keys_, keys).clamp_(max=self._keys_.numel() - 1)
        return self._keys_[pos] == keys

    def sample(self, users: Tensor, num_negatives: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Negatives for each user: (B, num_negatives) long, on the device of ``users``."""
        if not isinstance(num_negatives, int) or num_negatives < 1:
            raise ConfigError(f"num_negatives must be a positive int, got {num_negatives!r}", where="NegativeSampler")
        device = users.device
        users = users.detach().cpu().long().reshape(-1)
        out = self._draw(users.numel() * num_negatives, generator)
        if self._keys_ is not None and users.numel():
            num_users = self._blocked_.numel()
            if users.min() < 0 or users.max() >= num_users:
                raise DataError(f"user indices must lie in [0, {num_users})", where="NegativeSampler.sample")
            blocked = self._blocked_[users]
            if blocked.any():
                user = int(users[blocked.nonzero()[0, 0]])
                raise DataError(
                    f"user {user} has no item left to sample: its excluded items cover every item of positive weight",
                    where="NegativeSampler.sample",
                    fix="drop such users or sample without exclusion",
                )
            flat_users = users.repeat_interleave(num_negatives)
            todo = torch.arange(out.numel())
            for _ in range(self.max_rounds):
                todo = todo[self._is_excluded(flat_users[todo], out[todo])]
                if todo.numel() == 0:
                    break
                out[todo] = self._draw(todo.numel(), generator)
            else:
                todo = todo[self._is_excluded(flat_users[todo], out[todo])]
                if todo.numel():
                    out[todo] = self._draw_allowed(flat_users[todo], generator)
        return out.reshape(users.numel(), num_negatives).to(device)

    def _draw_allowed(self, users: Tensor, generator: torch.Generator | None) -> Tensor:
        """Exact draws from each user's allowed items, by bisection on the allowed cumulative mass: (n,) long."""
        n_items = self.num_items
        weights = torch.ones(n_items, dtype=torch.float64) if self._weights_ is None else self._weights_
        cum = torch.cat([weights.new_zeros(1), weights.cumsum(0)])  # (N + 1,) mass of items < i
        start = self._starts_[users]
        prefix = self._excluded_mass_prefix_

        def allowed_below(i: Tensor) -> Tensor:  # allowed mass of items < i
            idx = torch.searchsorted(self._keys_, users * n_items + i)
            return cum[i] - (prefix[idx] - prefix[start])

        total = allowed_below(torch.full_like(users, n_items))
        target = torch.rand(users.numel(), generator=generator, dtype=torch.float64) * total
        lo, hi = torch.zeros_like(users), torch.full_like(users, n_items - 1)
        while bool((lo < hi).any()):  # smallest i with allowed_below(i + 1) > target: ~log2(N) steps
            mid = (lo + hi) // 2
            right = allowed_below(mid + 1) > target
            hi = torch.where(right, mid, hi)
            lo = torch.where(right, lo, mid + 1)
        bad = self._is_excluded(users, lo)
        if bad.any():  # only possible through float rounding at a mass boundary (~1e-16)
            user = int(users[bad.nonzero()[0, 0]])
            raise DataError(f"could not draw an allowed negative for user {user}", where="NegativeSampler.sample")
        return lo
