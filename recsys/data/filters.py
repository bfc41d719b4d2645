"""Preprocessing filters: minimum rating, duplicates, k-core. Each returns new Interactions."""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.data.interactions import Interactions
from recsys.data.vocabulary import Vocabulary
from recsys.errors import ConfigError, DataError


def _empty(data: Interactions, what: str) -> DataError:
    return DataError(
        f"no interactions left after {what}",
        where=f"dataset {data.name!r} ({data.num_interactions} interactions before)",
        fix="relax the filter (lower threshold or k)",
    )


def _reindex(features: pl.DataFrame | None, key: str, new_index: np.ndarray) -> pl.DataFrame | None:
    if features is None:
        return None
    mapping = pl.Series(key, new_index)
    kept = features.filter(mapping.gather(features[key]) >= 0)
    return kept.with_columns(mapping.gather(kept[key]).alias(key))


def compact(data: Interactions) -> Interactions:
    """Drop users and items without interactions and renumber the rest contiguously.

    Index order still follows original id order, since kept indices keep their relative order.
    """
    frame = data.frame
    used = {}
    for key, size in (("user", data.num_users), ("item", data.num_items)):
        present = np.zeros(size, dtype=bool)
        present[frame[key].to_numpy()] = True
        used[key] = np.where(present, np.cumsum(present) - 1, -1)
    if (used["user"][-1:] == data.num_users - 1).all() and (used["item"][-1:] == data.num_items - 1).all():
        return data
    new_frame = frame.with_columns(
        pl.Series("user", used["user"]).gather(frame["user"]),
        pl.Series("item", used["item"]).gather(frame["item"]),
    )
    return Interactions(
        new_frame,
        Vocabulary(data.users.ids.filter(pl.Series(used["user"] >= 0))),
        Vocabulary(data.items.ids.filter(pl.Series(used["item"] >= 0))),
        user_features=_reindex(data.user_features, "user", used["user"]),
        item_features=_reindex(data.item_features, "item", used["item"]),
        name=data.name,
        assume_sorted=True,  # a monotone renumbering keeps the (user, timestamp, item) order
    )


def binarize(data: Interactions, threshold: float) -> Interactions:
    """Keep interactions with rating >= ``threshold`` (implicit feedback); users and items left
    without interactions are dropped and the rest renumbered. The rating column is kept."""
    if not data.has_ratings:
        raise DataError(
            f"dataset {data.name!r} has no ratings to threshold",
            where=f"binarize(threshold={threshold})",
            fix="drop min_rating / binarize for implicit data",
        )
    frame = data.frame.filter(pl.col("rating") >= threshold)
    if frame.height == 0:
        raise _empty(data, f"min_rating / binarize(threshold={threshold})")
    return compact(data.with_frame(frame, assume_sorted=True))


def deduplicate(data: Interactions, keep: str = "last") -> Interactions:
    """One row per (user, item): the ``"last"`` (most recent) or ``"first"`` interaction."""
    if keep not in ("first", "last"):
        raise ConfigError(f"keep must be 'first' or 'last', got {keep!r}", where="deduplicate", fix="keep='last'")
    frame = data.frame.unique(["user", "item"], keep=keep, maintain_order=True)
    return data.with_frame(frame, assume_sorted=True)


def k_core(data: Interactions, min_user_interactions: int = 5, min_item_interactions: int = 5) -> Interactions:
    """Largest subset in which every user has >= ``min_user_interactions`` interactions and every
    item >= ``min_item_interactions`` (iterated to a fixed point); ids renumbered contiguously."""
    users = data.frame["user"].to_numpy()
    items = data.frame["item"].to_numpy()
    keep = np.ones(len(users), dtype=bool)
    while True:
        user_ok = np.bincount(users[keep], minlength=data.num_users) >= min_user_interactions
        item_ok = np.bincount(items[keep], minlength=data.num_items) >= min_item_interactions
        new_keep = keep & user_ok[users] & item_ok[items]
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    if not keep.any():
        raise _empty(data, f"k_core(min_user_interactions={min_user_interactions}, min_item_interactions={min_item_interactions})")
    return compact(data.with_frame(data.frame.filter(pl.Series(keep)), assume_sorted=True))
