"""Shuffled ``(user, item, rating)`` batches for explicit-feedback models (biased MF)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from recsys.data.epochs import EpochBatches
from recsys.errors import ConfigError, DataError

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions


class RatingBatches(EpochBatches):
    """Every rated interaction once per epoch in a seeded random order: ``{"users", "items", "ratings"}``.

    ``set_epoch`` makes each epoch's order reproducible (resume gives the same batches); ``shard``
    splits an epoch between data-parallel processes.

    >>> import polars as pl
    >>> from recsys.data.frame import from_frame
    >>> data = from_frame(pl.DataFrame({"user": [1, 1, 2], "item": [5, 6, 5], "rating": [4.0, 2.0, 5.0]}))
    >>> batch = next(iter(RatingBatches(data, batch_size=2)))
    >>> sorted(batch), batch["ratings"].dtype, len(RatingBatches(data, batch_size=2))
    (['items', 'ratings', 'users'], torch.float32, 2)
    """

    def __init__(self, data: Interactions, batch_size: int = 1024, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0) -> None:
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}", where="RatingBatches",
                              fix="set model.batches.batch_size > 0")
        if not data.has_ratings:
            raise DataError(
                f"dataset {data.name!r} has no ratings: an explicit-feedback model needs them",
                where="RatingBatches (explicit rating batches)",
                fix="use a dataset with a rating column (e.g. ml-100k), or an implicit model (bpr, als, ease, neumf)",
            )
        if data.num_interactions == 0:
            raise DataError("no training interactions to build batches from", where=f"RatingBatches({data.name!r})")
        self.users, self.items, self.ratings = data.user_index, data.item_index, data.ratings.float()
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed

    def num_rows(self) -> int:
        return self.users.shape[0]

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        n = self.users.shape[0]
        if self.shuffle:
            generator = self.epoch_generator()
            order = torch.randperm(n, generator=generator)[self.rank :: self.world_size]
        else:
            order = torch.arange(self.rank, n, self.world_size)
        users, items, ratings = self.users[order], self.items[order], self.ratings[order]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            end = start + self.batch_size
            yield {"users": users[start:end], "items": items[start:end], "ratings": ratings[start:end]}
