"""CTR rows from libsvm / libFM files: one labelled row per impression, one column per field.

Two token forms, as the public CTR benchmarks ship them:

- ``libsvm``: ``label feature:value feature:value ...``, fields by position (every row has the same number of
  features; column ``j`` is field ``j``), e.g. the ``.libfm`` files of Frappe and MovieLens-tag from NFM/AFN;
- ``libfm``: ``label field:feature:value ...``, the field named in each token (fields may be absent from a row or
  hold several features).

Each field becomes one column of a :class:`CTRTable`, its kind read from the data: ``categorical`` (at most one
feature per row, value 1: the feature id, null when absent), ``multi`` (several features with value 1: a list of
ids), ``numeric`` (one feature id whose value is a number). :func:`field_features` declares the matching
:class:`~recsys.data.features.FeaturePipeline`, which the CTR models, their batches and the CTR evaluator read like
any other. The label is a click when it is ``> 0`` (``0/1`` and ``-1/+1`` files both work).

>>> import tempfile, os
>>> with tempfile.TemporaryDirectory() as d:
...     _ = open(os.path.join(d, "train.txt"), "w").write("1 0:3:1 1:7:1 1:8:1\\n0 0:4:1 1:7:1\\n")
...     table = load_ctr_files(os.path.join(d, "train.txt"), format="libfm", fields=["user", "tags"])
>>> table.fields, table.frame.rows()
({'user': 'categorical', 'tags': 'multi'}, [(1.0, 3, [7, 8]), (0.0, 4, [7])])
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch

from recsys.data.splits import Split
from recsys.errors import ConfigError, DataError

__all__ = ["KINDS", "CTRTable", "default_name", "field_features", "file_split", "load_ctr_files"]

KINDS = ("categorical", "multi", "numeric")
RESERVED = ("label", "part")  # frame columns that are not fields
PARTS = ("train", "valid", "test")
_SHOWN = 3  # bad lines named in an error
_FORMS = {"libsvm": "'label feature:value ...' (fields by position)", "libfm": "'label field:feature:value ...'"}
_TOKEN = {"libsvm": "feature:value", "libfm": "field:feature:value"}


class CTRTable:
    """Labelled CTR rows: ``frame`` holds ``label`` (Float32, 1 = click) and one column per field of ``fields``
    (``{name: kind}``), plus ``part`` (0 train, 1 valid, 2 test) when the rows came from separate files.

    It goes where an :class:`~recsys.data.Interactions` goes in a CTR run (``run_pipeline``, ``CTRBatches``,
    ``FeaturePipeline.fit``, ``CTREvaluator``): ``num_interactions`` counts rows, ``concat`` and ``with_frame``
    keep the fields. It has no user or item vocabulary (``num_users == num_items == 0``): such a run scores
    rows, it does not rank a catalogue. ``reader`` records how the files were read, so new files of the same
    dataset are read the same way (``recsys evaluate RUN --data FILE``).

    >>> table = CTRTable(pl.DataFrame({"label": [1.0, 0.0], "user": [3, None]}), {"user": "categorical"}, name="toy")
    >>> table, table.labels.tolist(), table.feature_frame().columns
    (CTRTable(name='toy', rows=2, fields=1), [1.0, 0.0], ['user'])
    """

    def __init__(self, frame: pl.DataFrame, fields: Mapping[str, str], *, name: str = "ctr",
                 reader: Mapping[str, Any] | None = None) -> None:
        fields = dict(fields)
        bad = {n: k for n, k in fields.items() if k not in KINDS or n in RESERVED}
        missing = [c for c in ("label", *fields) if c not in frame.columns]
        if bad or missing:
            raise DataError(f"CTR table with {'bad fields ' + str(bad) if bad else 'missing columns ' + str(missing)}",
                            where=f"CTRTable({name!r}); columns {frame.columns}",
                            fix=f"field kinds are {', '.join(KINDS)}; fields may not be named {' or '.join(RESERVED)}")
        self.frame, self.fields, self.name, self.reader = frame, fields, name, dict(reader or {})

    num_users = num_items = 0  # no vocabularies: CTR rows are scored, not ranked
    has_ratings = has_timestamps = False

    @property
    def num_interactions(self) -> int:
        return self.frame.height

    def __len__(self) -> int:
        return self.frame.height

    def __repr__(self) -> str:
        return f"CTRTable(name={self.name!r}, rows={self.num_interactions}, fields={len(self.fields)})"

    @property
    def has_parts(self) -> bool:
        """True when the rows came from separate train / valid / test files (column ``part``)."""
        return "part" in self.frame.columns

    @property
    def labels(self) -> torch.Tensor:
        """``(n,)`` float32 click labels in row order."""
        return torch.from_numpy(self.frame["label"].to_numpy(writable=True)).float()

    def feature_frame(self) -> pl.DataFrame:
        """The field columns (what a feature pipeline reads), in row order."""
        return self.frame.select(list(self.fields))

    def with_frame(self, frame: pl.DataFrame, *, assume_sorted: bool = False) -> CTRTable:
        """Same fields, name and reader, other rows (``assume_sorted`` is accepted for the splits; rows keep their order)."""
        return CTRTable(frame, self.fields, name=self.name, reader=self.reader)

    def concat(self, other: CTRTable) -> CTRTable:
        """The rows of two parts of one dataset (e.g. train + valid)."""
        if not isinstance(other, CTRTable) or other.fields != self.fields:
            raise DataError("cannot concatenate CTR rows with different fields", where=f"CTRTable.concat({self.name!r})",
                            fix="concatenate parts of the same dataset")
        return self.with_frame(pl.concat([self.frame, other.frame.select(self.frame.columns)], how="vertical_relaxed"))

    def part(self, name: str) -> CTRTable:
        """The rows of one file (``"train"``, ``"valid"`` or ``"test"``), without the ``part`` column."""
        return self.with_frame(self.frame.filter(pl.col("part") == PARTS.index(name)).drop("part"))


# --- reading -----------------------------------------------------------------------------------------
def _lines(path: Path) -> pl.DataFrame:
    """``line`` (1-based number in the file) and ``text`` of every data line (blank and ``#`` lines dropped)."""
    if not path.is_file():
        raise DataError(f"file not found: {path}", where="load_ctr_files", fix="pass the path of a libsvm/libFM file")
    if path.stat().st_size == 0:
        raise DataError("the file is empty", where=str(path), fix="each line is a label and its features")
    lines = pl.read_csv(path, has_header=False, new_columns=["text"], separator="\x1f", quote_char=None,
                        infer_schema=False).with_row_index("line", offset=1)
    text = pl.col("text").str.strip_chars()
    return lines.with_columns(text).filter(text.is_not_null() & (text != "") & ~text.str.starts_with("#"))


def _bad(rows: pl.DataFrame, mask: pl.Series | pl.Expr, path: Path, what: str, fix: str, column: str = "token") -> None:
    """One DataError naming the first lines where ``mask`` holds, if any."""
    bad = rows.filter(mask)
    if bad.height:
        examples = ", ".join(f"line {line}: {value!r}" for line, value in bad.select("line", column).head(_SHOWN).rows())
        raise DataError(f"{bad.height} {what}, e.g. {examples}", where=str(path), fix=fix)


def _tokens(path: Path, form: str) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """Rows (``row``, ``line``, ``label``, ``width``: its number of features) and tokens (``row``, ``line``, ``field``, ``feature``, ``value``, ``token``)
    of one file, in file order."""
    lines = _lines(path)
    if lines.height == 0:
        raise DataError("the file has no data lines", where=str(path), fix="each line is 'label feature:value ...'")
    text = pl.col("text")
    if lines.select(text.str.contains(r"\s\s|[^\S ]").any()).item():  # tabs or runs of spaces: one space each
        text = text.str.replace_all(r"\s+", " ")
    split = lines.select("line", text.str.split(" ").alias("words"))
    rows = split.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), "line",
                        pl.col("words").list.first().alias("token"), (pl.col("words").list.len().cast(pl.Int64) - 1).alias("width"))
    rows = rows.with_columns(pl.col("token").cast(pl.Float64, strict=False).alias("label"))
    _bad(rows, pl.col("label").is_null() | pl.col("label").is_nan(), path, "line(s) do not start with a numeric label",
         "each line is a label (0/1 or -1/+1) followed by its features")
    widths = rows["width"].to_numpy()
    tokens = split.select("line", pl.col("words").list.slice(1).alias("token")).explode("token").drop_nulls("token")
    tokens = tokens.with_columns(pl.Series("row", np.repeat(np.arange(len(widths)), widths)),
                                 (pl.col("token").str.count_matches(":", literal=True) + 1).alias("arity"))
    arity = tokens["arity"]
    if form == "auto":
        form = "libfm" if len(arity) and arity[0] == 3 else "libsvm"
    expected = 3 if form == "libfm" else 2
    if len(arity) and bool((arity == (5 - expected)).all()):
        other = "libsvm" if form == "libfm" else "libfm"
        raise DataError(f"the tokens are {_FORMS[other]}, not {form}'s {_FORMS[form]}", where=str(path),
                        fix=f"read the file as {other} (dataset={other}, or format={other!r})")
    _bad(tokens, pl.col("arity") != expected, path, f"token(s) that are not {_TOKEN[form]}", f"every {form} line is {_FORMS[form]}")
    names = ["field", "feature", "value"][3 - expected:]
    parts = tokens["token"].str.split_exact(":", expected - 1).struct.unnest()
    tokens = tokens.with_columns(parts[f"field_{i}"].cast(pl.Float64 if n == "value" else pl.Int64, strict=False).alias(n)
                                 for i, n in enumerate(names))
    _bad(tokens, pl.any_horizontal(pl.col(names).is_null()) | ~pl.col("value").is_finite(), path,
         "token(s) with a non-numeric field, feature id or value", "ids are integers and values numbers, e.g. 3:12:1")
    if form == "libsvm":  # fields by position: the token's place in its row
        starts = np.repeat(np.cumsum(widths) - widths, widths)
        tokens = tokens.with_columns(pl.Series("field", np.arange(len(starts)) - starts))
    return rows.select("row", "line", "label", "width"), tokens.select("row", "line", "field", "feature", "value", "token"), form


def _check_ranges(rows: pl.DataFrame, tokens: pl.DataFrame, path: Path, form: str, fields: Sequence[str] | None,
                  num_features: int | None) -> None:
    limit = f"[0, {num_features})" if num_features is not None else ">= 0"
    bad = (pl.col("feature") < 0) | ((pl.col("feature") >= num_features) if num_features is not None else pl.lit(False))
    _bad(tokens, bad, path, f"feature id(s) out of range {limit}",
         "fix those tokens" + (", or raise num_features" if num_features is not None else ""))
    if form == "libfm":
        top = len(fields) if fields is not None else None
        bad = (pl.col("field") < 0) | ((pl.col("field") >= top) if top is not None else pl.lit(False))
        _bad(tokens, bad, path, f"field id(s) out of range {f'[0, {top})' if top is not None else '>= 0'}",
             f"field ids index the {top} field names given ({list(fields)}): add names or fix the tokens" if top is not None
             else "field ids are integers >= 0")
        return
    width = len(fields) if fields is not None else int(rows["width"][0])
    _bad(rows.with_columns(pl.format("{} features", pl.col("width")).alias("token")), pl.col("width") != width, path,
         f"line(s) whose number of features is not {width}" + (" (the field names given)" if fields is not None else
                                                              " (that of the first line)"),
         "libsvm rows hold one feature per field, by position; a file whose rows miss or repeat fields needs field ids "
         "(libfm: field:feature:value)", column="token")


def _kinds(tokens: pl.DataFrame, names: list[str], path: str) -> dict[str, str]:
    """The kind of every field, read from its tokens in one group-by (tokens are in row order, so a row holding a
    field twice shows as two equal consecutive rows of the field)."""
    stats = tokens.group_by("field").agg(
        (pl.col("value") == 1).all().alias("ones"), (pl.col("row").diff() == 0).any().alias("repeated"),
        (pl.col("feature").min() == pl.col("feature").max()).alias("single")).sort("field")
    kinds = {name: "categorical" for name in names}  # a field with no token anywhere: an all-missing categorical
    for field, ones, repeated, single in stats.rows():  # a loop over fields, not rows
        if ones:
            kinds[names[field]] = "multi" if repeated else "categorical"
        elif single and not repeated:
            kinds[names[field]] = "numeric"
        else:
            line, token = tokens.filter((pl.col("field") == field) & (pl.col("value") != 1)).select("line", "token").row(0)
            raise DataError(f"field {names[field]!r} holds several feature ids with values other than 1 (e.g. line {line}: "
                            f"{token!r}); weighted multi-valued fields are not supported", where=path,
                            fix="give such features value 1 (one-hot), or one feature id per numeric field whose value is the number")
    return kinds


def _columns(rows: pl.DataFrame, tokens: pl.DataFrame, names: list[str], kinds: Mapping[str, str]) -> pl.DataFrame:
    """``label`` and one column per field, rows in file order: single values scattered into place (null where the
    row lacks the field), multi-valued fields as lists (empty where it lacks them)."""
    n = rows.height
    columns = [(rows["label"] > 0).cast(pl.Float32).alias("label")]
    by_field = tokens.select("field", "row", "feature", "value").sort("field", maintain_order=True)  # rows stay in order
    counts = np.bincount(by_field["field"].to_numpy(), minlength=len(names))
    starts = np.cumsum(counts) - counts
    for index, name in enumerate(names):  # build-time loop over fields
        part = by_field.slice(int(starts[index]), int(counts[index]))
        if kinds[name] == "multi":
            lists = part.group_by("row", maintain_order=True).agg(pl.col("feature").alias(name))
            column = rows.select("row").join(lists, on="row", how="left", maintain_order="left")[name]
            columns.append(column.fill_null(pl.lit([], dtype=pl.List(pl.Int64))))
            continue
        source = part["value" if kinds[name] == "numeric" else "feature"]  # at most one per row (checked by _kinds)
        values = np.zeros(n, dtype=source.to_numpy().dtype)
        present = np.zeros(n, dtype=bool)
        where = part["row"].to_numpy()
        values[where], present[where] = source.to_numpy(), True
        columns.append(pl.select(pl.when(pl.Series(present)).then(pl.Series(values))).to_series().alias(name))
    return pl.DataFrame(columns)


def load_ctr_files(
    train: str | Path,
    valid: str | Path | None = None,
    test: str | Path | None = None,
    *,
    format: Literal["auto", "libsvm", "libfm"] = "auto",
    fields: Sequence[str] | None = None,
    num_features: int | None = None,
    name: str | None = None,
    kinds: Mapping[str, str] | None = None,
) -> CTRTable:
    """CTR rows of one file (``train``; ``split=random`` splits it) or of given ``train`` / ``valid`` / ``test``
    files (column ``part``; ``split=files`` keeps them, carving validation rows out of train when ``valid`` is None).

    - ``format``: ``libsvm`` (``feature:value``, fields by position), ``libfm`` (``field:feature:value``) or
      ``auto`` (the first token decides); a file in the other form is refused with a hint.
    - ``fields``: the field names, in field-id (libfm) or position (libsvm) order; None = ``field_0, field_1, ...``.
    - ``num_features``: feature ids must lie in ``[0, num_features)`` (None: any id >= 0).
    - ``name``: the dataset's name (run directory, tables); None = :func:`default_name` of ``train``.
    - ``kinds``: each field's kind, fixed (a run's ``reader["kinds"]``, to read new files of its dataset as it
      read its own); None = read from the data.

    Each malformed input raises one :class:`DataError` naming the file, the first bad lines and the fix: a
    wrong token syntax, a feature or field id out of range, a libsvm row with another number of features,
    an empty file.
    """
    if format not in ("auto", "libsvm", "libfm"):
        raise ConfigError(f"unknown format {format!r}", where="load_ctr_files(format=...)", fix="use libsvm, libfm or auto")
    if valid is not None and test is None:
        raise ConfigError("a validation file without a test file", where="load_ctr_files(valid=..., test=None)",
                          fix="give test= too, or one file (train=) and split=random")
    if num_features is not None and num_features < 1:
        raise ConfigError(f"num_features must be >= 1 or null, got {num_features}", where="load_ctr_files(num_features=...)")
    if fields is not None and (len(set(fields)) != len(fields) or set(fields) & set(RESERVED) or not all(fields)):
        raise ConfigError(f"field names must be unique, non-empty and not {' or '.join(RESERVED)}; got {list(fields)}",
                          where="load_ctr_files(fields=...)", fix="rename the fields")
    paths = [Path(p).expanduser() for p in (train, valid, test) if p is not None]
    parts = [PARTS.index(part) for part, p in zip(PARTS, (train, valid, test)) if p is not None]
    read, offset = [], 0
    for path in paths:  # a loop over files
        rows, tokens, form = _tokens(path, format)
        if format == "auto":
            format = form  # every file of a dataset in the first one's form
        _check_ranges(rows, tokens, path, form, fields, num_features)
        read.append((rows.select(pl.col("row") + offset, "line", "label"), tokens.with_columns(pl.col("row") + offset)))
        offset += rows.height
    rows = pl.concat([r for r, _ in read])
    tokens = pl.concat([t for _, t in read])
    width = len(fields) if fields is not None else (int(tokens["field"].max()) + 1 if tokens.height else 0)
    names = list(fields) if fields is not None else [f"field_{j}" for j in range(width)]
    if not names:
        raise DataError("no features in any row", where=str(paths[0]), fix="each line is a label and its features")
    where = ", ".join(map(str, paths))
    found = _kinds(tokens, names, where)
    if kinds is not None:
        if list(kinds) != names:
            raise DataError(f"the fields {names} differ from the expected {list(kinds)}", where=where,
                            fix="read files of the same dataset with the same field names")
        clash = [n for n in names if found[n] not in (kinds[n], "categorical")]  # one-hot rows fit any kind
        if clash:
            raise DataError(f"field(s) {clash} are {[found[n] for n in clash]} here but {[kinds[n] for n in clash]} in the "
                            "dataset the run was trained on", where=where, fix="score files of the same dataset")
        found = dict(kinds)
    frame = _columns(rows, tokens, names, found)
    if len(paths) > 1:
        sizes = [r.height for r, _ in read]
        frame = frame.with_columns(pl.Series("part", np.repeat(parts, sizes).astype(np.int8)))
    reader = {"format": format, "fields": names, "num_features": num_features, "kinds": found}
    return CTRTable(frame, found, name=name or default_name(train), reader=reader)


def default_name(train: str | Path) -> str:
    """A dataset's name from its (training) file: the stem without a ``train`` suffix, else the folder's name.

    >>> default_name("/data/frappe/frappe.train.libfm"), default_name("/data/criteo/train.txt")
    ('frappe', 'criteo')
    """
    path = Path(train)
    stem = re.sub(r"[._-]?(train|training)$", "", path.stem, flags=re.IGNORECASE)
    return stem or path.resolve().parent.name or "ctr"


# --- split and features ------------------------------------------------------------------------------
def file_split(data: CTRTable, valid_ratio: float = 0.1, seed: int = 0) -> Split:
    """The parts a dataset's files give (:func:`load_ctr_files` with ``valid``/``test``), as a :class:`~recsys.data.Split`.

    Without a validation file, a seeded ``valid_ratio`` of the training rows becomes the validation part
    (``valid_ratio=0``: none, for ``fit_on=train+valid`` or a fixed number of epochs).
    """
    if not isinstance(data, CTRTable) or not data.has_parts:
        raise ConfigError("split=files keeps the train/valid/test files of a dataset, but this one is a single file",
                          where="split=files", fix="give dataset.valid=/dataset.test= files, or split the file with split=random")
    if not 0.0 <= valid_ratio < 1.0:
        raise ConfigError(f"valid_ratio must be in [0, 1), got {valid_ratio}", where="file_split(valid_ratio=...)")
    train, valid, test = (data.part(p) for p in PARTS)
    if test.num_interactions == 0:
        raise DataError("the test file has no rows", where=f"dataset {data.name!r}, split=files", fix="check dataset.test")
    if valid.num_interactions == 0 and valid_ratio > 0:
        order = torch.randperm(train.num_interactions, generator=torch.Generator().manual_seed(seed)).numpy()
        chosen = np.zeros(train.num_interactions, dtype=bool)
        chosen[order[: int(round(valid_ratio * train.num_interactions))]] = True
        mask = pl.Series(chosen)
        train, valid = train.with_frame(train.frame.filter(~mask)), train.with_frame(train.frame.filter(mask))
    return Split(train, valid, test)


def field_features(fields: Mapping[str, str], min_count: int = 1, pooling: Literal["mean", "sum"] = "mean",
                   numeric: Literal["bucketize", "dense"] = "bucketize", num_buckets: int = 10) -> Any:
    """A :class:`~recsys.data.features.FeaturePipeline` with one feature per field of a :class:`CTRTable`
    (``fields`` = ``table.fields``): categorical, multi-valued (``pooling``) or numeric (``numeric`` mode).

    Values seen fewer than ``min_count`` times in the training rows share the OOV row.

    >>> field_features({"user": "categorical", "tags": "multi"}).to_dict()["features"][1]["type"]
    'MultiCategoricalFeature'
    """
    from recsys.data.features import CategoricalFeature, FeaturePipeline, MultiCategoricalFeature, NumericFeature

    if not isinstance(fields, Mapping) or not fields:
        raise ConfigError(f"fields must map field names to kinds ({', '.join(KINDS)}), got {fields!r}",
                          where="field_features(fields=...)", fix="pass table.fields (the entry point fills it from the dataset)")
    declared = []
    for name, kind in fields.items():  # build-time loop over fields
        if kind == "categorical":
            declared.append(CategoricalFeature(name, min_count=min_count))
        elif kind == "multi":
            declared.append(MultiCategoricalFeature(name, min_count=min_count, pooling=pooling))
        elif kind == "numeric":
            declared.append(NumericFeature(name, mode=numeric, num_buckets=num_buckets))
        else:
            raise ConfigError(f"unknown kind {kind!r} of field {name!r}", where="field_features(fields=...)",
                              fix=f"kinds are {', '.join(KINDS)}")
    return FeaturePipeline(declared, label_threshold=0.5)  # CTR tables carry 0/1 labels: no threshold to apply
