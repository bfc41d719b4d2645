"""What the data layer hands on for CTR: field specs, encoded rows, the per-interaction frame and its labels.

``data/`` describes fields; ``embeddings/`` turns them into tables (its ``embedding_fields`` function).
A :class:`FieldSpec` says how many rows a categorical field needs and whether a row holds one value or a
bag of values; it knows nothing of embedding widths or modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import polars as pl
import torch
from torch import Tensor

from recsys.data.ctr_files import CTRTable
from recsys.errors import ConfigError, DataError

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions

__all__ = ["EncodedFeatures", "FieldSpec", "ctr_frame", "ctr_labels"]


@dataclass(frozen=True)
class FieldSpec:
    """One categorical field as the data sees it: ``num_embeddings`` known values (rows ``0..num_embeddings-1``),
    plus one OOV row when ``oov_row`` (unseen, rare and missing values map to id ``num_embeddings``);
    ``pooling="none"`` for one value per row, ``"mean"``/``"sum"`` for a bag of values (multi-valued).

    >>> spec = FieldSpec("genres", num_embeddings=18, pooling="mean")
    >>> spec.multi_valued, spec.num_rows
    (True, 19)
    """

    name: str
    num_embeddings: int
    pooling: Literal["none", "sum", "mean"] = "none"
    oov_row: bool = True

    def __post_init__(self) -> None:
        where = f"FieldSpec(name={self.name!r})"
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"field name must be a non-empty string, got {self.name!r}", where=where, fix="name every field")
        if self.num_embeddings < 1:
            raise ConfigError(f"num_embeddings must be >= 1, got {self.num_embeddings}", where=where)
        if self.pooling not in ("none", "sum", "mean"):
            raise ConfigError(f"unknown pooling {self.pooling!r}", where=where, fix="use 'none', 'sum' or 'mean'")

    @property
    def multi_valued(self) -> bool:
        """True for a bag of values per row (genres, tags)."""
        return self.pooling != "none"

    @property
    def num_rows(self) -> int:
        """Rows the field's table needs: ``num_embeddings`` plus the OOV row if any."""
        return self.num_embeddings + int(self.oov_row)


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


def ctr_labels(data: Interactions | CTRTable, label_threshold: float) -> Tensor:
    """``(n,)`` float32 labels ``rating >= label_threshold`` in the row order of ``data.frame``; a
    :class:`CTRTable`'s own 0/1 labels (its files say what a click is: no threshold applies)."""
    if isinstance(data, CTRTable):
        return data.labels
    if not data.has_ratings:
        raise DataError(f"dataset {data.name!r} has no ratings to derive click labels from",
                        where="ctr_labels", fix="use a dataset with a rating column (MovieLens)")
    return (data.ratings >= label_threshold).float()


def ctr_frame(data: Interactions | CTRTable) -> pl.DataFrame:
    """One row per interaction (same order as ``data.frame``): ``user``, ``item`` (indices), ``timestamp`` when the
    data has one, and every user/item feature column (e.g. ml-100k: age, gender, occupation, zip, title, genres); a
    :class:`CTRTable`'s field columns."""
    if isinstance(data, CTRTable):
        return data.feature_frame()
    frame = data.frame.select("user", "item", *(["timestamp"] if data.has_timestamps else []))
    for key, features in (("user", data.user_features), ("item", data.item_features)):
        if features is not None:
            features = features.with_columns(pl.col(key).cast(pl.Int64))
            frame = frame.join(features, on=key, how="left", maintain_order="left", suffix=f"_{key}")
    return frame
