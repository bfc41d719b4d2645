"""Vocabulary: original ids <-> contiguous indices 0..n-1, the one vocabulary type of the library.

Sorted (``from_values``: index order = id order, for user and item ids) or by frequency (``from_counts``:
descending count, ties by value, ``min_count`` / ``max_size``, for feature values and capped id tables);
``oov_index = len(vocab)`` is the row every unknown value maps to with ``to_index(..., unknown="oov")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl
import torch

from recsys.errors import ConfigError, DataError

_MAX_SHOWN = 5
_DTYPES = {str(d): d for d in (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64,
                               pl.String, pl.Boolean, pl.Float32, pl.Float64)}


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
    """Original id <-> contiguous index (0..n-1); ``oov_index = n`` for unknown values.

    ``Vocabulary.from_values`` sorts the unique ids (index order = id order); ``Vocabulary.from_counts``
    orders them by descending count (ties by value) and keeps ``counts``.

    >>> vocab = Vocabulary.from_values(pl.Series([30, 10, 20, 10]))
    >>> len(vocab), vocab.to_index([20, 30]).tolist(), vocab.to_original([0, 2])
    (3, [1, 2], [10, 30])
    >>> freq = Vocabulary.from_counts([7, 7, 7, 3, 3, 9], max_size=2)
    >>> freq.ids.to_list(), freq.counts.tolist(), freq.to_index(torch.tensor([3, 7, 9, 42]), unknown="oov").tolist()
    ([7, 3], [3, 2], [1, 0, 2, 2])
    """

    def __init__(self, ids: pl.Series, counts: torch.Tensor | None = None, coverage: float | None = None) -> None:
        """``ids[i]`` is the original id of index ``i``; ids must be unique and non-null.

        ``counts[i]`` (optional) is how often ``ids[i]`` was seen; ``coverage`` the share of all counted
        occurrences the kept ids hold (both set by :meth:`from_counts`).
        """
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
        if counts is not None and len(counts) != len(ids):
            raise DataError(f"{len(counts)} counts for {len(ids)} ids", where="Vocabulary(ids, counts)", fix="pass one count per id")
        self.ids = ids
        self.counts = None if counts is None else torch.as_tensor(counts, dtype=torch.long)
        self.coverage = coverage
        self._lookup: pl.DataFrame | None = None

    @classmethod
    def from_values(cls, values: pl.Series) -> Vocabulary:
        """Vocabulary of the sorted unique values of ``values``."""
        return cls(_as_series(values).drop_nulls().unique().sort())

    @classmethod
    def from_counts(cls, values: Any, min_count: int = 1, max_size: int | None = None, counts: Any = None) -> Vocabulary:
        """Values seen at least ``min_count`` times, by descending count (ties by value), at most ``max_size``.

        ``values`` are raw occurrences (nulls ignored), or distinct values with their ``counts``.
        """
        if min_count < 1 or (max_size is not None and max_size < 0):
            raise ConfigError(f"need min_count >= 1 and max_size >= 0 or None, got {min_count}, {max_size}",
                              where="Vocabulary.from_counts", fix="set min_count >= 1, max_size to None or a non-negative int")
        values = _as_series(values).alias("id")
        if values.dtype == pl.Null:  # nothing but missing values: an empty vocabulary
            values = values.cast(pl.Int64)
        weights = _as_series(counts, "count").cast(pl.Int64) if counts is not None else pl.repeat(1, len(values), dtype=pl.Int64, eager=True)
        if len(weights) != len(values):
            raise DataError(f"{len(weights)} counts for {len(values)} values", where="Vocabulary.from_counts", fix="pass one count per value")
        frame = pl.DataFrame({"id": values, "count": weights.alias("count")}).drop_nulls("id")
        totals = frame.group_by("id").agg(pl.col("count").sum()).sort(["count", "id"], descending=[True, False])
        kept = totals.filter(pl.col("count") >= min_count)
        kept = kept.head(max_size) if max_size is not None else kept
        total = int(totals["count"].sum())
        coverage = int(kept["count"].sum()) / max(total, 1)
        return cls(kept["id"], torch.from_numpy(kept["count"].to_numpy().astype(np.int64)), coverage)

    @property
    def oov_index(self) -> int:
        """The row unknown values map to with ``to_index(..., unknown="oov")``: ``len(self)``."""
        return len(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON values (``dtype``, ``values`` and, when counted, ``counts``); :meth:`from_dict` is the inverse."""
        state: dict[str, Any] = {"dtype": str(self.ids.dtype), "values": self.ids.to_list()}
        if self.counts is not None:
            state["counts"] = self.counts.tolist()
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Vocabulary:
        if state.get("dtype") not in _DTYPES:
            raise DataError(f"unknown vocabulary dtype {state.get('dtype')!r}", where="Vocabulary.from_dict",
                            fix=f"saved dtypes are one of {sorted(_DTYPES)}")
        counts = state.get("counts")
        return cls(pl.Series("id", state["values"], dtype=_DTYPES[state["dtype"]]),
                   None if counts is None else torch.tensor(counts, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, dtype={self.ids.dtype})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and (self is other or self.ids.equals(other.ids))

    __hash__ = None  # type: ignore[assignment]

    def to_index(self, originals: Any, unknown: Literal["error", "oov"] = "error") -> torch.Tensor:
        """Indices (LongTensor) of original ids; unknown ids raise a DataError naming some of them, or
        with ``unknown="oov"`` map to :attr:`oov_index` (so do missing values). Tensors and arrays keep
        their shape (and a tensor its device)."""
        if unknown not in ("error", "oov"):
            raise ConfigError(f"unknown must be 'error' or 'oov', got {unknown!r}", where="Vocabulary.to_index")
        if isinstance(originals, (torch.Tensor, np.ndarray)) and originals.ndim != 1:
            flat = originals.reshape(-1)
            return self.to_index(flat, unknown).reshape(originals.shape)
        if isinstance(originals, torch.Tensor) and originals.device.type != "cpu":
            return self.to_index(originals.cpu(), unknown).to(originals.device)
        values = _as_series(originals)
        if self._lookup is None:
            self._lookup = self.ids.to_frame().with_row_index("index")
        try:
            values = values.cast(self.ids.dtype, strict=True)
        except pl.exceptions.InvalidOperationError:
            pass  # wrong type: every value is unknown, reported below
        if values.dtype != self.ids.dtype:
            if unknown == "oov":
                return torch.full((len(values),), self.oov_index, dtype=torch.long)
            missing = values.unique(maintain_order=True)
        else:
            joined = values.alias("id").to_frame().join(
                self._lookup, on="id", how="left", maintain_order="left"
            )
            index = joined["index"]
            if unknown == "oov":
                index = index.cast(pl.Int64).fill_null(self.oov_index)
            if not index.null_count():
                return torch.from_numpy(index.cast(pl.Int64).to_numpy().copy())
            missing = joined.filter(pl.col("index").is_null())["id"].unique(maintain_order=True)
        shown = missing.head(_MAX_SHOWN).to_list()
        raise DataError(
            f"{len(missing)} unknown id(s), e.g. {shown}",
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
