"""Factorization machine (Rendle 2010) for CTR: first-order weights plus all pairwise field interactions."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.data.features import FeaturePipeline
from recsys.data.fields import FieldSpec
from recsys.models.logistic import CHUNK_SIZE, CTRModel, SideParts, tiles
from recsys.nn.fm import FMInteraction

__all__ = ["FM", "fm_pair_logits"]


def fm_pair_logits(interaction: FMInteraction, user: SideParts, item: SideParts, cols: Tensor,
                   chunk_size: int = CHUNK_SIZE) -> Tensor:
    """First order + FM over the ``(B, C)`` grid without building it: the pairwise sum of a row splits into
    user-user, item-item and user-item parts, ``FM(u) + FM(i) + <sum_f u_f, sum_f i_f>``."""
    per_user = user.first + interaction(user.embeddings)  # (B,)
    per_item = item.first + interaction(item.embeddings)  # (M,)
    user_sum, item_sum = user.embeddings.sum(1), item.embeddings.sum(1)  # (B, D), (M, D)
    if cols.dim() == 1:  # one candidate list for every user: one matmul
        cross = user_sum @ item_sum[cols].T  # (B, C)
    else:  # candidates per user: (b, c, D) tiles
        cross = per_user.new_empty(cols.shape)
        for rows, columns, items in tiles(len(cols), cols, user_sum.shape[1], chunk_size):
            cross[rows, columns] = (user_sum[rows].unsqueeze(1) * item_sum[items]).sum(-1)
    return per_user[:, None] + per_item[cols] + cross  # (B, C)


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

    def head(self, first: Tensor, embeddings: Tensor, dense: Tensor | None) -> Tensor:
        return first + self.interaction(embeddings)  # (B,)

    def pair_logits(self, user: SideParts, item: SideParts, cols: Tensor, chunk_size: int = CHUNK_SIZE) -> Tensor:
        return fm_pair_logits(self.interaction, user, item, cols, chunk_size)  # (B, C)
