"""Build Interactions from any table of raw (user, item[, rating][, timestamp]) rows."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.data.interactions import Interactions
from recsys.data.vocabulary import Vocabulary
from recsys.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

_LUT_SLACK = 1 << 22  # integer ids spanning at most 4 * rows + this many values use a lookup table
_SHOWN = 5  # bad values and rows named in an error


def is_pandas_frame(value: Any) -> bool:
    """Whether ``value`` is a pandas DataFrame, without importing pandas (none exists before it is imported).

    >>> is_pandas_frame(pl.DataFrame({"a": [1]}))
    False
    """
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def remap(ids: pl.Series) -> tuple[np.ndarray, Vocabulary]:
    """Contiguous int64 indices of ``ids`` in sorted-unique order, and their vocabulary.

    Integer ids in a compact range go through a dense lookup table (O(n), no sort, no hash; the
    gather runs on polars' streaming engine, one morsel per core); anything else through a sorted
    unique + join.
    """
    if ids.dtype.is_integer() and len(ids):
        wide = ids.dtype == pl.UInt64  # other integer ids are offset as int64, which cannot overflow
        values = ids.to_numpy() if wide else ids.to_numpy().astype(np.int64, copy=False)
        low, high = int(values.min()), int(values.max())
        if high - low <= 4 * len(values) + _LUT_SLACK:
            present = np.zeros(high - low + 1, dtype=bool)
            present[values - values.dtype.type(low)] = True
            table = pl.Series(np.cumsum(present, dtype=np.int64) - 1)
            uniques = pl.Series("id", np.flatnonzero(present).astype(values.dtype) + values.dtype.type(low)).cast(ids.dtype)
            gather = pl.lit(table).gather((pl.col("id") if wide else pl.col("id").cast(pl.Int64)) - low)
            index = ids.to_frame("id").lazy().select(gather).collect(engine="streaming")
            return index.to_series().to_numpy(), Vocabulary(uniques)
    vocab = Vocabulary.from_values(ids)
    lookup = vocab.ids.to_frame("id").with_row_index("index")
    index = ids.alias("id").to_frame().join(lookup, on="id", how="left", maintain_order="left")
    return index["index"].cast(pl.Int64).to_numpy(), vocab


def attach_features(features: pl.DataFrame | None, vocab: Vocabulary, key: str) -> pl.DataFrame | None:
    """Features keyed by original id (column ``key``) re-keyed by index; ids outside ``vocab`` dropped."""
    if features is None:
        return None
    lookup = vocab.ids.to_frame(key).with_row_index("index").with_columns(pl.col("index").cast(pl.Int64))
    joined = features.with_columns(pl.col(key).cast(vocab.ids.dtype, strict=False)).join(lookup, on=key, how="inner")
    return joined.drop(key).rename({"index": key}).select(key, pl.exclude(key)).sort(key)


def _describe(raw: pl.Series, mask: pl.Series, what: str) -> tuple[str, list[int]]:
    """"3 NaN value(s), e.g. [nan]" and the first 5 (0-based data) rows where ``mask`` holds."""
    rows = mask.arg_true()
    examples = raw.gather(rows.head(_SHOWN)).to_list()
    return f"{len(rows)} {what} value(s), e.g. {examples}", rows.head(_SHOWN).to_list()


def _numeric(frame: pl.DataFrame, column: str, dtype: pl.DataType, where: str) -> pl.Series:
    """``frame[column]`` cast to ``dtype``; one DataError (naming the first bad rows) for missing,
    non-numeric, NaN or infinite values: a non-finite rating would only surface later as a NaN loss."""
    raw = frame[column]
    if raw.dtype.is_numeric() and not raw.null_count():  # fast path: one pass when all is well
        values = raw.cast(dtype, strict=False)
        if not values.null_count() and (not values.dtype.is_float() or values.is_finite().all()):
            return values
    if raw.dtype.is_temporal():
        values = raw.dt.epoch("s") if raw.dtype != pl.Duration else raw.dt.total_seconds()
    else:
        values = raw.cast(dtype, strict=False)
    nan = infinite = pl.Series([False] * len(raw))
    if raw.dtype.is_float() or raw.dtype == pl.String:  # inf/NaN as floats, or as text ("inf", "nan")
        as_float = raw.cast(pl.Float64, strict=False)
        nan, infinite = as_float.is_nan().fill_null(False), as_float.is_infinite().fill_null(False)
    masks = [(values.is_null() & raw.is_not_null() & ~nan & ~infinite, "non-numeric"), (raw.is_null(), "missing"),
             (nan, "NaN"), (infinite, "infinite")]
    if values.dtype.is_float():  # finite in the file but too large for float32
        masks.append((values.is_infinite().fill_null(False) & ~infinite, f"too large for {dtype}"))
    problems, rows = [], set()
    for mask, what in masks:
        if mask.any():
            text, first = _describe(raw, mask, what)
            problems.append(text)
            rows.update(first)
    if problems:
        raise DataError(
            f"column {column!r} has " + " and ".join(problems),
            where=f"{where}, column {column!r}, first bad rows (0-based, header not counted) {sorted(rows)[:_SHOWN]}",
            fix=f"drop or fix those rows so that every {column!r} is a finite number",
        )
    return values.cast(dtype)


def build(
    frame: pl.DataFrame,
    *,
    name: str,
    where: str,
    user_features: pl.DataFrame | None = None,
    item_features: pl.DataFrame | None = None,
) -> Interactions:
    """Interactions from raw rows with columns user, item and optionally rating, timestamp.

    ``where`` names the source in error messages. Features are keyed by original ids in
    columns ``user`` / ``item``.
    """
    if frame.height == 0:
        raise DataError("no interactions", where=where, fix="check that the file has data rows")
    for column in ("user", "item"):
        if frame[column].null_count():
            raise DataError(
                f"column {column!r} has {frame[column].null_count()} missing id(s)",
                where=f"{where}, column {column!r}",
                fix="drop rows without a user or item id",
            )
    user_index, users = remap(frame["user"])
    item_index, items = remap(frame["item"])
    columns = [pl.Series("user", user_index), pl.Series("item", item_index)]
    if "rating" in frame.columns:
        columns.append(_numeric(frame, "rating", pl.Float32, where).alias("rating"))
    if "timestamp" in frame.columns:
        columns.append(_numeric(frame, "timestamp", pl.Int64, where).alias("timestamp"))
    return Interactions(
        pl.DataFrame(columns),
        users,
        items,
        user_features=attach_features(user_features, users, "user"),
        item_features=attach_features(item_features, items, "item"),
        name=name,
    )


def _scan(path: Path, separator: str | None = None) -> pl.LazyFrame:
    """A lazy CSV/TSV/Parquet scan (``separator``: the CSV's, default ',' or tab for .tsv); a DataError if the
    file is absent or of another type."""
    if not path.is_file():
        raise DataError(f"file not found: {path}", where=str(path), fix="check the path")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pl.scan_parquet(path)
    if suffix in (".csv", ".tsv"):
        separator = separator or ("\t" if suffix == ".tsv" else ",")
        return pl.scan_csv(path, separator=separator, infer_schema_length=10_000)
    raise DataError(
        f"unsupported file type {suffix!r}",
        where=str(path),
        fix="pass a .csv, .tsv or .parquet file (or a pandas/polars DataFrame)",
    )


def _columns_of(path: Path, separator: str | None = None) -> list[str]:
    """Column names of a CSV/Parquet file, without reading its rows."""
    try:
        return _scan(path, separator).collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as error:
        raise DataError(f"cannot read {path.name}: {error}", where=str(path), fix="check that the file is a valid table") from error


def read_table(path: Path, columns: list[str] | None = None, separator: str | None = None) -> pl.DataFrame:
    """A CSV or Parquet file, projected to ``columns``; one DataError if absent, unreadable or
    lacking a column."""
    path = Path(path)
    if columns is not None:
        _require(_columns_of(path, separator), columns, str(path))
    try:
        lazy = _scan(path, separator)
        return (lazy.select(columns) if columns is not None else lazy).collect(engine="streaming")  # faster, parallel decode
    except (pl.exceptions.PolarsError, OSError) as error:
        raise DataError(f"cannot read {path.name}: {error}", where=str(path), fix="check that the file is a valid table") from error


def _require(present: list[str], needed: list[str], where: str) -> None:
    missing = [c for c in needed if c not in present]
    if missing:
        raise DataError(
            f"missing column(s) {missing}",
            where=f"{where}; columns present: {present}",
            fix="rename the columns or pass user_col=/item_col=/rating_col=/time_col= "
            "(None for an absent optional column; on the command line dataset.user_col=..., null for none)",
        )


def from_frame(
    frame: pd.DataFrame | pl.DataFrame | str | Path,
    *,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str | None = "rating",
    time_col: str | None = "timestamp",
    name: str = "custom",
    separator: str | None = None,
) -> Interactions:
    """Interactions from a pandas/polars DataFrame or a CSV/Parquet path.

    Columns ``rating_col``/``time_col`` are optional: None skips them, and the default names
    ("rating", "timestamp") are used only when present; other names passed must exist.
    ``separator`` is a CSV file's (default ',' for .csv, tab for .tsv).

    >>> data = from_frame(pl.DataFrame({"user": ["b", "a"], "item": [5, 3], "rating": [4.0, 3.5],
    ...                                 "timestamp": [10, 20]}))
    >>> data.users.ids.to_list(), data.frame["item"].to_list()
    (['a', 'b'], [0, 1])
    """
    renames = {user_col: "user", item_col: "item"}
    optional = {rating_col: "rating", time_col: "timestamp"}
    if isinstance(frame, (str, Path)):
        where = str(frame)
        present = _columns_of(Path(frame), separator)
    elif is_pandas_frame(frame):
        where, present = "pandas DataFrame", [str(c) for c in frame.columns]
    elif isinstance(frame, pl.DataFrame):
        where, present = "polars DataFrame", frame.columns
    else:
        raise DataError(
            f"cannot build interactions from {type(frame).__name__}",
            where="from_frame(frame)",
            fix="pass a pandas or polars DataFrame, or a path to a CSV/Parquet file",
        )
    for column, new in optional.items():
        # the default names are used when present; a name passed explicitly must exist
        if column is not None and (column in present or column != new):
            renames[column] = new
    _require(present, list(renames), where)
    if isinstance(frame, (str, Path)):
        table = read_table(Path(frame), list(renames), separator)
    elif is_pandas_frame(frame):
        table = pl.from_pandas(frame[list(renames)])
    else:
        table = frame
    return build(table.select(pl.col(old).alias(new) for old, new in renames.items()), name=name, where=where)
