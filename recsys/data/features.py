"""Feature pipeline for CTR models: declared fields -> vocabularies fit on train -> id / bag / dense tensors.

Three kinds of field, as in DeepCTR's feature columns and FuxiCTR's feature maps:

- :class:`CategoricalFeature`: one value per row (user, item, gender, zip prefix), vocabulary with
  ``min_count`` / ``max_size``; unseen, rare and missing values map to one OOV row.
- :class:`MultiCategoricalFeature`: a list of values per row (genres, tags), pooled by the model.
- :class:`NumericFeature`: bucketized into a categorical field (quantile or given boundaries; missing
  values to the OOV bucket) or kept dense (standardized with train mean and std; missing -> 0).

and one derived kind, :class:`SequenceFeature`: a row's behaviour history (the user's earlier items), encoded
with the vocabulary of its ``source`` field and read from that field's table (DIN); it has no table of its own.

:class:`FeaturePipeline` fits on the training split only and transforms any frame (polars or pandas)
into :class:`EncodedFeatures`: the tensors models read, and the :class:`FieldSpec` list that sizes their
tables (the embeddings package's ``embedding_fields`` turns it into tables). Every value a vocabulary has not seen
maps to ``num_embeddings`` (the OOV row of a ``FieldSpec(oov_row=True)``).

One fitted pipeline serves the model, the training batches and the evaluator: the caller fits it once
(``FeaturePipeline.fit(split.train)``) and hands the same object to all three; it also holds the click
``label_threshold``. ``to_dict`` / ``from_dict`` (and ``save`` / ``load``, JSON) rebuild a fitted pipeline
exactly for a saved run.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch
from torch import Tensor

from recsys.data.ctr_files import CTRTable
from recsys.data.fields import EncodedFeatures, FieldSpec, ctr_frame, ctr_labels
from recsys.data.history import previous_items
from recsys.data.interactions import Interactions
from recsys.data.vocabulary import Vocabulary
from recsys.errors import ConfigError, DataError
from recsys.runtime import atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "CategoricalFeature",
    "FeaturePipeline",
    "MultiCategoricalFeature",
    "NumericFeature",
    "SequenceFeature",
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


_DTYPES = {str(d): d for d in (pl.Int64, pl.String, pl.Boolean, pl.Float32, pl.Float64, pl.List(pl.String), pl.List(pl.Int64))}


def _dtype(name: str) -> pl.DataType:
    """The polars dtype a saved pipeline names (only the normalized dtypes a feature can hold)."""
    if name not in _DTYPES:
        raise DataError(f"unknown column dtype {name!r} in a saved feature pipeline", where="FeaturePipeline.from_dict",
                        fix=f"saved dtypes are one of {sorted(_DTYPES)}")
    return _DTYPES[name]


def _normalize(values: pl.Series) -> pl.Series:
    """Categoricals and enums to strings, every integer width to Int64, so fit and transform compare equal."""
    kind = _kind(values.dtype)
    if kind == "str":
        return values.cast(pl.String)
    if kind == "int":
        return values.cast(pl.Int64)
    return values


def _fit_vocabulary(values: pl.Series, min_count: int, max_size: int | None) -> Vocabulary:
    """Kept values of one field by descending count (ties by value); index ``K = len`` is the OOV row."""
    if values.null_count() == len(values):
        raise DataError(f"column {values.name!r} has no non-missing values to fit on", where="FeaturePipeline.fit",
                        fix="drop the feature or fill the column")
    return Vocabulary.from_counts(values, min_count=min_count, max_size=max_size)


def _encode(vocabulary: Vocabulary, values: pl.Series) -> Tensor:
    """Row of every value (nulls and unseen values -> ``len(vocabulary)``), long tensor."""
    return vocabulary.to_index(values, unknown="oov")


def _vocabulary_state(vocabulary: Vocabulary) -> dict[str, Any]:
    """The saved form of a feature vocabulary (``dtype``, ``values``), unchanged since format 1."""
    return {"dtype": str(vocabulary.ids.dtype), "values": vocabulary.ids.to_list()}


class _Feature:
    """Shared parts of the three field kinds: name, source column, presence rule, dtype checks."""

    kind: Literal["single", "bag", "sequence", "dense"] = "single"

    def __init__(self, name: str, column: str | None, required: bool) -> None:
        if not name or not isinstance(name, str):
            raise ConfigError(f"feature name must be a non-empty string, got {name!r}", where=type(self).__name__,
                              fix="name every feature")
        self.name, self.column, self.required = name, column or name, required

    def params(self) -> dict[str, Any]:
        """Constructor arguments (JSON values): ``type(self)(**params)`` declares the same feature."""
        return {n: getattr(self, n) for n in inspect.signature(type(self).__init__).parameters if n != "self"}

    def state(self) -> dict[str, Any]:
        """Fitted state as JSON values (vocabulary, boundaries, mean and std); ``load_state`` is the inverse."""
        return {"dtype": str(self.dtype_), "vocabulary": _vocabulary_state(self.vocabulary_)}

    def load_state(self, state: dict[str, Any]) -> _Feature:
        vocabulary = state["vocabulary"]
        _dtype(vocabulary["dtype"])  # only the dtypes a feature can hold
        self.dtype_, self.vocabulary_ = _dtype(state["dtype"]), Vocabulary.from_dict(vocabulary)
        return self

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
        self.vocabulary_ = _fit_vocabulary(values, self.min_count, self.max_size)
        return self

    @property
    def num_embeddings(self) -> int:
        return len(self.vocabulary_)

    def encode(self, frame: pl.DataFrame) -> Tensor:
        """``(n,)`` long rows; unseen or missing values -> ``num_embeddings`` (the OOV row)."""
        return _encode(self.vocabulary_, self._values(frame, "CategoricalFeature.transform"))


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
        self.vocabulary_ = _fit_vocabulary(lists.explode().drop_nulls().alias(self.name), self.min_count, self.max_size)
        return self

    @property
    def num_embeddings(self) -> int:
        return len(self.vocabulary_)

    def encode(self, frame: pl.DataFrame) -> tuple[Tensor, Tensor]:
        """Flat rows ``(nnz,)`` and bag lengths ``(n,)``; missing lists are empty bags, unseen values the OOV row."""
        lists = self._lists(frame, "MultiCategoricalFeature.transform")
        lengths = torch.from_numpy(lists.list.len().fill_null(0).cast(pl.Int64).to_numpy(writable=True))
        flat = lists.explode().drop_nulls().alias(self.name)
        return _encode(self.vocabulary_, flat), lengths


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

    def state(self) -> dict[str, Any]:
        if self.mode == "dense":
            return {"dtype": str(self.dtype_), "mean": self.mean_, "std": self.std_}
        return {"dtype": str(self.dtype_), "boundaries": self.boundaries_.tolist()}

    def load_state(self, state: dict[str, Any]) -> NumericFeature:
        self.dtype_ = _dtype(state["dtype"])
        if self.mode == "dense":
            self.mean_, self.std_ = float(state["mean"]), float(state["std"])
        else:
            self.boundaries_ = np.asarray(state["boundaries"], dtype=np.float64)
        return self


class SequenceFeature(_Feature):
    """A row's behaviour history: the ``max_len`` most recent ``source`` values (items) its ``user`` had strictly
    before the row's ``timestamp`` (never the row's own or later ones), oldest first, as one bag per row.

    Encoded with the vocabulary of the ``source`` feature (bound by the pipeline), so a model reads the rows of that
    field's table (DIN's attention over the behaviour items, sharing the candidate item's embeddings): it declares no
    table of its own. Fitting keeps the training events (user, time, item row) as context, saved with the pipeline:
    a later split's rows see the user's training items before them too. A frame without the ``timestamp`` column
    (ranking "now") gets each user's latest items.

    >>> train = pl.DataFrame({"user": [1, 1, 1], "item": [5, 6, 7], "timestamp": [1, 2, 3]})
    >>> pipe = FeaturePipeline([CategoricalFeature("item"), SequenceFeature("history", source="item", max_len=2)]).fit(train)
    >>> enc = pipe.transform(pl.DataFrame({"user": [1, 1], "item": [8, 5], "timestamp": [4, 1]}))
    >>> enc.bag_values.tolist(), enc.bag_lengths.tolist()  # rows of the item vocabulary (5, 6, 7 -> 0, 1, 2)
    ([1, 2], [[2, 0]])
    """

    kind = "sequence"

    def __init__(self, name: str = "history", source: str = "item", max_len: int = 50, user: str = "user",
                 timestamp: str = "timestamp", required: bool = True) -> None:
        super().__init__(name, user, required)  # column = the user: a history is a user-side feature when ranking
        if max_len < 1 or not source:
            raise ConfigError(f"need max_len >= 1 and a source feature, got {max_len}, {source!r}",
                              where=f"SequenceFeature({name!r})", fix="set max_len to a positive length")
        self.source, self.max_len, self.user, self.timestamp = source, max_len, user, timestamp

    def bind(self, source: _Feature) -> SequenceFeature:
        """Use the fitted ``source`` feature's vocabulary (the pipeline calls this before ``fit`` and after loading)."""
        if not isinstance(source, CategoricalFeature):
            raise ConfigError(f"the source of sequence feature {self.name!r} must be a CategoricalFeature, got "
                              f"{type(source).__name__} {source.name!r}", where=f"SequenceFeature({self.name!r})",
                              fix="point source= at a single-valued categorical feature (the item)")
        self.source_ = source
        return self

    @property
    def vocabulary_(self) -> Vocabulary:
        return self.source_.vocabulary_

    @property
    def num_embeddings(self) -> int:
        return self.source_.num_embeddings

    def _events(self, frame: pl.DataFrame, where: str, fitting: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Events ``(user, timestamp, row)`` of the frame's timed rows and the queries ``(user, timestamp)``."""
        if not hasattr(self, "source_"):
            raise ConfigError(f"sequence feature {self.name!r} has no source feature bound", where=where,
                              fix="use it inside a FeaturePipeline that also declares its source feature")
        users = self._source(frame, ("int", "str"), where) if not fitting else _normalize(frame[self.column])
        if fitting and _kind(users.dtype) not in ("int", "str"):
            raise DataError(f"user column {self.column!r} has dtype {users.dtype}", where=where, fix="pass int or str user ids")
        if self.timestamp in frame.columns:
            times = frame[self.timestamp]
            if not times.dtype.is_integer():
                raise DataError(f"column {self.timestamp!r} has dtype {times.dtype}, not integers", where=where,
                                fix="pass integer timestamps (e.g. seconds since the epoch)")
            times = times.cast(pl.Int64)
        elif fitting:
            raise DataError(f"sequence feature {self.name!r} needs the column {self.timestamp!r} to order each user's "
                            f"items; columns present: {frame.columns}", where=where,
                            fix="use interactions with timestamps, or set timestamp= to the time column")
        else:
            times = pl.Series(self.timestamp, [None] * frame.height, pl.Int64)
        rows = pl.Series("row", self.source_.encode(frame).numpy())
        queries = pl.DataFrame({"user": users, "timestamp": times})
        events = queries.with_columns(rows).filter(pl.col("timestamp").is_not_null())
        return events, queries

    def fit(self, frame: pl.DataFrame) -> SequenceFeature:
        events, _ = self._events(frame, "SequenceFeature.fit", fitting=True)
        self.dtype_ = events["user"].dtype
        self.context_ = events
        return self

    def encode(self, frame: pl.DataFrame) -> tuple[Tensor, Tensor]:
        """Flat item rows ``(nnz,)`` (the source vocabulary's rows) and history lengths ``(n,)``, each ``<= max_len``."""
        events, queries = self._events(frame, "SequenceFeature.transform", fitting=False)
        events = pl.concat([self.context_, events]).unique()  # the fit frame transformed again adds no events
        return previous_items(events, queries, self.max_len)

    def state(self) -> dict[str, Any]:
        return {"dtype": str(self.dtype_), "context": {c: self.context_[c].to_list() for c in self.context_.columns}}

    def load_state(self, state: dict[str, Any]) -> SequenceFeature:
        self.dtype_ = _dtype(state["dtype"])
        context = state["context"]
        self.context_ = pl.DataFrame({"user": pl.Series(context["user"], dtype=self.dtype_),
                                      "timestamp": pl.Series(context["timestamp"], dtype=pl.Int64),
                                      "row": pl.Series(context["row"], dtype=pl.Int64)})
        return self


class FeaturePipeline:
    """Declared features and the click ``label_threshold``, fit once on the training split; ``transform`` encodes
    any split or frame the same way. The model, the batches and the evaluator share one fitted pipeline.

    ``fit`` / ``transform`` take an :class:`Interactions` (its :func:`ctr_frame`: user, item and their feature
    columns) or a polars / pandas frame. Features with ``required=False`` whose column is absent at fit are
    skipped (one config for several datasets); a required feature's missing column, a wrong dtype, or an
    empty frame raise a DataError.

    >>> train = pl.DataFrame({"user": [1, 1, 2], "genres": [["a"], ["a", "b"], []], "age": [20, 30, 40]})
    >>> pipe = FeaturePipeline([CategoricalFeature("user"), MultiCategoricalFeature("genres"),
    ...                         NumericFeature("age", mode="dense")]).fit(train)
    >>> enc = pipe.transform(pl.DataFrame({"user": [2, 3], "genres": [["b", "c"], ["a"]], "age": [30, None]}))
    >>> enc.ids.tolist(), enc.bag_values.tolist(), enc.bag_lengths.tolist(), enc.dense.shape
    ([[1], [2]], [1, 2, 0], [[2, 1]], torch.Size([2, 1]))
    >>> [(f.name, f.num_embeddings, f.pooling) for f in pipe.field_specs()]
    [('user', 2, 'none'), ('genres', 2, 'mean')]
    >>> FeaturePipeline.from_dict(pipe.to_dict()).transform(pl.DataFrame({"user": [2], "genres": [["b"]], "age": [30]})).ids.tolist()
    [[1]]
    """

    format_version = 1

    def __init__(self, features: Sequence[_Feature], label_threshold: float = 4.0) -> None:
        features = list(features)
        if not features:
            raise ConfigError("no features declared", where="FeaturePipeline", fix="declare at least one feature")
        names = [f.name for f in features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"duplicate feature names {duplicates}", where="FeaturePipeline", fix="name features uniquely")
        self.features, self.label_threshold = features, float(label_threshold)

    @property
    def fitted(self) -> bool:
        return hasattr(self, "features_")

    def fit(self, train: Interactions | Any) -> FeaturePipeline:
        """Learn vocabularies, boundaries and standardization from the training split only; returns ``self``."""
        frame = self._check(train, "FeaturePipeline.fit", fitting=True)
        active = [f for f in self.features if f.column in frame.columns]
        skipped = [f.name for f in self.features if f.column not in frame.columns]
        if skipped:
            log.info("FeaturePipeline: columns absent, optional features skipped: %s", skipped)
        if not active:
            raise DataError(f"none of the declared columns {[f.column for f in self.features]} is in the frame",
                            where=f"FeaturePipeline.fit; columns present: {frame.columns}", fix="declare features for these columns")
        by_name = {f.name: f.fit(frame) for f in active if f.kind != "sequence"}
        for f in active:  # sequences last: they encode with their (fitted) source's vocabulary
            if f.kind == "sequence":
                if f.source not in by_name:
                    raise ConfigError(f"sequence feature {f.name!r} reads feature {f.source!r}, which is not declared "
                                      f"(or its column is absent)", where="FeaturePipeline.fit",
                                      fix=f"declare CategoricalFeature({f.source!r}) in the same pipeline")
                f.bind(by_name[f.source]).fit(frame)
        self.features_ = active
        return self

    def transform(self, data: Interactions | Any) -> EncodedFeatures:
        if not self.fitted:
            raise ConfigError("the pipeline is not fitted", where="FeaturePipeline.transform", fix="call fit(train) first")
        frame = self._check(data, "FeaturePipeline.transform", fitting=False)
        n = frame.height
        single = [f.encode(frame) for f in self.features_ if f.kind == "single"]
        # sequences ride after the bags (their own bags, no table): models that do not read them slice them off
        bags = [f.encode(frame) for kind in ("bag", "sequence") for f in self.features_ if f.kind == kind]
        dense = [f.encode(frame) for f in self.features_ if f.kind == "dense"]
        return EncodedFeatures(
            ids=torch.stack(single, 1) if single else torch.zeros(n, 0, dtype=torch.long),  # (n, F_single)
            bag_values=torch.cat([v for v, _ in bags]) if bags else torch.zeros(0, dtype=torch.long),  # (nnz,)
            bag_lengths=torch.stack([length for _, length in bags]) if bags else torch.zeros(0, n, dtype=torch.long),  # (F_bag, n)
            dense=torch.stack(dense, 1) if dense else torch.zeros(n, 0),  # (n, F_dense)
        )

    def fit_transform(self, train: Interactions | Any) -> EncodedFeatures:
        return self.fit(train).transform(train)

    def labels(self, data: Interactions | CTRTable) -> Tensor:
        """``(n,)`` float32 click labels ``rating >= label_threshold`` of a split (a CTR table's own 0/1 labels), in its row order."""
        return ctr_labels(data, self.label_threshold)

    def field_specs(self) -> list[FieldSpec]:
        """One :class:`FieldSpec` (with an OOV row) per categorical feature: single-valued first, then bags."""
        self._fitted_or_raise()
        ordered = [f for f in self.features_ if f.kind == "single"] + [f for f in self.features_ if f.kind == "bag"]
        return [FieldSpec(f.name, max(f.num_embeddings, 1), pooling=getattr(f, "pooling", "none"), oov_row=True) for f in ordered]

    @property
    def num_dense(self) -> int:
        return sum(f.kind == "dense" for f in self._fitted_or_raise())

    @property
    def sequence_features(self) -> list[SequenceFeature]:
        """The fitted sequence features, in the order their bags follow the multi-valued fields' bags."""
        return [f for f in self._fitted_or_raise() if f.kind == "sequence"]

    @property
    def feature_names(self) -> list[str]:
        """Names of the fitted features: single-valued, bags, sequences, dense (the order of the encoded tensors)."""
        return [f.name for kind in ("single", "bag", "sequence", "dense") for f in self._fitted_or_raise() if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        """JSON values: the declarations, the label threshold and (when fitted) every fitted feature's state."""
        fitted = [{"name": f.name, "state": f.state()} for f in self.features_] if self.fitted else None
        return {"format_version": self.format_version, "label_threshold": self.label_threshold,
                "features": [{"type": type(f).__name__, "params": f.params()} for f in self.features], "fitted": fitted}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> FeaturePipeline:
        """The pipeline ``to_dict`` described, fitted state included: it encodes every frame exactly as the original."""
        if state.get("format_version") != cls.format_version:
            raise DataError(f"feature pipeline format {state.get('format_version')!r}, this version reads {cls.format_version}",
                            where="FeaturePipeline.from_dict", fix="save the pipeline again with this version")
        unknown = sorted({d["type"] for d in state["features"]} - set(_FEATURE_TYPES))
        if unknown:
            raise DataError(f"unknown feature type(s) {unknown}", where="FeaturePipeline.from_dict",
                            fix=f"saved features are one of {sorted(_FEATURE_TYPES)}")
        pipe = cls([_FEATURE_TYPES[d["type"]](**d["params"]) for d in state["features"]], state["label_threshold"])
        if state.get("fitted") is not None:
            by_name = {f.name: f for f in pipe.features}
            pipe.features_ = [by_name[entry["name"]].load_state(entry["state"]) for entry in state["fitted"]]
            for f in pipe.sequence_features:
                f.bind(by_name[f.source])
        return pipe

    def save(self, path: str | Path) -> Path:
        """Write ``to_dict()`` as JSON (atomically); :meth:`load` reads it back."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> FeaturePipeline:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def _fitted_or_raise(self) -> list[_Feature]:
        if not self.fitted:
            raise ConfigError("the pipeline is not fitted", where="FeaturePipeline", fix="call fit(train) first")
        return self.features_

    def _check(self, data: Interactions | Any, where: str, fitting: bool) -> pl.DataFrame:
        frame = as_polars(ctr_frame(data) if isinstance(data, (Interactions, CTRTable)) else data, where)
        if frame.height == 0:
            raise DataError("the frame has no rows", where=where, fix="pass a non-empty frame")
        declared = self.features if fitting else self.features_
        missing = [f.column for f in declared if f.column not in frame.columns and (f.required or not fitting)]
        if missing:
            fix = ("declare the file's fields: features=fields (conf/features/fields.yaml)" if isinstance(data, CTRTable)
                   else "add the columns, rename them, or set column= on the feature")
            raise DataError(f"missing column(s) {missing}", where=f"{where}; columns present: {frame.columns}", fix=fix)
        return frame


_FEATURE_TYPES = {cls.__name__: cls for cls in (CategoricalFeature, MultiCategoricalFeature, NumericFeature, SequenceFeature)}
