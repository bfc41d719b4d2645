"""Biased matrix factorization for explicit ratings (Koren, Bell & Volinsky 2009; Surprise's SVD)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from recsys.errors import ConfigError, DataError
from recsys.models.als import keyed
from recsys.models.base import Recommender, check_candidates, check_indices

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.data.vocabulary import Vocabulary
    from recsys.embeddings.keyed_vectors import KeyedVectors


class BiasedMF(Recommender):
    """Rating = global mean + user bias + item bias + ``p_u . q_i``; MSE with L2 on the batch's rows.

    The loss of a batch is ``mean((r - r_hat)^2) + reg * mean(||p_u||^2 + ||q_i||^2)
    + bias_reg * mean(b_u^2 + b_i^2)``. ``prepare`` sets the global mean and the rating range;
    ``predict`` clips to that range when ``clip`` (as Surprise does).

    >>> model = BiasedMF(num_users=3, num_items=4, embedding_dim=2)
    >>> batch = {"users": torch.tensor([0, 2]), "items": torch.tensor([1, 3]), "ratings": torch.tensor([4.0, 1.0])}
    >>> model.loss(batch).shape, model.predict(batch).shape, model.score_users(torch.tensor([0]), None).shape
    (torch.Size([]), torch.Size([2]), torch.Size([1, 4]))

    New users are folded in (``recsys.training.fold_in``): ``p_u`` and ``b_u`` refit on their ratings.
    """

    user_tables = ("user_embedding", "user_bias")
    fold_in_batches = "ratings"

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        reg: float = 0.05,
        bias_reg: float = 0.0,
        init_std: float = 0.01,
        clip: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("num_users", num_users), ("num_items", num_items), ("embedding_dim", embedding_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive int, got {value!r}", where="BiasedMF", fix=f"set model.module.{name} > 0")
        if reg < 0 or bias_reg < 0:
            raise ConfigError(f"reg and bias_reg must be >= 0, got {reg}, {bias_reg}", where="BiasedMF")
        self.num_users, self.num_items, self.embedding_dim = num_users, num_items, embedding_dim
        self.reg, self.bias_reg, self.clip, self.init_std = reg, bias_reg, clip, init_std
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.item_embedding = nn.Embedding(num_items, embedding_dim)
        self.user_bias = nn.Embedding(num_users, 1)
        self.item_bias = nn.Embedding(num_items, 1)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.register_buffer("global_mean", torch.zeros(()))
        self.register_buffer("rating_range", torch.tensor([float("-inf"), float("inf")]))

    def prepare(self, train: Interactions, generator: torch.Generator | None = None) -> None:
        if not train.has_ratings:
            raise DataError(
                f"dataset {train.name!r} has no ratings: BiasedMF is an explicit-feedback model",
                where="BiasedMF.prepare",
                fix="use a dataset with ratings (e.g. ml-100k), or an implicit model (bpr, als, ease, neumf)",
            )
        if train.num_interactions == 0:
            raise DataError("the training split has no ratings", where=f"BiasedMF.prepare({train.name!r})")
        ratings = train.ratings.float()
        self.global_mean.fill_(ratings.mean().item())
        self.rating_range.copy_(torch.stack([ratings.min(), ratings.max()]))

    def _raw(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        p, q = self.user_embedding(users), self.item_embedding(items)  # (B, D)
        bu, bi = self.user_bias(users).squeeze(-1), self.item_bias(items).squeeze(-1)  # (B,)
        return self.global_mean + bu + bi + (p * q).sum(-1), p, q, bu, bi

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        pred, p, q, bu, bi = self._raw(batch["users"], batch["items"])
        loss = (pred - batch["ratings"].to(pred.dtype)).square().mean()
        if self.reg > 0:
            loss = loss + self.reg * (p.square().sum(-1) + q.square().sum(-1)).mean()
        if self.bias_reg > 0:
            loss = loss + self.bias_reg * (bu.square() + bi.square()).mean()
        return loss

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        check_indices(batch["users"], self.num_users, "users", "BiasedMF.predict")
        check_indices(batch["items"], self.num_items, "items", "BiasedMF.predict")
        pred = self._raw(batch["users"], batch["items"])[0]  # (B,)
        return pred.clamp(*self.rating_range.tolist()) if self.clip else pred

    def score_users(self, users: Tensor, history: Interactions | None) -> Tensor:
        check_indices(users, self.num_users, "users", "BiasedMF.score_users")
        user = self.user_embedding(users)  # (B, D)
        scores = user @ self.item_embedding.weight.T + self.item_bias.weight.T + self.user_bias(users)  # (B, N)
        return scores + self.global_mean

    def score_items(self, users: Tensor, items: Tensor, history: Interactions | None) -> Tensor:
        check_indices(users, self.num_users, "users", "BiasedMF.score_items")
        items = check_candidates(users, items, self.num_items, "BiasedMF.score_items")  # (B, C)
        user = self.user_embedding(users).unsqueeze(2)  # (B, D, 1)
        scores = torch.bmm(self.item_embedding(items), user).squeeze(2) + self.item_bias(items).squeeze(2)  # (B, C)
        return scores + self.user_bias(users) + self.global_mean

    def user_embeddings(self, users: Vocabulary) -> KeyedVectors:
        """User factors ``p_u`` keyed by original user id."""
        return keyed(users, self.user_embedding.weight)

    def item_embeddings(self, items: Vocabulary) -> KeyedVectors:
        """Item factors ``q_i`` keyed by original item id."""
        return keyed(items, self.item_embedding.weight)
