"""DIN, Deep Interest Network (Zhou et al. 2018): the candidate item attends over the user's behaviour sequence."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.data.features import FeaturePipeline
from recsys.errors import ConfigError, DataError
from recsys.models.logistic import CHUNK_SIZE, CTRModel, SideParts
from recsys.nn.interest import LocalActivationUnit
from recsys.nn.mlp import MLP

__all__ = ["DIN"]


class DIN(CTRModel):
    """``logit = DNN([v_1; ...; v_F; sum_t a(e_c, e_t) e_t; dense])``: the field embeddings (the candidate item's
    ``e_c`` among them), the behaviours ``e_t`` pooled by a local activation unit ``a`` (an MLP over
    ``[e_c, e_t, e_c - e_t, e_c * e_t]``, weights unnormalized unless ``softmax``), and the dense features.

    The behaviours are the ``history`` :class:`~recsys.data.features.SequenceFeature` of the fitted pipeline: rows of
    its source field (the item), read from that field's rows of the fused table, so candidate and behaviours share
    one embedding per item (and one sparse gradient). No first-order term (as DeepCTR's DIN); ``activation`` is the
    DNN's, ``attention_activation`` the unit's (``dice`` as the paper, ``prelu``, ``relu``, ...).

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
        lengths = torch.bincount(row, minlength=len(embeddings))  # (B,)
        slot = torch.arange(len(row), device=row.device) - (torch.cumsum(lengths, 0) - lengths).index_select(0, row)
        out = weights.new_zeros(len(embeddings), max(int(lengths.max()) if len(row) else 0, 1))
        return out.index_put((row, slot), weights)  # (B, T)

    def head(self, first: Tensor, embeddings: Tensor, dense: Tensor | None) -> Tensor:
        raise ConfigError("DIN's logit needs the behaviour sequence, not only the field embeddings", where="DIN.head",
                          fix="score rows with predict(batch)")

    def pair_logits(self, user: SideParts, item: SideParts, cols: Tensor, chunk_size: int = CHUNK_SIZE) -> Tensor:
        raise ConfigError("DIN does not rank the whole catalogue yet (each candidate attends over the history)",
                          where="DIN.score_users", fix="score (user, candidate) rows with predict(batch) and eval=ctr")
