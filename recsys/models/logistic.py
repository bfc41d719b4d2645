"""Logistic regression for CTR, and ``CTRModel``: the sparse arch FM and DeepFM build on.

Every categorical field gets one row of width ``1 + embedding_dim`` in a fused
:class:`~recsys.embeddings.EmbeddingCollection`: column 0 is the field value's first-order weight,
columns ``1:`` its embedding. One lookup (one ``embedding_bag`` call, sparse gradients) serves the
linear term and every interaction part that reads the embeddings.

Ranking (``score_users`` / ``score_items``): a row's fields come from the user (the ``user`` column, the
columns of ``history.user_features``) or from the item (``item``, ``history.item_features``). Each side is
encoded once, through the same join and pipeline as training, into :class:`SideParts` whose other-side
fields are zero, so ``user + item`` is exactly the training row; ``pair_logits`` combines the two sides over
the ``(B, C)`` grid (closed forms in LR and FM, chunks bounded by ``chunk_size`` elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
import polars as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.data.features import FeaturePipeline
from recsys.data.fields import EncodedFeatures, FieldSpec
from recsys.data.interactions import Interactions
from recsys.data.vocabulary import Vocabulary
from recsys.embeddings.collection import EmbeddingCollection
from recsys.embeddings.config import EmbeddingField
from recsys.embeddings.jagged import KeyedJagged
from recsys.embeddings.keyed_vectors import KeyedVectors
from recsys.embeddings.specs import embedding_fields
from recsys.errors import ConfigError, DataError
from recsys.models.base import Recommender, check_indices

__all__ = ["CTRModel", "LogisticRegression", "SideParts", "grid", "tiles"]

CHUNK_SIZE = 2**24  # elements (rows x width) of the largest intermediate a ranking chunk holds


@dataclass
class SideParts:
    """One side (user or item) of CTR rows: first-order logit ``(n,)`` (the bias on the user side), field
    embeddings ``(n, F, D)`` and dense features ``(n, F_dense)``, the other side's fields and columns zero."""

    first: Tensor
    embeddings: Tensor
    dense: Tensor


def column_sides(history: Interactions) -> dict[str, str]:
    """``{column: "user" | "item"}`` for every column of ``ctr_frame(history)``, named as its joins name them."""
    sides = {"user": "user", "item": "item"}
    for key, frame in (("user", history.user_features), ("item", history.item_features)):
        if frame is not None:
            for column in frame.columns:  # setup: one loop over columns
                if column != key:
                    sides[f"{column}_{key}" if column in sides else column] = key  # polars' join suffix
    return sides


def _take(encoded: EncodedFeatures, index: Tensor) -> EncodedFeatures:
    """Rows ``index`` of encoded rows, bags kept key-major (one vectorized ragged gather)."""
    lengths = encoded.bag_lengths  # (F_bag, n)
    flat = lengths.flatten()
    starts = (torch.cumsum(flat, 0) - flat).view_as(lengths).index_select(1, index).flatten()
    chosen = lengths.index_select(1, index)  # (F_bag, m)
    counts = chosen.flatten()
    total = int(counts.sum())
    bag = torch.repeat_interleave(torch.arange(len(counts), device=index.device), counts, output_size=total)  # (nnz,)
    within = torch.arange(total, device=index.device) - (torch.cumsum(counts, 0) - counts).index_select(0, bag)
    values = encoded.bag_values.index_select(0, starts.index_select(0, bag) + within)
    return EncodedFeatures(encoded.ids.index_select(0, index), values, chosen, encoded.dense.index_select(0, index))


def tiles(num_users: int, cols: Tensor, width: int, chunk_size: int) -> Iterator[tuple[slice, slice, Tensor]]:
    """Tiles of the ``(B, C)`` grid of at most ``chunk_size / width`` pairs (at least one): user rows, grid
    columns, and the item rows they read (``cols[columns]`` ``(c,)``, or ``cols[rows, columns]`` ``(b, c)``)."""
    num_cols = cols.shape[-1]
    col_step = max(1, min(num_cols, chunk_size // max(width, 1)))
    row_step = max(1, chunk_size // (max(width, 1) * col_step))
    for r in range(0, num_users, row_step):  # loops over memory tiles, not users or items
        for c in range(0, num_cols, col_step):
            rows, columns = slice(r, min(r + row_step, num_users)), slice(c, min(c + col_step, num_cols))
            yield rows, columns, cols[columns] if cols.dim() == 1 else cols[rows, columns]


def grid(user: Tensor, item: Tensor, rows: slice, items: Tensor) -> Tensor:
    """``user[rows]`` plus ``item[items]`` for every pair of a tile, flat: ``(b * c, ...)`` (one broadcast add)."""
    return (user[rows].unsqueeze(1) + item[items]).flatten(0, 1)


class CTRModel(Recommender):
    """Base of the CTR models: batches ``{"ids", "bag_values", "bag_offsets", "dense", "labels"}`` -> logits.

    Tables are sized by a FITTED ``features`` pipeline (the one the batches and the evaluator share; the
    caller fits it once on the training split) and built in ``__init__``; initial weights are drawn from
    the global torch RNG (seed it, or build inside ``torch.random.fork_rng``). Without a pipeline (libsvm
    data, pre-encoded ids) call ``build(fields, num_dense)`` with ``FieldSpec``s or ``EmbeddingField``s.
    Subclasses add parts in ``build_head`` and define ``head`` (logits from the first order, the field
    embeddings and the dense features); the loss is binary cross-entropy on the logits. ``score_users`` /
    ``score_items`` rank items for users (needs the pipeline); subclasses may speed up ``pair_logits``.
    """

    vectors_read_history = True  # item/user_embeddings sum side-feature rows of a history (FittedRecommender passes its own)
    scores_are_logits = True  # recommend adds probability = sigmoid(score)

    def __init__(self, features: FeaturePipeline | None = None, embedding_dim: int = 16, sparse: bool = True,
                 init_std: float = 1e-2) -> None:
        super().__init__()
        where = type(self).__name__
        if embedding_dim < 0 or init_std <= 0:
            raise ConfigError(f"need embedding_dim >= 0 and init_std > 0, got {embedding_dim}, {init_std}",
                              where=where, fix="set model.module.embedding_dim / init_std")
        if features is not None and (not isinstance(features, FeaturePipeline) or not features.fitted):
            raise ConfigError(f"{where} needs a fitted FeaturePipeline, got an unfitted {type(features).__name__}",
                              where=f"{where}(features=...)",
                              fix="fit it once on the training split (features.fit(split.train)) and pass that object "
                                  "to the model, the batches and the evaluator")
        self.features, self.embedding_dim, self.sparse, self.init_std = features, embedding_dim, sparse, init_std
        # sequence features (behaviour histories) ride after the bags and have no table: lookup slices them off
        self.num_sequences = len(features.sequence_features) if features is not None else 0
        self.bias = nn.Parameter(torch.zeros(1))
        self.embeddings: EmbeddingCollection | None = None
        self.dense_linear: nn.Linear | None = None
        self._sides: dict[str, tuple[tuple, tuple[EncodedFeatures, Tensor, Tensor]]] = {}  # ranking: encoded sides
        if features is not None:
            self.build(features.field_specs(), features.num_dense)

    def prepare(self, train: Interactions, generator: torch.Generator | None = None) -> None:
        """Nothing to learn before training: the tables were built from the fitted pipeline."""
        if self.embeddings is None:
            raise ConfigError(f"{type(self).__name__} has no tables to train",
                              where=f"{type(self).__name__}.prepare",
                              fix="pass features=<a fitted FeaturePipeline> or call build(fields) first")

    def build(self, fields: Sequence[FieldSpec | EmbeddingField], num_dense: int = 0) -> None:
        """Create the tables (``fields``' sizes and pooling; the width is this model's) and the dense parts."""
        fields = embedding_fields(fields, self.embedding_dim + 1)
        self.embeddings = EmbeddingCollection(fields, sparse=self.sparse, init_std=self.init_std)
        self.num_fields, self.num_dense = len(fields), num_dense
        self.dense_linear = nn.Linear(num_dense, 1, bias=False) if num_dense else None
        self.build_head(len(fields), num_dense)
        self.to(self.bias.device)

    def build_head(self, num_fields: int, num_dense: int) -> None:
        """Subclasses create the parts that depend on the number of fields here."""

    def lookup(self, batch: dict[str, Tensor]) -> Tensor:
        """Table rows of the batch's field values, ``(B, F, 1 + D)``: first-order weight, then embedding."""
        if self.embeddings is None:
            raise ConfigError(f"{type(self).__name__} has no tables yet", where=f"{type(self).__name__}.embed",
                              fix="pass features=<a fitted FeaturePipeline> or call build(fields) before training or predicting")
        bags = None
        if self.embeddings.pooled_names:
            values, offsets, _ = self.split_bags(batch)
            bags = KeyedJagged(self.embeddings.pooled_names, values, offsets)
        return self.embeddings(batch["ids"] if self.embeddings.single_names else None, bags)  # (B, F, 1 + D)

    def split_bags(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor]]]:
        """The table bags' values and offsets, and each sequence feature's ``(values (nnz,), offsets (B + 1,))``:
        the sequences' bags follow the table bags (key-major), so both are slices."""
        values, offsets = batch["bag_values"], batch["bag_offsets"]
        if not self.num_sequences:
            return values, offsets, []
        num_pooled = len(self.embeddings.pooled_names) if self.embeddings is not None else 0
        rows = (len(offsets) - 1) // (num_pooled + self.num_sequences)
        cut = num_pooled * rows
        sequences = []
        for s in range(self.num_sequences):  # loop over sequence features (one or two), not rows
            part = offsets[cut + s * rows : cut + (s + 1) * rows + 1]
            sequences.append((values[int(part[0]) : int(part[-1])], part - part[0]))
        return values[: int(offsets[cut])], offsets[: cut + 1], sequences

    def embed(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """First-order logit ``(B,)`` (bias + weights + dense linear) and the field embeddings ``(B, F, D)``."""
        rows = self.lookup(batch)  # (B, F, 1 + D)
        # one split, not a select and a slice: its backward is one cat instead of two zero-filled scatters
        weights, embeddings = rows.split([1, self.embedding_dim], dim=-1)  # (B, F, 1), (B, F, D)
        first = weights.sum((1, 2)) + self.bias  # (B,)
        if self.dense_linear is not None:
            dense = batch.get("dense")
            if dense is None or dense.dim() != 2 or dense.shape[1] != self.num_dense:
                raise DataError(f"expected dense features (B, {self.num_dense}), got "
                                f"{None if dense is None else tuple(dense.shape)}", where=f"{type(self).__name__}.embed")
            first = first + self.dense_linear(dense).squeeze(-1)
        # one contiguous copy: the interaction parts then reduce unit-stride rows, and a DNN's flat input is a view
        return first, embeddings.contiguous()  # (B,), (B, F, D)

    def head(self, first: Tensor, embeddings: Tensor, dense: Tensor | None) -> Tensor:
        """Logits ``(B,)`` from the first order ``(B,)``, field embeddings ``(B, F, D)`` and dense ``(B, F_dense)``."""
        raise NotImplementedError(f"{type(self).__name__} defines no head")

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        if self.embeddings is not None and self.embeddings.single_names and batch.get("ids") is not None:
            # fields without an OOV row or hashing have no row for an id >= num_embeddings: a fused table would
            # silently read the next field's rows
            fields = [self.embeddings.field(n) for n in self.embeddings.single_names]
            strict = [i for i, f in enumerate(fields) if not (f.oov_row or f.hashing)]
            if strict:
                ids = batch["ids"] if len(strict) == len(fields) else batch["ids"][:, strict]
                check_indices(ids, [fields[i].num_embeddings for i in strict], "ids",
                              f"{type(self).__name__}.predict, fields {[fields[i].name for i in strict]} (in that column order)")
        first, embeddings = self.embed(batch)  # (B,), (B, F, D)
        return self.head(first, embeddings, batch.get("dense"))  # (B,)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        return F.binary_cross_entropy_with_logits(self.predict(batch), batch["labels"].float())

    # ranking -----------------------------------------------------------------------------
    def score_users(self, users: Tensor, history: Interactions, chunk_size: int = CHUNK_SIZE) -> Tensor:
        """Logit of every item for each user, ``(B, N)``: each row's features joined as training joined them
        (``history.user_features`` / ``item_features``). ``chunk_size`` bounds the elements one chunk holds.
        Call it in eval mode (as the evaluators do): dropout and batch norm would see chunks, not rows."""
        user = self.side(history, "user", self._index(users, history.num_users, "users"))
        cols = torch.arange(history.num_items, device=self.device)
        return self.pair_logits(user, self.side(history, "item"), cols, chunk_size)  # (B, N)

    def score_items(self, users: Tensor, items: Tensor, history: Interactions, chunk_size: int = CHUNK_SIZE) -> Tensor:
        """Logits ``(B, C)`` of candidate ``items`` (``(B, C)`` per user, or ``(C,)`` for all) for each user."""
        users = self._index(users, history.num_users, "users")
        items = self._index(items, history.num_items, "items")
        if items.dim() not in (1, 2) or (items.dim() == 2 and items.shape[0] != len(users)):
            raise DataError(f"items must be (B, C) or (C,) for {len(users)} users, got {tuple(items.shape)}",
                            where=f"{type(self).__name__}.score_items", fix="pass one row of candidates per user")
        unique, cols = torch.unique(items, return_inverse=True)  # each candidate item encoded once
        return self.pair_logits(self.side(history, "user", users), self.side(history, "item", unique), cols, chunk_size)

    def pair_logits(self, user: SideParts, item: SideParts, cols: Tensor, chunk_size: int = CHUNK_SIZE) -> Tensor:
        """Logits ``(B, C)`` of user ``b`` with item row ``cols[b, c]`` (or ``cols[c]``): ``head`` on the summed
        sides, tile by tile (any subclass; LR, FM and DeepFM override it with closed forms)."""
        out = user.first.new_empty(len(user.first), cols.shape[-1])
        width = user.embeddings.shape[1] * (self.embedding_dim + 1) + user.dense.shape[1]
        for rows, columns, items in tiles(len(user.first), cols, width, chunk_size):
            logits = self.head(grid(user.first, item.first, rows, items), grid(user.embeddings, item.embeddings, rows, items),
                               grid(user.dense, item.dense, rows, items))
            out[rows, columns] = logits.view(rows.stop - rows.start, -1)
        return out

    def side_batch(self, history: Interactions, side: str, index: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """The ``side`` ("user" or "item") rows ``index`` (default: every user or item of ``history``) as a batch
        ``{"ids", "bag_values", "bag_offsets", "dense"}``, with the masks of this side's fields ``(F,)`` and dense
        columns ``(F_dense,)``."""
        encoded, fields, dense_columns = self._encoded_side(history, side)
        if index is not None:
            encoded = _take(encoded, index)
        offsets = torch.zeros(encoded.bag_lengths.numel() + 1, dtype=torch.long, device=self.device)
        torch.cumsum(encoded.bag_lengths.flatten(), 0, out=offsets[1:])
        return {"ids": encoded.ids, "bag_values": encoded.bag_values, "bag_offsets": offsets,
                "dense": encoded.dense}, fields, dense_columns

    def side(self, history: Interactions, side: str, index: Tensor | None = None) -> SideParts:
        """The ``side`` ("user" or "item") parts of rows ``index`` (default: every user or item of ``history``)."""
        batch, fields, dense_columns = self.side_batch(history, side, index)
        rows = self.lookup(batch).masked_fill(~fields.view(1, -1, 1), 0.0)  # (n, F, 1 + D), other side zero
        weights, embeddings = rows.split([1, self.embedding_dim], dim=-1)
        first = weights.sum((1, 2)) + (self.bias if side == "user" else 0.0)  # (n,)
        dense = batch["dense"].masked_fill(~dense_columns, 0.0)  # (n, F_dense)
        if self.dense_linear is not None:
            first = first + self.dense_linear(dense).squeeze(-1)
        return SideParts(first, embeddings.contiguous(), dense)

    def item_embeddings(self, items: Vocabulary, history: Interactions | None = None) -> KeyedVectors:
        """Each item's side vector keyed by original item id: the sum of its item-side field embeddings (FM's item
        factor: ``user . item`` is the sides' second-order interaction). Needs the ``history`` holding the item features."""
        return self._side_vectors(items, history, "item")

    def user_embeddings(self, users: Vocabulary, history: Interactions | None = None) -> KeyedVectors:
        """Each user's side vector (the sum of its user-side field embeddings) keyed by original user id."""
        return self._side_vectors(users, history, "user")

    def _side_vectors(self, vocab: Vocabulary, history: Interactions | None, side: str) -> KeyedVectors:
        from recsys.models.als import keyed  # als imports nothing of this module; at call time to keep import order simple

        where = f"{type(self).__name__}.{side}_embeddings"
        if self.embedding_dim == 0:
            raise ConfigError(f"{type(self).__name__} has embedding_dim 0: no {side} vectors", where=where,
                              fix="use FM or DeepFM (embedding_dim > 0)")
        if history is None:
            raise ConfigError(f"{type(self).__name__}'s {side} vectors come from the {side} features", where=where,
                              fix="pass the history holding the side features (a loaded run passes its own)")
        with torch.no_grad():
            vectors = self.side(history, side).embeddings.sum(1)  # (n, D): the fields of the other side are zero
        return keyed(vocab, vectors)

    def _index(self, index: Tensor, size: int, name: str) -> Tensor:
        index = torch.as_tensor(index, device=self.device).long()
        check_indices(index, size, name, f"{type(self).__name__} ranking, {name}")
        return index

    def _encoded_side(self, history: Interactions, side: str) -> tuple[EncodedFeatures, Tensor, Tensor]:
        """Every user (or item) of ``history`` encoded as training encodes it, cached until the side frames change;
        with the masks of the fields ``(F,)`` and dense columns ``(F_dense,)`` that belong to this side."""
        key = (history.user_features, history.item_features, history.num_users, history.num_items, self.device)
        cached = self._sides.get(side)
        if cached is not None and cached[0][0] is key[0] and cached[0][1] is key[1] and cached[0][2:] == key[2:]:
            return cached[1]
        where = f"{type(self).__name__}.score_users"
        if self.features is None:
            raise ConfigError(f"{type(self).__name__} was built without a FeaturePipeline and cannot encode users and items",
                              where=where, fix="build the model with features=<the fitted pipeline> to rank items")
        fitted = self.features.features_
        sides = column_sides(history)
        context = [f"{f.name!r} (column {f.column!r})" for f in fitted if f.column not in sides]
        if context:
            raise ConfigError(f"feature(s) {', '.join(context)} are neither user- nor item-side (not the user / item "
                              "ids, nor columns of history.user_features / item_features): they cannot be known "
                              "when ranking items for a user", where=where,
                              fix="drop them from the FeaturePipeline to rank, or score given rows with predict")
        n, other = (history.num_users, "item") if side == "user" else (history.num_items, "user")
        keys = pl.DataFrame({side: pl.int_range(n, eager=True), other: pl.zeros(n, pl.Int64, eager=True)})
        rows = Interactions(keys.select("user", "item"), history.users, history.items, user_features=history.user_features,
                            item_features=history.item_features, name=history.name, assume_sorted=True)
        encoded = self.features.transform(rows)  # the same join (ctr_frame) and encoding as training
        if len(encoded) != n:
            raise DataError(f"history.{side}_features has several rows for some {side}s ({len(encoded)} joined rows for {n})",
                            where=where, fix=f"keep one row per {side} in {side}_features")
        encoded = EncodedFeatures(*(t.to(self.device) for t in (encoded.ids, encoded.bag_values, encoded.bag_lengths,
                                                                 encoded.dense)))
        side_of = {f.name: sides[f.column] for f in fitted}
        fields = torch.tensor([side_of[f.name] == side for f in self.embeddings.fields], dtype=torch.bool, device=self.device)
        dense_columns = torch.tensor([side_of[f.name] == side for f in fitted if f.kind == "dense"], dtype=torch.bool,
                                     device=self.device)
        self._sides[side] = (key, (encoded, fields, dense_columns))
        return encoded, fields, dense_columns


class LogisticRegression(CTRModel):
    """``logit = bias + sum of the first-order weights of the row's field values + w . dense``.

    >>> model = LogisticRegression()
    >>> model.build([FieldSpec("user", 10), FieldSpec("genres", 5, pooling="mean")])
    >>> batch = {"ids": torch.tensor([[1], [2]]), "bag_values": torch.tensor([0, 3, 4]),
    ...          "bag_offsets": torch.tensor([0, 2, 3]), "labels": torch.tensor([1.0, 0.0])}
    >>> model.predict(batch).shape, model.loss(batch).shape
    (torch.Size([2]), torch.Size([]))
    """

    item_embeddings = None  # first-order weights only: no vectors to export (callers check callable(...))
    user_embeddings = None

    def __init__(self, features: FeaturePipeline | None = None, sparse: bool = True, init_std: float = 1e-2) -> None:
        super().__init__(features, embedding_dim=0, sparse=sparse, init_std=init_std)

    def head(self, first: Tensor, embeddings: Tensor, dense: Tensor | None) -> Tensor:
        return first  # (B,)

    def pair_logits(self, user: SideParts, item: SideParts, cols: Tensor, chunk_size: int = CHUNK_SIZE) -> Tensor:
        return user.first[:, None] + item.first[cols]  # (B, C): the logit is the sum of the two sides
