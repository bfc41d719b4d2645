"""What every training-batch iterable shares: reproducible epochs and data-parallel sharding."""

from __future__ import annotations

import torch


class EpochBatches:
    """Base of the batch iterables given to the Trainer.

    ``set_epoch(e)`` makes epoch ``e`` reproducible (resume gives the same batches); ``shard(rank,
    world_size)`` makes this process take rows ``rank, rank + world_size, ...`` of each epoch's order.
    Subclasses set ``batch_size`` and ``drop_last`` and implement ``num_rows`` and ``__iter__``.

    >>> class Rows(EpochBatches):
    ...     batch_size, drop_last = 4, False
    ...     def num_rows(self) -> int:
    ...         return 10
    >>> batches = Rows()
    >>> len(batches), batches.shard(1, 2) or len(batches)
    (3, 2)
    """

    batch_size: int
    drop_last: bool
    seed: int = 0
    epoch: int = 0
    rank: int = 0
    world_size: int = 1

    def num_rows(self) -> int:
        """Rows in one epoch, over all processes."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def epoch_generator(self) -> torch.Generator:
        """A generator seeded by ``seed`` and the current epoch: the same epoch draws the same batches."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def _num_local(self) -> int:
        return len(range(self.rank, self.num_rows(), self.world_size))

    def __len__(self) -> int:
        n = self._num_local()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
