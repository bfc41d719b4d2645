"""Feature pipeline for CTR models: declared fields -> vocabularies fit on train -> id / bag / dense tensors.

Three kinds of field, as in DeepCTR's feature columns and FuxiCTR's feature maps:

- :class:`CategoricalFeature`: one value per row (user, item, gender, zip prefix), vocabulary with
  ``min_count`` / ``max_size``; unseen, rare and missing values map to one OOV row.
- :class:`MultiCategoricalFeature`: a list of values per row (genres, tags), pooled by the model.
- :class:`NumericFeature`: bucketized into a categorical field (quantile or given boundaries; missing
  values to the OOV bucket) or kept dense (standardized with train mean and std; missing -> 0).

:class:`FeaturePipeline` fits on the training split only and transforms any frame (polars or pandas)
into :class:`EncodedFeatures`: the tensors models read, and the :class:`EmbeddingField` list that
sizes their tables. Every value a vocabulary has not seen maps to ``num_embeddings`` (the OOV row of
an ``EmbeddingField(oov_row=True)``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
import torch
from torch import Tensor

from recsys.embeddings.config import EmbeddingField
from recsys.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "CategoricalFeature",
    "EncodedFeatures",
    "FeaturePipeline",
    "MultiCategoricalFeature",
    "NumericFeature",
    "as_polars",
]


def as_polars(frame: Any, where: str) -> pl.DataFrame:
    """A polars DataFrame from a polars or pandas frame; DataError for anything else."""
    if isinstance(frame, pl.DataFrame):
        return frame
    if hasattr(frame, "iloc") and hasattr(frame, "columns"):  # pandas, without importing it
        return pl.from_pandas(frame)
    raise DataError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}", where=where,
                    fix="pass a DataFrame with one column per declared field")


def _kind(dtype: pl.DataType) -> str:
    """'int', 'str', 'bool', 'float', 'list' or 'other' for a polars dtype."""
    if dtype.is_integer():
        return "int"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "str"
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_float():
        return "float"
    if isinstance(dtype, pl.List):
        return "list"
    return "other"


def _normalize(values: pl.Series) -> pl.Series:
    """Categoricals and enums to strings, every integer width to Int64, so fit and transform compare equal."""
    kind = _kind(values.dtype)
    if kind == "str":
        return values.cast(pl.String)
    if kind == "int":
        return values.cast(pl.Int64)
    return values


class _Vocabulary:
    """Kept values of one field by descending count (ties by value); index ``K = len`` is the OOV row."""

    def fit(self, values: pl.Series, min_count: int, max_size: int | None) -> _Vocabulary:
        if values.null_count() == len(values):
            raise DataError(f"column {values.name!r} has no non-missing values to fit on", where="FeaturePipeline.fit",
                            fix="drop the feature or fill the column")
        counts = values.drop_nulls().value_counts(name="__count__")
        counts = counts.sort(["__count__", values.name], descending=[True, False])
        counts = counts.filter(pl.col("__count__") >= min_count)
        self.values = counts[values.name].head(max_size) if max_size is not None else counts[values.name]
        self.index = pl.Series("index", np.arange(len(self.values)), dtype=pl.Int64)
        return self

    def __len__(self) -> int:
        return len(self.values)

    def encode(self, values: pl.Series) -> Tensor:
        """Row of every value (nulls and unseen values -> ``len(self)``), long tensor."""
        rows = values.replace_strict(self.values, self.index, default=len(self), return_dtype=pl.Int64)
        return torch.from_numpy(rows.to_numpy(writable=True))


class _Feature:
    """Shared parts of the three field kinds: name, source column, presence rule, dtype checks."""

    kind: Literal["single", "bag", "dense"] = "single"

    def __init__(self, name: str, column: str | None, required: bool) -> None:
        if not name or not isinstance(name, str):
            raise ConfigError(f"feature name must be a non-empty string, got {name!r}", where=type(self).__name__,
                              fix="name every feature")
        self.name, self.column, self.required = name, column or name, required

    def _source(self, frame: pl.DataFrame, allowed: tuple[str, ...], where: str) -> pl.Series:
        values = _normalize(frame[self.column])
        kind = _kind(values.dtype)
        if kind not in allowed:
            raise DataError(
                f"column {self.column!r} has dtype {values.dtype}, which a {type(self).__name__} cannot read",
                where=f"{where}, feature {self.name!r}",
                fix=f"pass a column of kind {' or '.join(allowed)}, or declare the feature with another type",
            )
        if hasattr(self, "dtype_") and values.dtype != self.dtype_:
            raise DataError(
                f"column {self.column!r} is {values.dtype} but was {self.dtype_} when the pipeline was fit",
                where=f"{where}, feature {self.name!r}",
                fix=f"cast the column to {self.dtype_} before transform",
            )
        return values


class CategoricalFeature(_Feature):
    """One categorical value per row; ``prefix_length`` keeps the first characters of strings (zip prefix).

    >>> f = CategoricalFeature("zip", prefix_length=1).fit(pl.DataFrame({"zip": ["12345", "19", "98765"]}))
    >>> f.encode(pl.DataFrame({"zip": ["1000", "55555", None]})).tolist(), f.num_embeddings
    ([0, 2, 2], 2)
    """

    def __init__(self, name: str, column: str | None = None, min_count: int = 1, max_size: int | None = None,
                 prefix_length: int | None = None, required: bool = True) -> None:
        super().__init__(name, column, required)
        if min_count < 1 or (max_size is not None and max_size < 1) or (prefix_length is not None and prefix_length < 1):
            raise ConfigError(f"need min_count >= 1, max_size >= 1 or None, prefix_length >= 1 or None; got "
                              f"{min_count}, {max_size}, {prefix_length}", where=f"CategoricalFeature({name!r})")
        self.min_count, self.max_size, self.prefix_length = min_count, max_size, prefix_length

    def _values(self, frame: pl.DataFrame, where: str) -> pl.Series:
        values = self._source(frame, ("int", "str", "bool"), where)
        if self.prefix_length is not None:
            values = values.cast(pl.String).str.slice(0, self.prefix_length)
        return values

    def fit(self, frame: pl.DataFrame) -> CategoricalFeature:
        values = self._values(frame, "CategoricalFeature.fit")
        self.dtype_ = _normalize(frame[self.column]).dtype
        self.vocabulary_ = _Vocabulary().fit(values, self.min_count, self.max_size)
        return self

    @property
    def num_embeddings(self) -> int:
        return len(self.vocabulary_)

    def encode(self, frame: pl.DataFrame) -> Tensor:
        """``(n,)`` long rows; unseen or missing values -> ``num_embeddings`` (the OOV row)."""
        return self.vocabulary_.encode(self._values(frame, "CategoricalFeature.transform"))


class MultiCategoricalFeature(_Feature):
    """A list of categorical values per row (list column, or strings split on ``separator``), pooled by the model.

    >>> f = MultiCategoricalFeature("genres").fit(pl.DataFrame({"genres": [["a", "b"], ["b"], []]}))
    >>> values, lengths = f.encode(pl.DataFrame({"genres": [["b", "z"], [], None]}))
    >>> values.tolist(), lengths.tolist(), f.num_embeddings
    ([0, 2], [2, 0, 0], 2)
    """

    kind = "bag"

    def __init__(self, name: str, column: str | None = None, min_count: int = 1, max_size: int | None = None,
                 separator: str | None = None, pooling: Literal["mean", "sum"] = "mean", required: bool = True) -> None:
        super().__init__(name, column, required)
        if pooling not in ("mean", "sum") or min_count < 1:
            raise ConfigError(f"need pooling 'mean' or 'sum' and min_count >= 1, got {pooling!r}, {min_count}",
                              where=f"MultiCategoricalFeature({name!r})")
        self.min_count, self.max_size, self.separator, self.pooling = min_count, max_size, separator, pooling

    def _lists(self, frame: pl.DataFrame, where: str) -> pl.Series:
        values = _normalize(frame[self.column])
        if _kind(values.dtype) == "str" and self.separator is not None:
            values = values.str.split(self.separator)
        if _kind(values.dtype) != "list" or _kind(values.dtype.inner) not in ("int", "str"):
            raise DataError(
                f"column {self.column!r} has dtype {values.dtype}, not a list of strings or integers",
                where=f"{where}, feature {self.name!r}",
                fix="pass a list column, or set separator= to split strings such as 'Action|Comedy'",
            )
        inner = pl.List(pl.String if _kind(values.dtype.inner) == "str" else pl.Int64)
        values = values.cast(inner).list.drop_nulls()
        if hasattr(self, "dtype_") and values.dtype != self.dtype_:
            raise DataError(f"column {self.column!r} is {values.dtype} but was {self.dtype_} at fit",
                            where=f"{where}, feature {self.name!r}", fix=f"cast it to {self.dtype_}")
        return values

    def fit(self, frame: pl.DataFrame) -> MultiCategoricalFeature:
        lists = self._lists(frame, "MultiCategoricalFeature.fit")
        self.dtype_ = lists.dtype
        self.vocabulary_ = _Vocabulary().fit(lists.explode().drop_nulls().alias(self.name), self.min_count, self.max_size)
        return self

    @property
    def num_embeddings(self) -> int:
        return len(self.vocabulary_)

    def encode(self, frame: pl.DataFrame) -> tuple[Tensor, Tensor]:
        """Flat rows ``(nnz,)`` and bag lengths ``(n,)``; missing lists are empty bags, unseen values the OOV row."""
        lists = self._lists(frame, "MultiCategoricalFeature.transform")
        lengths = torch.from_numpy(lists.list.len().fill_null(0).cast(pl.Int64).to_numpy(writable=True))
        flat = lists.explode().drop_nulls().alias(self.name)
        return self.vocabulary_.encode(flat), lengths


class NumericFeature(_Feature):
    """A number per row: ``mode="bucketize"`` (a categorical of ``num_buckets`` train quantiles, or the given
    ``boundaries``; missing -> OOV bucket) or ``mode="dense"`` (standardized with train mean/std; missing -> 0).

    >>> f = NumericFeature("age", boundaries=[18, 30]).fit(pl.DataFrame({"age": [10, 20, 40]}))
    >>> f.encode(pl.DataFrame({"age": [17, 18, 99, None]})).tolist(), f.num_embeddings
    ([0, 1, 2, 3], 3)
    """

    def __init__(self, name: str, column: str | None = None, mode: Literal["bucketize", "dense"] = "bucketize",
                 num_buckets: int = 10, boundaries: Sequence[float] | None = None, required: bool = True) -> None:
        super().__init__(name, column, required)
        if mode not in ("bucketize", "dense") or num_buckets < 2:
            raise ConfigError(f"need mode 'bucketize' or 'dense' and num_buckets >= 2, got {mode!r}, {num_buckets}",
                              where=f"NumericFeature({name!r})")
        self.kind = "single" if mode == "bucketize" else "dense"
        self.mode, self.num_buckets = mode, num_buckets
        self.boundaries = None if boundaries is None else [float(b) for b in boundaries]

    def _numbers(self, frame: pl.DataFrame, where: str) -> np.ndarray:
        values = self._source(frame, ("int", "float", "bool"), where)
        return values.cast(pl.Float64).fill_nan(None).to_numpy()  # nulls -> NaN

    def fit(self, frame: pl.DataFrame) -> NumericFeature:
        x = self._numbers(frame, "NumericFeature.fit")
        self.dtype_ = _normalize(frame[self.column]).dtype
        finite = x[~np.isnan(x)]
        if finite.size == 0:
            raise DataError(f"column {self.column!r} has no non-missing values to fit on",
                            where=f"NumericFeature.fit, feature {self.name!r}", fix="drop the feature or fill the column")
        if self.mode == "dense":
            self.mean_, self.std_ = float(finite.mean()), float(finite.std()) or 1.0
        elif self.boundaries is not None:
            self.boundaries_ = np.asarray(sorted(self.boundaries))
        else:
            self.boundaries_ = np.unique(np.quantile(finite, np.linspace(0, 1, self.num_buckets + 1)[1:-1]))
        return self

    @property
    def num_embeddings(self) -> int:
        return len(self.boundaries_) + 1

    def encode(self, frame: pl.DataFrame) -> Tensor:
        """Bucket rows ``(n,)`` long (missing -> ``num_embeddings``), or standardized values ``(n,)`` float32."""
        x = self._numbers(frame, "NumericFeature.transform")
        missing = np.isnan(x)
        if self.mode == "dense":
            return torch.from_numpy(np.where(missing, 0.0, (x - self.mean_) / self.std_).astype(np.float32))
        rows = np.searchsorted(self.boundaries_, x, side="right")
        return torch.from_numpy(np.where(missing, self.num_embeddings, rows).astype(np.int64))


@dataclass
class EncodedFeatures:
    """Encoded rows: single-valued ids ``(n, F_single)``, bags key-major (``bag_values``, ``bag_lengths`` ``(F_bag, n)``)
    and dense ``(n, F_dense)``; ``batch()`` gives the dict models read."""

    ids: Tensor
    bag_values: Tensor
    bag_lengths: Tensor
    dense: Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]

    def batch(self) -> dict[str, Tensor]:
        """``{"ids", "bag_values", "bag_offsets", "dense"}`` for ``model.predict`` (all rows as one batch)."""
        offsets = torch.zeros(self.bag_lengths.numel() + 1, dtype=torch.long)
        torch.cumsum(self.bag_lengths.flatten(), 0, out=offsets[1:])
        return {"ids": self.ids, "bag_values": self.bag_values, "bag_offsets": offsets, "dense": self.dense}


class FeaturePipeline:
    """Declared features, fit on the training frame only; ``transform`` encodes any frame the same way.

    Features with ``required=False`` whose column is absent at fit are skipped (one config for several
    datasets); a required feature's missing column, a wrong dtype, or an empty frame raise a DataError.

    >>> train = pl.DataFrame({"user": [1, 1, 2], "genres": [["a"], ["a", "b"], []], "age": [20, 30, 40]})
    >>> pipe = FeaturePipeline([CategoricalFeature("user"), MultiCategoricalFeature("genres"),
    ...                         NumericFeature("age", mode="dense")]).fit(train)
    >>> enc = pipe.transform(pl.DataFrame({"user": [2, 3], "genres": [["b", "c"], ["a"]], "age": [30, None]}))
    >>> enc.ids.tolist(), enc.bag_values.tolist(), enc.bag_lengths.tolist(), enc.dense.shape
    ([[1], [2]], [1, 2, 0], [[2, 1]], torch.Size([2, 1]))
    >>> [(f.name, f.num_embeddings, f.pooling) for f in pipe.embedding_fields(8)]
    [('user', 2, 'none'), ('genres', 2, 'mean')]
    """

    def __init__(self, features: Sequence[_Feature]) -> None:
        features = list(features)
        if not features:
            raise ConfigError("no features declared", where="FeaturePipeline", fix="declare at least one feature")
        names = [f.name for f in features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"duplicate feature names {duplicates}", where="FeaturePipeline", fix="name features uniquely")
        self.features = features

    @property
    def fitted(self) -> bool:
        return hasattr(self, "features_")

    def fit(self, frame: Any) -> FeaturePipeline:
        frame = self._check(frame, "FeaturePipeline.fit", fitting=True)
        active = [f for f in self.features if f.column in frame.columns]
        skipped = [f.name for f in self.features if f.column not in frame.columns]
        if skipped:
            log.info("FeaturePipeline: columns absent, optional features skipped: %s", skipped)
        if not active:
            raise DataError(f"none of the declared columns {[f.column for f in self.features]} is in the frame",
                            where=f"FeaturePipeline.fit; columns present: {frame.columns}", fix="declare features for these columns")
        self.features_ = [f.fit(frame) for f in active]
        return self

    def transform(self, frame: Any) -> EncodedFeatures:
        if not self.fitted:
            raise ConfigError("the pipeline is not fitted", where="FeaturePipeline.transform", fix="call fit(train_frame) first")
        frame = self._check(frame, "FeaturePipeline.transform", fitting=False)
        n = frame.height
        single = [f.encode(frame) for f in self.features_ if f.kind == "single"]
        bags = [f.encode(frame) for f in self.features_ if f.kind == "bag"]
        dense = [f.encode(frame) for f in self.features_ if f.kind == "dense"]
        return EncodedFeatures(
            ids=torch.stack(single, 1) if single else torch.zeros(n, 0, dtype=torch.long),  # (n, F_single)
            bag_values=torch.cat([v for v, _ in bags]) if bags else torch.zeros(0, dtype=torch.long),  # (nnz,)
            bag_lengths=torch.stack([length for _, length in bags]) if bags else torch.zeros(0, n, dtype=torch.long),  # (F_bag, n)
            dense=torch.stack(dense, 1) if dense else torch.zeros(n, 0),  # (n, F_dense)
        )

    def fit_transform(self, frame: Any) -> EncodedFeatures:
        return self.fit(frame).transform(frame)

    def embedding_fields(self, embedding_dim: int) -> list[EmbeddingField]:
        """One ``EmbeddingField`` (with an OOV row) per categorical feature: single-valued first, then bags."""
        self._fitted_or_raise()
        ordered = [f for f in self.features_ if f.kind == "single"] + [f for f in self.features_ if f.kind == "bag"]
        return [
            EmbeddingField(f.name, num_embeddings=max(f.num_embeddings, 1), embedding_dim=embedding_dim,
                           pooling=getattr(f, "pooling", "none"), oov_row=True)
            for f in ordered
        ]

    @property
    def num_dense(self) -> int:
        return sum(f.kind == "dense" for f in self._fitted_or_raise())

    @property
    def feature_names(self) -> list[str]:
        """Names of the fitted features: single-valued, bags, dense (the order of the encoded tensors)."""
        return [f.name for kind in ("single", "bag", "dense") for f in self._fitted_or_raise() if f.kind == kind]

    def _fitted_or_raise(self) -> list[_Feature]:
        if not self.fitted:
            raise ConfigError("the pipeline is not fitted", where="FeaturePipeline", fix="call fit(train_frame) first")
        return self.features_

    def _check(self, frame: Any, where: str, fitting: bool) -> pl.DataFrame:
        frame = as_polars(frame, where)
        if frame.height == 0:
            raise DataError("the frame has no rows", where=where, fix="pass a non-empty frame")
        declared = self.features if fitting else self.features_
        missing = [f.column for f in declared if f.column not in frame.columns and (f.required or not fitting)]
        if missing:
            raise DataError(f"missing column(s) {missing}", where=f"{where}; columns present: {frame.columns}",
                            fix="add the columns, rename them, or set column= on the feature")
        return frame
