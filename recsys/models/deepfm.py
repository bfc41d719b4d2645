"""DeepFM (Guo et al. 2017): an FM and a DNN side by side, reading the same field embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from recsys.data.features import FeaturePipeline
from recsys.data.fields import FieldSpec
from recsys.models.logistic import CTRModel
from recsys.nn.fm import FMInteraction
from recsys.nn.mlp import MLP

__all__ = ["DeepFM"]


class DeepFM(CTRModel):
    """``logit = first order + FM(v) + DNN([v_1; ...; v_F; dense])``, one embedding table shared by FM and DNN.

    The shared embeddings are the paper's point: the DNN learns high-order interactions from the same
    vectors the FM uses for the second-order ones, with no pre-training. Tables get sparse gradients
    (train them with a sparse optimizer, the DNN with a dense one: ``CombinedOptimizer``).

    >>> model = DeepFM(embedding_dim=4, hidden_dims=(8,))
    >>> model.build([FieldSpec("user", 10), FieldSpec("genres", 5, pooling="mean")])
    >>> batch = {"ids": torch.tensor([[1], [2]]), "bag_values": torch.tensor([0, 3, 4]),
    ...          "bag_offsets": torch.tensor([0, 2, 3]), "labels": torch.tensor([1.0, 0.0])}
    >>> model.predict(batch).shape, model.loss(batch).requires_grad
    (torch.Size([2]), True)
    """

    def __init__(self, features: FeaturePipeline | None = None, embedding_dim: int = 16,
                 hidden_dims: Sequence[int] = (256, 128), dropout: float = 0.0, batch_norm: bool = False,
                 activation: str = "relu", sparse: bool = True, init_std: float = 1e-2) -> None:
        self.hidden_dims, self.dropout, self.batch_norm, self.activation = tuple(hidden_dims), dropout, batch_norm, activation
        super().__init__(features, embedding_dim=embedding_dim, sparse=sparse, init_std=init_std)
        self.interaction = FMInteraction()

    def build_head(self, num_fields: int, num_dense: int) -> None:
        self.dnn = MLP(num_fields * self.embedding_dim + num_dense, self.hidden_dims, out_dim=1,
                       activation=self.activation, dropout=self.dropout, batch_norm=self.batch_norm)

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        first, embeddings = self.embed(batch)  # (B,), (B, F, D)
        deep_input = embeddings.flatten(1)  # (B, F * D)
        if self.num_dense:
            deep_input = torch.cat([deep_input, batch["dense"]], 1)  # (B, F * D + F_dense)
        return first + self.interaction(embeddings) + self.dnn(deep_input).squeeze(-1)  # (B,)
