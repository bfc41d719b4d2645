"""BPR-MF (Rendle et al. 2009): matrix factorization trained with Bayesian personalized ranking."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.errors import ConfigError
from recsys.models.base import Recommender

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions


class BPRMF(Recommender):
    """User and item embeddings, score = user . item + item bias, BPR loss on sampled negatives.

    The loss of a batch is ``-mean(log sigmoid(x_ui - x_uj)) + reg * ||batch rows||^2 / B`` over each
    positive ``i`` and each of its sampled negatives ``j``.

    >>> model = BPRMF(num_users=4, num_items=6, embedding_dim=8)
    >>> batch = {"users": torch.tensor([0, 1]), "items": torch.tensor([2, 3]), "negatives": torch.tensor([[4], [5]])}
    >>> model.loss(batch).shape, model.score_users(torch.tensor([0, 1, 2]), history=None).shape
    (torch.Size([]), torch.Size([3, 6]))
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        reg: float = 0.0,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (("num_users", num_users), ("num_items", num_items), ("embedding_dim", embedding_dim)):
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}", where="BPRMF", fix=f"set model.module.{name} > 0")
        if reg < 0:
            raise ConfigError(f"reg must be >= 0, got {reg}", where="BPRMF", fix="set model.module.reg >= 0")
        self.num_users, self.num_items, self.embedding_dim, self.reg = num_users, num_items, embedding_dim, reg
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.item_embedding = nn.Embedding(num_items, embedding_dim)
        self.item_bias = nn.Embedding(num_items, 1)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)
        nn.init.zeros_(self.item_bias.weight)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        users, positives, negatives = batch["users"], batch["items"], batch["negatives"]
        if negatives.dim() == 1:
            negatives = negatives.unsqueeze(1)
        user = self.user_embedding(users)  # (B, D)
        positive = self.item_embedding(positives)  # (B, D)
        negative = self.item_embedding(negatives)  # (B, S, D)
        positive_score = (user * positive).sum(-1) + self.item_bias(positives).squeeze(-1)  # (B,)
        negative_score = torch.einsum("bd,bsd->bs", user, negative) + self.item_bias(negatives).squeeze(-1)  # (B, S)
        loss = -F.logsigmoid(positive_score.unsqueeze(1) - negative_score).mean()
        if self.reg > 0:
            norms = user.pow(2).sum() + positive.pow(2).sum() + negative.pow(2).sum() / negative.shape[1]
            loss = loss + self.reg * norms / users.shape[0]
        return loss

    def score_users(self, users: Tensor, history: Interactions | None) -> Tensor:
        user = self.user_embedding(users)  # (B, D)
        return user @ self.item_embedding.weight.T + self.item_bias.weight.T  # (B, N)
