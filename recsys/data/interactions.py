"""Interactions: id-mapped (user, item, rating, timestamp) rows of one dataset or split."""

from __future__ import annotations

import warnings
from functools import cached_property

import polars as pl
import torch

from recsys.data.ids import ITEM_SHIFT, PADDING_INDEX, mask_index
from recsys.data.sorting import sort_rows
from recsys.data.vocabulary import Vocabulary
from recsys.errors import DataError

__all__ = ["PADDING_INDEX", "Interactions", "mask_index"]

SCHEMA = {"user": pl.Int64, "item": pl.Int64, "rating": pl.Float32, "timestamp": pl.Int64}


class Interactions:
    """Id-mapped interactions of one dataset (or one split of it), with side features.

    ``frame`` has columns ``user`` and ``item`` (Int64 indices into ``users`` and ``items``),
    optional ``rating`` (Float32) and ``timestamp`` (Int64), sorted by (user, timestamp, item).
    Splits keep the full vocabularies, so ``num_users``/``num_items`` are vocabulary sizes.

    >>> frame = pl.DataFrame({"user": [0, 0, 1], "item": [1, 0, 1], "timestamp": [2, 1, 5]})
    >>> data = Interactions(frame, Vocabulary(pl.Series([7, 9])), Vocabulary(pl.Series([3, 4])))
    >>> data
    Interactions(name='custom', users=2, items=2, interactions=3)
    >>> data.padded_sequences(3).tolist()
    [[0, 1, 2], [0, 0, 2]]
    """

    def __init__(
        self,
        frame: pl.DataFrame,
        users: Vocabulary,
        items: Vocabulary,
        *,
        user_features: pl.DataFrame | None = None,
        item_features: pl.DataFrame | None = None,
        name: str = "custom",
        assume_sorted: bool = False,
    ) -> None:
        """``assume_sorted=True`` skips sorting for frames known to be in (user, timestamp, item) order."""
        missing = [c for c in ("user", "item") if c not in frame.columns]
        if missing:
            raise DataError(
                f"interaction frame lacks column(s) {missing}",
                where=f"Interactions({name!r}); columns present: {frame.columns}",
                fix="build it with recsys.data.frame.from_frame, which maps raw ids to indices",
            )
        frame = frame.select(
            pl.col(c).cast(t) for c, t in SCHEMA.items() if c in frame.columns
        )
        self.frame = frame if assume_sorted else sort_rows(frame)
        self.users, self.items = users, items
        self.user_features, self.item_features = user_features, item_features
        self.name = name

    # sizes -------------------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_interactions(self) -> int:
        return self.frame.height

    @property
    def has_ratings(self) -> bool:
        return "rating" in self.frame.columns

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.frame.columns

    @property
    def mask_index(self) -> int:
        """Mask token in padded sequences: ``num_items + 1``."""
        return mask_index(self.num_items)

    def __len__(self) -> int:
        return self.num_interactions

    def __repr__(self) -> str:
        return (
            f"Interactions(name={self.name!r}, users={self.num_users}, items={self.num_items}, "
            f"interactions={self.num_interactions})"
        )

    # tensors -----------------------------------------------------------------------------
    def _tensor(self, column: str) -> torch.Tensor:
        return torch.from_numpy(self.frame[column].to_numpy(writable=True))

    @cached_property
    def user_index(self) -> torch.Tensor:
        """User index of every row, ``(n,)`` long."""
        return self._tensor("user")

    @cached_property
    def item_index(self) -> torch.Tensor:
        """Item index of every row, ``(n,)`` long."""
        return self._tensor("item")

    @cached_property
    def ratings(self) -> torch.Tensor | None:
        """Rating of every row, ``(n,)`` float32, or None."""
        return self._tensor("rating") if self.has_ratings else None

    @cached_property
    def timestamps(self) -> torch.Tensor | None:
        """Timestamp of every row, ``(n,)`` int64, or None."""
        return self._tensor("timestamp") if self.has_timestamps else None

    def user_counts(self) -> torch.Tensor:
        """Number of interactions of each user, ``(num_users,)`` long."""
        return torch.bincount(self.user_index, minlength=self.num_users)

    def item_counts(self) -> torch.Tensor:
        """Number of interactions of each item, ``(num_items,)`` long."""
        return torch.bincount(self.item_index, minlength=self.num_items)

    @cached_property
    def _matrices(self) -> dict[str, torch.Tensor]:
        """``user_item_matrix`` per ``values``, built once: the rows never change after ``__init__``."""
        return {}

    def user_item_matrix(self, values: str = "ones") -> torch.Tensor:
        """Sparse CSR float32 ``(num_users, num_items)``, built on the first call and shared after it
        (an evaluation asks for it every epoch): treat it as read-only.

        ``values="ones"``: 1 where a user interacted with an item (duplicates count once);
        ``"ratings"``: the user's most recent rating of the item.

        >>> data = Interactions(pl.DataFrame({"user": [0, 0, 1], "item": [1, 1, 0]}),
        ...                     Vocabulary(pl.Series([7, 9])), Vocabulary(pl.Series([3, 4])))
        >>> data.user_item_matrix().to_dense().tolist()
        [[0.0, 1.0], [1.0, 0.0]]
        >>> data.user_item_matrix() is data.user_item_matrix()
        True
        """
        if values not in ("ones", "ratings"):
            raise DataError(
                f"unknown values={values!r}",
                where="Interactions.user_item_matrix",
                fix="pass values='ones' or values='ratings'",
            )
        if values == "ratings" and not self.has_ratings:
            raise DataError(
                "these interactions have no ratings",
                where=f"Interactions.user_item_matrix on {self.name!r}",
                fix="use values='ones', or load a dataset with a rating column",
            )
        matrix = self._matrices.get(values)
        if matrix is None:
            matrix = self._matrices[values] = self._build_matrix(values)
        return matrix

    def _build_matrix(self, values: str) -> torch.Tensor:
        cells = (
            self.frame.unique(["user", "item"], keep="last", maintain_order=True)
            .sort("user", "item")
        )
        rows = torch.from_numpy(cells["user"].to_numpy(writable=True))
        counts = torch.bincount(rows, minlength=self.num_users)
        crow = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        col = torch.from_numpy(cells["item"].to_numpy(writable=True))
        if values == "ones":
            val = torch.ones(cells.height, dtype=torch.float32)
        else:
            val = torch.from_numpy(cells["rating"].to_numpy(writable=True))
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                crow, col, val, size=(self.num_users, self.num_items), check_invariants=False
            )

    def sequences(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ragged per-user item sequences in time order: ``(offsets (num_users+1,), items (n,))``.

        User ``u``'s items are ``items[offsets[u]:offsets[u + 1]]``.
        """
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), self.user_counts().cumsum(0)])
        return offsets, self.item_index

    def padded_sequences(self, max_len: int) -> torch.Tensor:
        """``(num_users, max_len)`` long: the most recent ``max_len`` items of each user, left
        padded with ``PADDING_INDEX`` (0); items are stored as index + 1."""
        if max_len < 1:
            raise DataError(
                f"max_len must be >= 1, got {max_len}",
                where="Interactions.padded_sequences",
                fix="pass a positive sequence length",
            )
        offsets, items = self.sequences()
        users = self.user_index
        from_end = offsets[users + 1] - torch.arange(len(users))  # 1 = most recent
        keep = from_end <= max_len
        out = torch.full((self.num_users, max_len), PADDING_INDEX, dtype=torch.long)
        out[users[keep], max_len - from_end[keep]] = items[keep] + ITEM_SHIFT
        return out

    def item_frame(self) -> pl.DataFrame:
        """The item side features keyed by **original** item id (``item_features`` is keyed by item index).

        Every item of the vocabulary has a row (nulls where it has no features): join it onto
        recommendations, e.g. for titles. Without side features it is the single ``item`` column.

        >>> frame = pl.DataFrame({"user": [0, 0], "item": [0, 1]})
        >>> features = pl.DataFrame({"item": [1], "title": ["B"]})
        >>> data = Interactions(frame, Vocabulary(pl.Series([7])), Vocabulary(pl.Series([30, 40])), item_features=features)
        >>> data.item_frame().rows()
        [(30, None), (40, 'B')]
        """
        return self._side_frame("item", self.items, self.item_features)

    def user_frame(self) -> pl.DataFrame:
        """The user side features keyed by original user id (as :meth:`item_frame`)."""
        return self._side_frame("user", self.users, self.user_features)

    @staticmethod
    def _side_frame(key: str, vocab: Vocabulary, features: pl.DataFrame | None) -> pl.DataFrame:
        ids = pl.DataFrame({"_index": pl.int_range(len(vocab), dtype=pl.Int64, eager=True), key: vocab.ids})
        if features is None:
            return ids.drop("_index")
        rows = features.rename({key: "_index"}).with_columns(pl.col("_index").cast(pl.Int64))
        return ids.join(rows, on="_index", how="left", maintain_order="left").drop("_index")

    def item_genres(self) -> tuple[torch.Tensor, list[str]]:
        """Multi-hot genres ``(num_items, G)`` float32 and the G genre names (sorted)."""
        features = self.item_features
        if features is None or "genres" not in features.columns:
            raise DataError(
                f"dataset {self.name!r} has no item genres",
                where="Interactions.item_genres (item_features column 'genres')",
                fix="use a dataset with genres (MovieLens) or pass item features with a 'genres' list column",
            )
        pairs = features.select("item", "genres").explode("genres").drop_nulls()
        names = pairs["genres"].unique().sort()
        genre = pairs["genres"].cast(pl.Enum(names.to_list())).to_physical().cast(pl.Int64)
        out = torch.zeros(self.num_items, len(names), dtype=torch.float32)
        rows = torch.from_numpy(pairs["item"].cast(pl.Int64).to_numpy(writable=True))
        out[rows, torch.from_numpy(genre.to_numpy(writable=True))] = 1.0
        return out, names.to_list()

    # derived datasets ---------------------------------------------------------------------
    def with_frame(self, frame: pl.DataFrame, *, assume_sorted: bool = False) -> Interactions:
        """Same vocabularies, features and name, new rows (re-sorted unless ``assume_sorted``)."""
        return Interactions(
            frame,
            self.users,
            self.items,
            user_features=self.user_features,
            item_features=self.item_features,
            name=self.name,
            assume_sorted=assume_sorted,
        )

    def concat(self, other: Interactions) -> Interactions:
        """Union of the rows of two parts of one dataset (e.g. train + valid history)."""
        if self.users != other.users or self.items != other.items:
            raise DataError(
                "cannot concatenate interactions with different vocabularies",
                where=f"Interactions.concat({self.name!r}, {other.name!r})",
                fix="concatenate splits of the same dataset (splits keep the full vocabularies)",
            )
        if set(self.frame.columns) != set(other.frame.columns):
            raise DataError(
                "cannot concatenate interactions with different columns",
                where=f"columns {self.frame.columns} vs {other.frame.columns}",
                fix="concatenate splits of the same dataset",
            )
        return self.with_frame(pl.concat([self.frame, other.frame.select(self.frame.columns)]))
