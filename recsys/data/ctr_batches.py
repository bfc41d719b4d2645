"""CTR training batches: interactions joined with user/item features, labelled, encoded once, sliced per batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import polars as pl
import torch
from torch import Tensor

from recsys.data.epochs import EpochBatches
from recsys.data.features import FeaturePipeline
from recsys.data.fields import EncodedFeatures, ctr_frame, ctr_labels
from recsys.errors import ConfigError, DataError

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions

__all__ = ["CTRBatches", "FeatureBatches", "ctr_frame", "ctr_labels"]  # ctr_frame, ctr_labels live in recsys.data.fields


class FeatureBatches(EpochBatches):
    """Shuffled mini-batches over encoded rows: ``{"labels", "ids", "bag_values", "bag_offsets", "dense"}``.

    Each epoch draws one seeded permutation and reorders the bags key-major per batch with one stable
    sort, so a batch is a few slices: no Python loop over rows or fields. ``set_epoch`` makes epochs
    reproducible and ``shard`` splits them between data-parallel processes.

    >>> enc = EncodedFeatures(torch.arange(6).view(3, 2), torch.tensor([5, 6, 7]), torch.tensor([[2, 0, 1]]), torch.zeros(3, 0))
    >>> batch = next(iter(FeatureBatches(enc, torch.tensor([1.0, 0.0, 1.0]), batch_size=2, shuffle=False)))
    >>> batch["ids"].tolist(), batch["bag_values"].tolist(), batch["bag_offsets"].tolist()
    ([[0, 1], [2, 3]], [5, 6], [0, 2, 2])
    """

    def __init__(self, encoded: EncodedFeatures, labels: Tensor, batch_size: int = 4096, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0) -> None:
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}", where=type(self).__name__)
        if len(encoded) == 0 or labels.shape != (len(encoded),):
            raise DataError(f"need one label per encoded row and at least one row, got {tuple(labels.shape)} labels "
                            f"for {len(encoded)} rows", where=type(self).__name__)
        self.encoded, self.labels = encoded, labels.float()
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        lengths = encoded.bag_lengths  # (F_bag, n)
        self._starts = torch.cumsum(lengths.flatten(), 0).view_as(lengths) - lengths  # (F_bag, n) start of each bag

    def num_rows(self) -> int:
        return len(self.labels)

    def _order(self) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.rank, len(self.labels), self.world_size)
        generator = self.epoch_generator()
        return torch.randperm(len(self.labels), generator=generator)[self.rank :: self.world_size]

    def _bags(self, order: Tensor) -> tuple[Tensor, Tensor]:
        """Bag values of the epoch in batch-major, then key-major order, and the ``(F_bag, n)`` permuted lengths."""
        lengths = self.encoded.bag_lengths.index_select(1, order)  # (F_bag, n)
        starts = self._starts.index_select(1, order).flatten()
        flat_lengths = lengths.flatten()
        total = int(flat_lengths.sum())
        bag = torch.repeat_interleave(torch.arange(len(flat_lengths)), flat_lengths, output_size=total)  # (nnz,)
        within = torch.arange(total) - torch.repeat_interleave(torch.cumsum(flat_lengths, 0) - flat_lengths, flat_lengths, output_size=total)
        values = self.encoded.bag_values.index_select(0, starts.index_select(0, bag).add_(within))  # field-major, epoch order
        if lengths.shape[0] <= 1:  # one bag field: epoch order is already batch-major
            return values, lengths
        num_rows = lengths.shape[1]
        field, position = bag // max(num_rows, 1), bag % max(num_rows, 1)
        key = (position // self.batch_size) * lengths.shape[0] + field  # (batch, field)
        return values.index_select(0, torch.sort(key, stable=True).indices), lengths

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        order = self._order()
        ids, dense, labels = (t.index_select(0, order) for t in (self.encoded.ids, self.encoded.dense, self.labels))
        values, lengths = self._bags(order)
        per_batch = torch.zeros(len(self) + 1, dtype=torch.long)
        totals = lengths.sum(0)  # (n,) values per row, all fields
        batch_of_row = torch.arange(len(order)) // self.batch_size
        per_batch.index_add_(0, batch_of_row.clamp_max(len(self)), totals)
        value_start = torch.cumsum(per_batch, 0) - per_batch
        for index, start in enumerate(range(0, len(self) * self.batch_size, self.batch_size)):
            end = min(start + self.batch_size, len(order))
            batch_lengths = lengths[:, start:end].flatten()  # (F_bag * B,) key-major
            offsets = torch.zeros(len(batch_lengths) + 1, dtype=torch.long)
            torch.cumsum(batch_lengths, 0, out=offsets[1:])
            first = int(value_start[index])
            yield {
                "labels": labels[start:end],
                "ids": ids[start:end],
                "bag_values": values[first : first + int(offsets[-1])],
                "bag_offsets": offsets,
                "dense": dense[start:end],
            }


class CTRBatches(FeatureBatches):
    """CTR batches from an :class:`Interactions` split, encoded with a FITTED ``features`` pipeline (the one the
    model and the evaluator share; it is never refit here): label ``rating >= features.label_threshold``.

    >>> from recsys.data.features import CategoricalFeature
    >>> from recsys.data.frame import from_frame
    >>> data = from_frame(pl.DataFrame({"user": [1, 1, 2], "item": [5, 6, 5], "rating": [5.0, 2.0, 4.0]}))
    >>> features = FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("item")]).fit(data)
    >>> batches = CTRBatches(data, features, batch_size=2)
    >>> len(batches), sorted(next(iter(batches)))
    (2, ['bag_offsets', 'bag_values', 'dense', 'ids', 'labels'])
    """

    def __init__(self, data: Interactions, features: FeaturePipeline, batch_size: int = 4096, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0) -> None:
        if not isinstance(features, FeaturePipeline) or not features.fitted:
            raise ConfigError("CTRBatches needs a fitted FeaturePipeline (features=...)", where="CTRBatches",
                              fix="fit it once on the training split (features.fit(split.train)) and pass that object "
                                  "to the model, the batches and the evaluator")
        if data.num_interactions == 0:
            raise DataError("no interactions to build CTR batches from", where=f"dataset {data.name!r}")
        self.features = features
        super().__init__(features.transform(ctr_frame(data)), features.labels(data), batch_size, shuffle, drop_last, seed)
