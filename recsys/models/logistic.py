"""Logistic regression for CTR, and ``CTRModel``: the sparse arch FM and DeepFM build on.

Every categorical field gets one row of width ``1 + embedding_dim`` in a fused
:class:`~recsys.embeddings.EmbeddingCollection`: column 0 is the field value's first-order weight,
columns ``1:`` its embedding. One lookup (one ``embedding_bag`` call, sparse gradients) serves the
linear term and every interaction part that reads the embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.data.features import FeaturePipeline
from recsys.data.fields import FieldSpec
from recsys.embeddings.collection import EmbeddingCollection
from recsys.embeddings.config import EmbeddingField
from recsys.embeddings.jagged import KeyedJagged
from recsys.embeddings.specs import embedding_fields
from recsys.errors import ConfigError, DataError
from recsys.models.base import Recommender

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions

__all__ = ["CTRModel", "LogisticRegression"]


class CTRModel(Recommender):
    """Base of the CTR models: batches ``{"ids", "bag_values", "bag_offsets", "dense", "labels"}`` -> logits.

    Tables are sized by a FITTED ``features`` pipeline (the one the batches and the evaluator share; the
    caller fits it once on the training split) and built in ``__init__``; initial weights are drawn from
    the global torch RNG (seed it, or build inside ``torch.random.fork_rng``). Without a pipeline (libsvm
    data, pre-encoded ids) call ``build(fields, num_dense)`` with ``FieldSpec``s or ``EmbeddingField``s.
    Subclasses add parts in ``build_head`` and define ``predict``; the loss is binary cross-entropy on the logits.
    """

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
        self.bias = nn.Parameter(torch.zeros(1))
        self.embeddings: EmbeddingCollection | None = None
        self.dense_linear: nn.Linear | None = None
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

    def embed(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """First-order logit ``(B,)`` (bias + weights + dense linear) and the field embeddings ``(B, F, D)``."""
        if self.embeddings is None:
            raise ConfigError(f"{type(self).__name__} has no tables yet", where=f"{type(self).__name__}.embed",
                              fix="pass features=<a fitted FeaturePipeline> or call build(fields) before training or predicting")
        bags = None
        if self.embeddings.pooled_names:
            bags = KeyedJagged(self.embeddings.pooled_names, batch["bag_values"], batch["bag_offsets"])
        rows = self.embeddings(batch["ids"] if self.embeddings.single_names else None, bags)  # (B, F, 1 + D)
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

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        return F.binary_cross_entropy_with_logits(self.predict(batch), batch["labels"].float())


class LogisticRegression(CTRModel):
    """``logit = bias + sum of the first-order weights of the row's field values + w . dense``.

    >>> model = LogisticRegression()
    >>> model.build([FieldSpec("user", 10), FieldSpec("genres", 5, pooling="mean")])
    >>> batch = {"ids": torch.tensor([[1], [2]]), "bag_values": torch.tensor([0, 3, 4]),
    ...          "bag_offsets": torch.tensor([0, 2, 3]), "labels": torch.tensor([1.0, 0.0])}
    >>> model.predict(batch).shape, model.loss(batch).shape
    (torch.Size([2]), torch.Size([]))
    """

    def __init__(self, features: FeaturePipeline | None = None, sparse: bool = True, init_std: float = 1e-2) -> None:
        super().__init__(features, embedding_dim=0, sparse=sparse, init_std=init_std)

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        first, _ = self.embed(batch)
        return first  # (B,)
