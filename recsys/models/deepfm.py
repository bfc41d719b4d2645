"""DeepFM (Guo et al. 2017): an FM and a DNN side by side, reading the same field embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from recsys.data.features import FeaturePipeline
from recsys.data.fields import FieldSpec
from recsys.models.fm import fm_pair_logits
from recsys.models.logistic import CHUNK_SIZE, CTRModel, SideParts, grid, tiles
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

    def head(self, first: Tensor, embeddings: Tensor, dense: Tensor | None) -> Tensor:
        deep_input = embeddings.flatten(1)  # (B, F * D)
        if self.num_dense:
            deep_input = torch.cat([deep_input, dense], 1)  # (B, F * D + F_dense)
        return first + self.interaction(embeddings) + self.dnn(deep_input).squeeze(-1)  # (B,)

    def pair_logits(self, user: SideParts, item: SideParts, cols: Tensor, chunk_size: int = CHUNK_SIZE) -> Tensor:
        """FM part in closed form; the DNN's first layer is linear, so it runs once per side
        (``W [u; i] = W u + W i``) and only the layers above it see the ``(B x C)`` grid, in chunks."""
        fm = fm_pair_logits(self.interaction, user, item, cols, chunk_size)  # (B, C)
        first_layer, rest = self.dnn.layers[0], self.dnn.layers[1:]
        hidden_user = torch.cat([user.embeddings.flatten(1), user.dense], 1) @ first_layer.weight  # (B, H)
        hidden_item = torch.addmm(first_layer.bias, torch.cat([item.embeddings.flatten(1), item.dense], 1),
                                  first_layer.weight)  # (M, H)
        for rows, columns, items in tiles(len(fm), cols, max(self.hidden_dims, default=1), chunk_size):
            deep = rest(grid(hidden_user, hidden_item, rows, items))  # (b * c, 1)
            fm[rows, columns] += deep.view(rows.stop - rows.start, -1)
        return fm  # (B, C)
