"""Training batches from per-user item sequences: next-item (SASRec) and Cloze masking (BERT4Rec).

Sequences are the padded layout of :meth:`Interactions.padded_sequences`: the most recent items of
each user, left padded with ``PADDING_INDEX`` (0), item ``i`` stored as ``i + ITEM_SHIFT``; the
mask token is ``mask_index(num_items)`` (``num_items + 1``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from recsys.data.epochs import EpochBatches
from recsys.data.ids import ITEM_SHIFT, PADDING_INDEX, mask_index
from recsys.data.sampling import NegativeSampler
from recsys.errors import ConfigError, DataError

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions


def _windows(data: Interactions, length: int, augment: bool) -> tuple[Tensor, Tensor]:
    """``(users (W,), sequences (W, length))``: each user's last ``length`` items, left padded; with
    ``augment``, also every earlier non-overlapping window of longer histories (one row each)."""
    if not augment:
        return torch.arange(data.num_users), data.padded_sequences(length)
    offsets, items = data.sequences()
    counts = offsets.diff()  # (U,)
    step = max(length - 1, 1)  # consecutive windows share one item: the last input is the next target
    per_user = torch.where(counts > 0, (counts - 2).clamp(min=0) // step + 1, 0)
    users = torch.repeat_interleave(torch.arange(data.num_users), per_user)  # (W,)
    first = torch.repeat_interleave(per_user.cumsum(0) - per_user, per_user)
    window = torch.arange(users.numel()) - first  # 0 = most recent window
    end = offsets[users + 1] - window * step  # exclusive end of each window, (W,)
    index = end.unsqueeze(1) - length + torch.arange(length)  # (W, length)
    real = index >= offsets[users].unsqueeze(1)
    sequences = torch.where(real, items[index.clamp(min=0)] + ITEM_SHIFT, PADDING_INDEX)
    return users, sequences


class _SequenceBatches(EpochBatches):
    """Shared epoch logic: seeded shuffling, ``set_epoch`` (reproducible resume), ``shard`` (DDP).

    Each batch is cut to its longest sequence (leading all-padding columns dropped). With
    ``group_by_length``, users of similar history length share batches (sorted within chunks of 64
    batches, batch order shuffled), so short histories are not padded to ``max_len``: several times
    less Transformer work on short-history data such as Amazon 5-core.
    """

    def __init__(self, data: Interactions, max_len: int, batch_size: int, drop_last: bool, seed: int, where: str,
                 group_by_length: bool = False) -> None:
        if max_len is None or max_len <= 0:
            raise ConfigError(f"max_len must be positive, got {max_len}", where=where, fix="set batches.max_len >= 1")
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}", where=where, fix="set batches.batch_size >= 1")
        if data.num_interactions == 0:
            raise DataError("no training interactions to build sequences from", where=f"{where} on dataset {data.name}")
        self.num_items, self.max_len, self.batch_size = data.num_items, max_len, batch_size
        self.drop_last, self.seed, self.group_by_length = drop_last, seed, group_by_length

    def num_rows(self) -> int:
        return self.users.shape[0]

    def _epoch_order(self) -> tuple[torch.Generator, Tensor]:
        generator = self.epoch_generator()
        order = torch.randperm(self.users.shape[0], generator=generator)[self.rank :: self.world_size]
        if self.group_by_length:  # sort within chunks of 64 batches by length, then shuffle the batches
            chunk = 64 * self.batch_size
            lengths = (self.sequences[order] != PADDING_INDEX).sum(1)
            key = torch.arange(order.numel()) // chunk * (self.sequences.shape[1] + 1) + lengths
            order = order[key.argsort(stable=True)]
            batches = list(order.split(self.batch_size))
            keep = len(self) if self.drop_last else len(batches)
            shuffle = torch.randperm(keep, generator=generator).tolist()
            order = torch.cat([batches[i] for i in shuffle]) if batches else order
        return generator, order

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        generator, order = self._epoch_order()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self._batch(order[start : start + self.batch_size], generator)

    def _rows(self, rows: Tensor) -> Tensor:
        """Sequences of ``rows`` without their leading all-padding columns (exact: positions are right-aligned)."""
        sequences = self.sequences[rows]
        first = int((sequences != PADDING_INDEX).any(0).int().argmax())
        return sequences[:, first:]

    def _batch(self, rows: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])


class NextItemBatches(_SequenceBatches):
    """SASRec batches: at every position the next item is the target, with sampled negatives.

    Per user (train split only), the last ``max_len + 1`` items ``s``: ``inputs = s[:-1]``,
    ``targets = s[1:]`` (both ``(B, T)``, left padded, item index + 1; targets are 0 where the input
    is padding, so a position trains exactly where ``targets != 0``). ``num_negatives`` items are drawn uniformly per position, ``negatives``
    ``(B, T, S)`` in the same + 1 layout (omitted when 0, for full cross-entropy); with
    ``exclude_positives`` they avoid the user's training items. Users with fewer than 2 items
    have no target and are skipped. ``augment=True`` adds the earlier windows of histories
    longer than ``max_len + 1`` (off by default).

    >>> from recsys.data.frame import from_frame
    >>> import polars as pl
    >>> data = from_frame(pl.DataFrame({"user": [0, 0, 0, 1, 1], "item": [0, 1, 2, 2, 0], "timestamp": [0, 1, 2, 0, 1]}))
    >>> batch = next(iter(NextItemBatches(data, max_len=3, batch_size=2, num_negatives=1)))
    >>> sorted(zip(batch["inputs"].tolist(), batch["targets"].tolist()))
    [([0, 3], [0, 1]), ([1, 2], [2, 3])]
    >>> batch["negatives"].shape
    torch.Size([2, 2, 1])
    """

    def __init__(
        self,
        data: Interactions,
        max_len: int = 50,
        batch_size: int = 128,
        num_negatives: int = 1,
        exclude_positives: bool = False,
        augment: bool = False,
        group_by_length: bool = False,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(data, max_len, batch_size, drop_last, seed, "NextItemBatches", group_by_length)
        if num_negatives < 0:
            raise ConfigError(f"num_negatives must be >= 0, got {num_negatives}", where="NextItemBatches",
                              fix="0 for full cross-entropy, >= 1 for BCE or sampled softmax")
        users, sequences = _windows(data, max_len + 1, augment)  # (W,), (W, T + 1)
        keep = (sequences[:, :-1] != PADDING_INDEX).any(1)  # at least one (input, target) pair
        if not bool(keep.any()):
            raise DataError("no user has 2 or more training items", where=f"NextItemBatches on dataset {data.name}",
                            fix="use a dataset with longer histories")
        self.users, self.sequences = users[keep], sequences[keep]
        self.num_negatives = num_negatives
        exclude = data.user_item_matrix() if exclude_positives and num_negatives else None
        self.sampler = NegativeSampler(data.num_items, exclude=exclude)

    def _batch(self, rows: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        users, sequence = self.users[rows], self._rows(rows)  # (B,), (B, T + 1)
        inputs = sequence[:, :-1]  # (B, T)
        targets = sequence[:, 1:].where(inputs != PADDING_INDEX, PADDING_INDEX)  # (B, T): 0 = no target
        batch = {"users": users, "inputs": inputs, "targets": targets}
        if self.num_negatives:
            B, T = batch["inputs"].shape
            negatives = self.sampler.sample(users, T * self.num_negatives, generator=generator)  # (B, T * S)
            batch["negatives"] = negatives.view(B, T, self.num_negatives) + ITEM_SHIFT  # (B, T, S)
        return batch


class ClozeBatches(_SequenceBatches):
    """BERT4Rec batches: each real item is replaced by the mask token with probability ``mask_prob``.

    Per user the last ``max_len`` training items (left padded): ``inputs`` ``(B, T)`` with masked
    positions set to ``num_items + 1``, ``labels`` ``(B, T)`` holding the original item (index + 1)
    at masked positions and 0 elsewhere. A sequence where no item was drawn gets its last item
    masked, so every row trains (and the inference setting, a mask after the history, is seen).

    >>> from recsys.data.frame import from_frame
    >>> import polars as pl
    >>> data = from_frame(pl.DataFrame({"user": [0, 0, 0], "item": [0, 1, 2], "timestamp": [0, 1, 2]}))
    >>> batch = next(iter(ClozeBatches(data, max_len=4, mask_prob=1.0)))
    >>> batch["inputs"].tolist(), batch["labels"].tolist()
    ([[4, 4, 4]], [[1, 2, 3]])
    """

    def __init__(
        self,
        data: Interactions,
        max_len: int = 50,
        batch_size: int = 128,
        mask_prob: float = 0.2,
        augment: bool = False,
        group_by_length: bool = False,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(data, max_len, batch_size, drop_last, seed, "ClozeBatches", group_by_length)
        if not 0.0 < mask_prob <= 1.0:
            raise ConfigError(f"mask_prob must be in (0, 1], got {mask_prob}", where="ClozeBatches",
                              fix="set batches.mask_prob, e.g. 0.2")
        users, sequences = _windows(data, max_len, augment)
        keep = (sequences != PADDING_INDEX).any(1)
        self.users, self.sequences = users[keep], sequences[keep]
        self.mask_prob, self.mask_token = mask_prob, mask_index(data.num_items)

    def _batch(self, rows: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        sequence = self._rows(rows)  # (B, T)
        real = sequence != PADDING_INDEX
        masked = (torch.rand(sequence.shape, generator=generator) < self.mask_prob) & real  # (B, T)
        masked[:, -1] |= ~masked.any(1)  # left padding: the last position is always a real item
        return {
            "users": self.users[rows],
            "inputs": sequence.masked_fill(masked, self.mask_token),
            "labels": sequence.where(masked, PADDING_INDEX),
        }
