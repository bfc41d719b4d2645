"""DIN, Deep Interest Network (Zhou et al. 2018): the candidate item attends over the user's behaviour sequence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.data.features import FeaturePipeline
from recsys.data.interactions import Interactions
from recsys.errors import ConfigError, DataError
from recsys.models.logistic import CHUNK_SIZE, CTRModel, SideParts, tiles
from recsys.nn.interest import LocalActivationUnit
from recsys.nn.mlp import MLP

__all__ = ["DIN", "BehaviourSide"]


@dataclass
class BehaviourSide(SideParts):
    """The user side of ranking rows with each user's behaviours: embeddings ``keys (n, T, D)`` (oldest first, zero
    after a row's end) and ``mask (n, T)``."""

    keys: Tensor | None = None
    mask: Tensor | None = None


class DIN(CTRModel):
    """``logit = DNN([v_1; ...; v_F; sum_t a(e_c, e_t) e_t; dense])``: the field embeddings (the candidate item's
    ``e_c`` among them), the behaviours ``e_t`` pooled by a local activation unit ``a`` (an MLP over
    ``[e_c, e_t, e_c - e_t, e_c * e_t]``, weights unnormalized unless ``softmax``), and the dense features.

    The behaviours are the ``history`` :class:`~recsys.data.features.SequenceFeature` of the fitted pipeline: rows of
    its source field (the item), read from that field's rows of the fused table, so candidate and behaviours share
    one embedding per item (and one sparse gradient). No first-order term (as DeepCTR's DIN); ``activation`` is the
    DNN's, ``attention_activation`` the unit's (``dice`` as the paper, ``prelu``, ``relu``, ...).

    Ranking (``score_users`` / ``score_items``, so full-ranking evaluation and ``recommend``): each user's behaviours
    are their latest ``max_len`` items of the pipeline's fitted context (the training events), every candidate
    attends over them. Both first layers (the unit's and the DNN's) split by input, so per (user, candidate) pair
    only the ``q * k`` products, the unit's upper layers and the DNN above its first layer run, tile by tile.

    >>> import polars as pl
    >>> from recsys.data.features import CategoricalFeature, SequenceFeature
    >>> rows = pl.DataFrame({"user": [1, 1, 2], "item": [5, 6, 5], "timestamp": [1, 2, 3]})
    >>> pipe = FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("item"), SequenceFeature("history")]).fit(rows)
    >>> model = DIN(pipe, embedding_dim=4, hidden_dims=(8,), attention_dims=(4,))
    >>> batch = pipe.transform(rows).batch()
    >>> model.predict(batch).shape, model.attention(batch).tolist()[0]  # row 0 has no earlier items
    (torch.Size([3]), [0.0])
    """

    def __init__(self, features: FeaturePipeline | None = None, embedding_dim: int = 16,
                 hidden_dims: Sequence[int] = (256, 128), attention_dims: Sequence[int] = (64, 16),
                 activation: str = "relu", attention_activation: str = "dice", softmax: bool = False,
                 dropout: float = 0.0, batch_norm: bool = False, history: str = "history", sparse: bool = True,
                 init_std: float = 1e-2) -> None:
        self.hidden_dims, self.attention_dims = tuple(hidden_dims), tuple(attention_dims)
        self.activation, self.attention_activation, self.softmax = activation, attention_activation, softmax
        self.dropout, self.batch_norm, self.history = dropout, batch_norm, history
        if embedding_dim < 1:
            raise ConfigError(f"DIN needs embedding_dim >= 1, got {embedding_dim}", where="DIN",
                              fix="set model.module.embedding_dim")
        super().__init__(features, embedding_dim=embedding_dim, sparse=sparse, init_std=init_std)

    def build_head(self, num_fields: int, num_dense: int) -> None:
        where = "DIN"
        sequences = self.features.sequence_features if self.features is not None else []
        names = [f.name for f in sequences]
        if self.history not in names:
            raise ConfigError(f"DIN reads the behaviour sequence feature {self.history!r}; the pipeline has "
                              f"{names or 'no sequence features'}", where=f"{where}(history={self.history!r})",
                              fix="add SequenceFeature(name, source='item', max_len=50) to the features "
                                  "(features=movielens_history), or set model.module.history")
        self._sequence = names.index(self.history)
        source = sequences[self._sequence].source
        fields = [f.name for f in self.embeddings.fields]
        if source not in fields or self.embeddings.field(source).pooled:
            raise ConfigError(f"the history's source {source!r} is not a single-valued field of the tables {fields}",
                              where=where, fix="point the SequenceFeature's source at the item feature")
        self._source = fields.index(source)
        table = self.embeddings.tables[str(self.embeddings.field(source).embedding_dim)]
        self._offset, self._cap = table.row_offsets[source], self.embeddings.field(source).num_rows - 1
        self.unit = LocalActivationUnit(self.embedding_dim, self.attention_dims, self.attention_activation, self.softmax)
        self.dnn = MLP((num_fields + 1) * self.embedding_dim + num_dense, self.hidden_dims, out_dim=1,
                       activation=self.activation, dropout=self.dropout, batch_norm=self.batch_norm)

    def behaviours(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Field embeddings ``(B, F, D)``, behaviour embeddings ``(nnz, D)`` and each behaviour's row ``(nnz,)``."""
        rows = self.lookup(batch)  # (B, F, 1 + D)
        embeddings = rows[..., 1:]  # (B, F, D): DIN has no first-order term
        values, offsets = self.split_bags(batch)[2][self._sequence]
        if values.numel() and (int(values.min()) < 0 or int(values.max()) > self._cap):
            raise DataError(f"history rows must lie in [0, {self._cap}] (the item field's rows)", where="DIN.behaviours",
                            fix="encode histories with the model's own FeaturePipeline")
        lengths = offsets.diff()  # (B,)
        row = torch.repeat_interleave(torch.arange(len(lengths), device=values.device), lengths, output_size=len(values))
        table = self.embeddings.tables[str(self.embedding_dim + 1)]
        keys = F.embedding(values + self._offset, table.weight, sparse=self.sparse)[:, 1:]  # (nnz, D)
        return embeddings, keys, row

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        embeddings, keys, row = self.behaviours(batch)  # (B, F, D), (nnz, D), (nnz,)
        interest, _ = self.unit.ragged(embeddings[:, self._source], keys, row)  # (B, D)
        parts = [embeddings.flatten(1), interest]
        if self.num_dense:
            dense = batch.get("dense")
            if dense is None or dense.shape[-1] != self.num_dense:
                raise DataError(f"expected dense features (B, {self.num_dense})", where="DIN.predict")
            parts.append(dense)
        return self.dnn(torch.cat(parts, 1)).squeeze(-1)  # (B,)

    def attention(self, batch: dict[str, Tensor]) -> Tensor:
        """Weights ``(B, T)`` of each row's behaviours (oldest first, ``T`` the longest history of the batch; 0
        after a row's end): what the candidate attends to. Call it in eval mode (Dice's statistics)."""
        embeddings, keys, row = self.behaviours(batch)
        _, weights = self.unit.ragged(embeddings[:, self._source], keys, row)  # (nnz,)
        return padded(weights, row, len(embeddings))[0]  # (B, T)

    def head(self, first: Tensor, embeddings: Tensor, dense: Tensor | None) -> Tensor:
        raise ConfigError("DIN's logit needs the behaviour sequence, not only the field embeddings", where="DIN.head",
                          fix="score rows with predict(batch)")

    def side(self, history: Interactions, side: str, index: Tensor | None = None) -> SideParts:
        """``CTRModel.side``; the user side also carries each user's behaviours (a :class:`BehaviourSide`)."""
        parts = super().side(history, side, index)
        if side != "user":
            return parts
        _, keys, row = self.behaviours(self.side_batch(history, side, index)[0])  # (nnz, D), (nnz,)
        keys, mask = padded(keys, row, len(parts.first))  # (n, T, D), (n, T)
        return BehaviourSide(parts.first, parts.embeddings, parts.dense, keys, mask)

    def pair_logits(self, user: SideParts, item: SideParts, cols: Tensor, chunk_size: int = CHUNK_SIZE) -> Tensor:
        """Logits ``(B, C)`` of user ``b`` with item row ``cols[b, c]`` (or ``cols[c]``): ``predict`` of every pair. The
        DNN's first layer runs once per side (``W [u; i; interest] = W u + W i + W interest``), the unit on the tiles."""
        if not isinstance(user, BehaviourSide) or user.keys is None:
            raise ConfigError("DIN ranks users from their behaviours", where="DIN.pair_logits",
                              fix="build the user side with DIN.side(history, 'user')")
        first_layer, rest = self.dnn.layers[0], self.dnn.layers[1:]
        width = user.embeddings.shape[1] * self.embedding_dim
        w_fields, w_interest, w_dense = first_layer.weight.split([width, self.embedding_dim, self.num_dense])
        hidden_user = user.embeddings.flatten(1) @ w_fields + user.dense @ w_dense  # (B, H)
        hidden_item = torch.addmm(first_layer.bias, item.embeddings.flatten(1), w_fields) + item.dense @ w_dense  # (M, H)
        query = item.embeddings[:, self._source]  # (M, D): the candidate's item embedding
        out = user.first.new_empty(len(user.first), cols.shape[-1])
        per_pair = user.keys.shape[1] * max(self.embedding_dim, *self.attention_dims[:1], 1)  # the (b, c, T, .) grids
        for rows, columns, items in tiles(len(out), cols, per_pair, chunk_size):
            interest = self.unit.grid(query[items], user.keys[rows], user.mask[rows])  # (b, c, D)
            hidden = hidden_user[rows].unsqueeze(1) + hidden_item[items] + interest @ w_interest  # (b, c, H)
            out[rows, columns] = rest(hidden.flatten(0, 1)).view(rows.stop - rows.start, -1)
        return out


def padded(values: Tensor, row: Tensor, num_rows: int) -> tuple[Tensor, Tensor]:
    """Ragged ``values (nnz, ...)`` of rows ``row (nnz,)`` (sorted) as ``(num_rows, T, ...)``, zero after each row's end,
    and the mask ``(num_rows, T)``; ``T`` the longest row (at least 1)."""
    lengths = torch.bincount(row, minlength=num_rows)  # (n,)
    slot = torch.arange(len(row), device=row.device) - (torch.cumsum(lengths, 0) - lengths).index_select(0, row)
    width = max(int(lengths.max()) if len(row) else 0, 1)
    out = values.new_zeros(num_rows, width, *values.shape[1:]).index_put((row, slot), values)
    mask = torch.zeros(num_rows, width, dtype=torch.bool, device=row.device).index_put((row, slot), row.new_ones(()).bool())
    return out, mask  # (n, T, ...), (n, T)
