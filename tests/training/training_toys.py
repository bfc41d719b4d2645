"""Toy recommenders and batch iterables for the training tests (and the DDP helper script)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from recsys.models.base import Recommender


class LinearToy(Recommender):
    """Linear regression on a planted signal ``y = x @ w_true``; optional dropout exercises RNG state."""

    def __init__(self, dim: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, 1)
        self.dropout = nn.Dropout(dropout)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        pred = self.linear(self.dropout(batch["x"])).squeeze(-1)  # (B,)
        return ((pred - batch["y"]) ** 2).mean()


class SparseToy(Recommender):
    """Dot-product matrix factorization with sparse embedding gradients."""

    def __init__(self, num_users: int = 20, num_items: int = 30, dim: int = 4) -> None:
        super().__init__()
        self.users = nn.Embedding(num_users, dim, sparse=True)
        self.items = nn.Embedding(num_items, dim, sparse=True)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        pred = (self.users(batch["user"]) * self.items(batch["item"])).sum(-1)  # (B,)
        return ((pred - batch["y"]) ** 2).mean()


class Popularity(Recommender):
    """No loss, only statistics: not trainable."""

    def __init__(self, num_items: int = 5) -> None:
        super().__init__()
        self.register_buffer("counts", torch.arange(num_items, dtype=torch.float32))


def planted_weights(dim: int = 8) -> Tensor:
    return torch.linspace(-1.0, 1.0, dim)


class ToyBatches:
    """Deterministic regression batches, re-drawn every epoch from ``seed`` and ``set_epoch``."""

    def __init__(
        self, num_batches: int = 8, batch_size: int = 32, dim: int = 8, seed: int = 0, scale: float = 1.0
    ) -> None:
        self.num_batches, self.batch_size, self.dim, self.seed, self.scale = (
            num_batches,
            batch_size,
            dim,
            seed,
            scale,
        )
        self.epoch = 0
        self.epochs_seen: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 10_000 + self.epoch)
        w = planted_weights(self.dim)
        for _ in range(self.num_batches):
            x = torch.randn(self.batch_size, self.dim, generator=generator)
            yield {"x": x, "y": self.scale * (x @ w + 0.5)}


def regression_mse(model: LinearToy, dim: int = 8) -> float:
    """Held-out MSE of ``model`` against the planted signal."""
    x = torch.randn(256, dim, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        pred = model.linear(x.to(model.device)).squeeze(-1).cpu()
    return float(((pred - (x @ planted_weights(dim) + 0.5)) ** 2).mean())
