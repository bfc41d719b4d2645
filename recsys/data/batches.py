"""Training batches built from an Interactions split, for the Trainer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from recsys.data.epochs import EpochBatches
from recsys.data.sampling import NegativeSampler
from recsys.errors import ConfigError

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions


class PairwiseBatches(EpochBatches):
    """Shuffled ``(user, positive item, sampled negatives)`` batches over all training interactions.

    One epoch visits every interaction once in a seeded random order; negatives for the whole epoch are
    drawn in one vectorized call. ``set_epoch`` makes every epoch reproducible (resume gives the same
    batches) and ``shard`` splits an epoch between data-parallel processes.

    Each batch is ``{"users": (B,), "items": (B,), "negatives": (B, S)}`` of long tensors.
    """

    def __init__(
        self,
        data: Interactions,
        batch_size: int = 1024,
        num_negatives: int = 1,
        distribution: str = "uniform",
        alpha: float = 0.75,
        exclude_positives: bool = True,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}", where="PairwiseBatches")
        if data.num_interactions == 0:
            raise ConfigError("no training interactions to build batches from", where=f"dataset {data.name}")
        self.users, self.items = data.user_index, data.item_index
        self.batch_size, self.num_negatives, self.drop_last, self.seed = batch_size, num_negatives, drop_last, seed
        counts = torch.bincount(self.items, minlength=data.num_items)
        self.sampler = NegativeSampler(
            data.num_items,
            distribution=distribution,
            alpha=alpha,
            item_counts=counts,
            exclude=data.user_item_matrix() if exclude_positives else None,
        )

    def num_rows(self) -> int:
        return self.users.shape[0]

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        generator = self.epoch_generator()
        order = torch.randperm(self.users.shape[0], generator=generator)[self.rank :: self.world_size]
        users, items = self.users[order], self.items[order]
        negatives = self.sampler.sample(users, self.num_negatives, generator=generator)  # (n, S)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            end = start + self.batch_size
            yield {"users": users[start:end], "items": items[start:end], "negatives": negatives[start:end]}
