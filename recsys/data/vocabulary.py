"""Vocabulary: original ids <-> contiguous indices 0..n-1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.errors import DataError

_MAX_SHOWN = 5


def _as_series(values: Any, name: str = "id") -> pl.Series:
    """A polars Series from a list, numpy array, torch tensor, pandas or polars Series."""
    if isinstance(values, pl.Series):
        return values
    if isinstance(values, torch.Tensor):
        return pl.Series(name, values.detach().cpu().numpy())
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):  # pandas
        return pl.Series(name, values.to_numpy())
    if np.isscalar(values):
        values = [values]
    return pl.Series(name, values)


class Vocabulary:
    """Original id <-> contiguous index (0..n-1).

    Built from SORTED unique original ids (``Vocabulary.from_values``), so index order equals
    original id order.

    >>> vocab = Vocabulary.from_values(pl.Series([30, 10, 20, 10]))
    >>> len(vocab), vocab.to_index([20, 30]).tolist(), vocab.to_original([0, 2])
    (3, [1, 2], [10, 30])
    """

    def __init__(self, ids: pl.Series) -> None:
        """``ids[i]`` is the original id of index ``i``; ids must be unique and non-null."""
        ids = _as_series(ids).alias("id")
        if ids.null_count():
            raise DataError(
                f"vocabulary ids contain {ids.null_count()} missing values",
                where="Vocabulary(ids)",
                fix="drop rows whose user or item id is missing",
            )
        if ids.n_unique() != len(ids):
            dup = ids.filter(ids.is_duplicated()).unique().head(_MAX_SHOWN).to_list()
            raise DataError(
                f"vocabulary ids are not unique (e.g. {dup})",
                where="Vocabulary(ids)",
                fix="build it with Vocabulary.from_values(...), which sorts and deduplicates",
            )
        self.ids = ids
        self._lookup: pl.DataFrame | None = None

    @classmethod
    def from_values(cls, values: pl.Series) -> Vocabulary:
        """Vocabulary of the sorted unique values of ``values``."""
        return cls(_as_series(values).drop_nulls().unique().sort())

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, dtype={self.ids.dtype})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and (self is other or self.ids.equals(other.ids))

    __hash__ = None  # type: ignore[assignment]

    def to_index(self, originals: Any) -> torch.Tensor:
        """Indices (LongTensor) of original ids; unknown ids raise a DataError naming some of them."""
        values = _as_series(originals)
        if self._lookup is None:
            self._lookup = self.ids.to_frame().with_row_index("index")
        try:
            values = values.cast(self.ids.dtype, strict=True)
        except pl.exceptions.InvalidOperationError:
            pass  # wrong type: every value is unknown, reported below
        if values.dtype != self.ids.dtype:
            unknown = values.unique(maintain_order=True)
        else:
            joined = values.alias("id").to_frame().join(
                self._lookup, on="id", how="left", maintain_order="left"
            )
            index = joined["index"]
            if not index.null_count():
                return torch.from_numpy(index.cast(pl.Int64).to_numpy().copy())
            unknown = joined.filter(pl.col("index").is_null())["id"].unique(maintain_order=True)
        shown = unknown.head(_MAX_SHOWN).to_list()
        raise DataError(
            f"{len(unknown)} unknown id(s), e.g. {shown}",
            where=f"Vocabulary.to_index (vocabulary of {len(self)} ids, dtype {self.ids.dtype})",
            fix="map only ids seen in the dataset the vocabulary was built from",
        )

    def to_original(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> list:
        """Original ids of indices (LongTensor, numpy array or list)."""
        if isinstance(index, torch.Tensor):
            index = index.detach().cpu().numpy()
        positions = np.asarray(index, dtype=np.int64).reshape(-1)
        if positions.size and (positions.min() < 0 or positions.max() >= len(self)):
            bad = positions[(positions < 0) | (positions >= len(self))][:_MAX_SHOWN].tolist()
            raise DataError(
                f"indices out of range: {bad}",
                where=f"Vocabulary.to_original (valid indices 0..{len(self) - 1})",
                fix="pass indices produced by this vocabulary",
            )
        return self.ids.gather(positions).to_list()
