"""One text per item (title + genres + tags) assembled from item features, for text encoders."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from recsys.errors import DataError

__all__ = ["TEXT_FIELDS", "item_texts"]

TEXT_FIELDS = ("title", "genres", "tags")


def item_texts(features: pl.DataFrame | None, num_items: int, fields: Sequence[str] = TEXT_FIELDS) -> list[str]:
    """One text per item index ``0..num_items-1``: the ``fields`` of ``features`` joined by ``" | "``.

    List columns (genres, tags) are joined by ``", "``; missing fields and items without a row give
    empty parts. ``features`` has an ``item`` column of item indices (``Interactions.item_features``).

    >>> frame = pl.DataFrame({"item": [1, 0], "title": ["Heat (1995)", "Toy Story (1995)"], "genres": [["Crime"], ["Animation", "Comedy"]]})
    >>> item_texts(frame, 3, fields=("title", "genres"))
    ['Toy Story (1995) | Animation, Comedy', 'Heat (1995) | Crime', '']
    """
    if features is None or "item" not in features.columns:
        raise DataError("no item features to build texts from", where="item_texts(features=...)",
                        fix="use a dataset with item titles (MovieLens) or pass a frame with an 'item' column")
    present = [f for f in fields if f in features.columns]
    if not present:
        raise DataError(f"none of the fields {list(fields)} is a column", where=f"item_texts; columns: {features.columns}",
                        fix="choose fields among the item feature columns")
    parts = []
    for field in present:  # loop over fields at build time, not over items
        column = pl.col(field)
        if isinstance(features.schema[field], pl.List):
            column = column.list.eval(pl.element().cast(pl.String)).list.join(", ")
        parts.append(column.cast(pl.String).fill_null(""))
    text = pl.concat_list(parts).list.eval(pl.element().filter(pl.element() != "")).list.join(" | ")  # skip empty parts
    frame = features.select(pl.col("item").cast(pl.Int64), text.alias("text"))
    frame = frame.filter(pl.col("item").is_between(0, num_items - 1))
    out = np.full(num_items, "", dtype=object)
    out[frame["item"].to_numpy()] = frame["text"].to_numpy()
    return out.tolist()
