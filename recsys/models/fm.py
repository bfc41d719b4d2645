"""Factorization machine (Rendle 2010) for CTR: first-order weights plus all pairwise field interactions."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.data.features import FeaturePipeline
from recsys.data.fields import FieldSpec
from recsys.models.logistic import CTRModel
from recsys.nn.fm import FMInteraction

__all__ = ["FM"]


class FM(CTRModel):
    """``logit = bias + sum_i w_i + sum_{i<j} <v_i, v_j>`` over the row's fields, the pairwise sum in O(F D).

    Multi-valued fields (genres) enter as one pooled vector each; dense features only in the linear term.

    >>> model = FM(embedding_dim=4)
    >>> model.build([FieldSpec("user", 10), FieldSpec("item", 20)])
    >>> batch = {"ids": torch.tensor([[1, 2], [3, 4]]), "labels": torch.tensor([1.0, 0.0])}
    >>> model.predict(batch).shape
    torch.Size([2])
    """

    def __init__(self, features: FeaturePipeline | None = None, embedding_dim: int = 16, sparse: bool = True,
                 init_std: float = 1e-2) -> None:
        super().__init__(features, embedding_dim=embedding_dim, sparse=sparse, init_std=init_std)
        self.interaction = FMInteraction()

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        first, embeddings = self.embed(batch)  # (B,), (B, F, D)
        return first + self.interaction(embeddings)  # (B,)
