"""Amazon-style sequence files: one line per user, ``user item1 item2 ...`` in time order."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys.data.frame import build
from recsys.data.interactions import Interactions
from recsys.errors import DataError


def load_sequence_file(path: str | Path, name: str | None = None) -> Interactions:
    """Interactions from a ``user item1 item2 ...`` file (e.g. S3-Rec's ``Beauty.txt``).

    The timestamp of an interaction is its position in the line (0, 1, ...), so the time order
    of the file is kept. Integer ids stay integers (so index order is numeric order). The dataset is
    named ``name`` or the file's stem (``Beauty.txt`` -> ``Beauty``, as its run directory).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"sequence file not found: {path}",
            where=str(path),
            fix="pass the path of a text file with one 'user item1 item2 ...' line per user "
            "(e.g. .../amazon-beauty/Beauty.txt)",
        )
    lines = pl.read_csv(
        path, has_header=False, new_columns=["line"], separator="\x1f", quote_char=None, infer_schema=False
    )
    words = pl.col("line").str.replace_all(r"\s+", " ").str.strip_chars()
    tokens = lines.select(words.str.split(by=" ").list.filter(pl.element() != ""))
    tokens = tokens.filter(pl.col("line").list.len() > 0)
    rows = tokens.select(
        pl.col("line").list.first().alias("user"),
        pl.col("line").list.slice(1).alias("item"),
    ).with_columns(pl.int_ranges(pl.col("item").list.len()).alias("timestamp"))
    rows = rows.explode("item", "timestamp").drop_nulls("item")
    if rows.height == 0:
        raise DataError(
            "no interactions in the sequence file",
            where=str(path),
            fix="each line must be 'user item1 item2 ...' separated by single spaces",
        )
    as_int = rows.select(pl.col("user", "item").cast(pl.Int64, strict=False))
    if not as_int.null_count().sum_horizontal().item():
        rows = rows.with_columns(as_int)
    return build(rows, name=name or path.stem, where=str(path))
