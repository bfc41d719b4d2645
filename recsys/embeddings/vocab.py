"""Frequency-capped vocabularies: keep the most frequent ids, send the rest to one OOV row."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.embeddings.config import EmbeddingField
from recsys.errors import ConfigError, DataError


class FrequencyVocabulary:
    """Map raw int64 ids to rows ``0..K-1`` by descending frequency; every other id maps to ``oov_index = K``.

    ``max_size`` caps ``K``; ``min_count`` drops rarer ids. ``fit(ids, counts=None)`` takes raw occurrences
    or (distinct id, count) pairs; learned state ends in ``_`` (``ids_``, ``counts_``, ``coverage_``).

    >>> vocab = FrequencyVocabulary(max_size=2).fit(torch.tensor([7, 7, 7, 3, 3, 9]))
    >>> vocab.ids_.tolist(), vocab.transform(torch.tensor([3, 7, 9, 42])).tolist(), vocab.num_embeddings
    ([7, 3], [1, 0, 2, 2], 3)
    """

    def __init__(self, max_size: int | None = None, min_count: int = 1) -> None:
        self.max_size = max_size
        self.min_count = min_count

    def fit(self, ids: Tensor, counts: Tensor | None = None) -> FrequencyVocabulary:
        if self.max_size is not None and self.max_size < 0 or self.min_count < 1:
            raise ConfigError(
                f"need max_size >= 0 and min_count >= 1, got {self.max_size}, {self.min_count}",
                where="FrequencyVocabulary",
                fix="set max_size to None or a non-negative int, min_count >= 1",
            )
        if ids.dtype != torch.long:
            raise DataError(f"ids must be torch.long, got {ids.dtype}", where="FrequencyVocabulary.fit", fix="convert with .long()")
        ids = ids.flatten()
        weights = torch.ones_like(ids) if counts is None else counts.flatten().long()
        if weights.shape != ids.shape:
            raise DataError("counts must have one entry per id", where="FrequencyVocabulary.fit", fix="pass counts shaped like ids")
        unique, inverse = torch.unique(ids, return_inverse=True)  # sorted by id
        totals = torch.zeros(len(unique), dtype=torch.long).index_add_(0, inverse, weights)
        order = torch.sort(-totals, stable=True).indices  # by count desc, ties by id asc
        keep = order[totals[order] >= self.min_count][: self.max_size]
        self.ids_, self.counts_ = unique[keep], totals[keep]
        self.coverage_ = float(self.counts_.sum()) / max(float(totals.sum()), 1.0)
        self._sorted_ids, self._rows = torch.sort(self.ids_)
        return self

    @property
    def oov_index(self) -> int:
        return len(self._fitted())

    @property
    def num_embeddings(self) -> int:
        """Rows a table needs: the kept ids plus the OOV row."""
        return len(self._fitted()) + 1

    def transform(self, ids: Tensor) -> Tensor:
        """Rows of ``ids`` (any shape), vectorized; unknown ids -> ``oov_index``."""
        self._fitted()
        if ids.dtype != torch.long:
            raise DataError(f"ids must be torch.long, got {ids.dtype}", where="FrequencyVocabulary.transform", fix="convert with .long()")
        sorted_ids = self._sorted_ids.to(ids.device)
        pos = torch.searchsorted(sorted_ids, ids).clamp_max(max(len(sorted_ids) - 1, 0))
        if len(sorted_ids) == 0:
            return torch.full_like(ids, self.oov_index)
        found = sorted_ids[pos] == ids
        return torch.where(found, self._rows.to(ids.device)[pos], self.oov_index)

    def field(self, name: str, embedding_dim: int) -> EmbeddingField:
        """An :class:`EmbeddingField` sized for this vocabulary (OOV row included)."""
        return EmbeddingField(name, num_embeddings=self.num_embeddings, embedding_dim=embedding_dim)

    def _fitted(self) -> Tensor:
        if not hasattr(self, "ids_"):
            raise ConfigError("vocabulary is not fitted", where="FrequencyVocabulary", fix="call fit(ids) first")
        return self.ids_
