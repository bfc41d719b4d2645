"""BPR-MF (Rendle et al. 2009): matrix factorization trained with Bayesian personalized ranking."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.embeddings.sparse_optim import mark_sparse
from recsys.errors import ConfigError
from recsys.models.als import keyed
from recsys.models.base import Recommender, check_candidates, check_indices
from recsys.nn.pairwise import bpr_loss

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.data.vocabulary import Vocabulary
    from recsys.embeddings.keyed_vectors import KeyedVectors

_REDUCTIONS = ("mean", "sum")


class BPRMF(Recommender):
    """User and item embeddings, score = user . item + item bias, BPR loss on sampled negatives.

    Each (user ``u``, positive ``i``, sampled negative ``j``) pair costs
    ``-log sigmoid(x_ui - x_uj) + reg * (||u||^2 + ||i||^2 + b_i^2 + ||j||^2 + b_j^2)`` (``b`` the item bias); the batch loss is the ``mean`` or
    the ``sum`` of the pair costs (``reduction``).

    Two ways to train it (both set in ``conf/model/bpr*.yaml``):

    - dense tables, ``reduction="mean"`` and Adam (the default);
    - ``sparse=True`` tables (sparse gradients, marked for :class:`~recsys.embeddings.CombinedOptimizer`),
      ``reduction="sum"`` and :class:`~recsys.embeddings.SparseSGD`: each pair moves its three rows by
      ``lr`` times its own gradient, as in ``implicit``'s per-sample SGD, but for a whole batch at once.
      Cheap steps touching only the batch's rows allow large batches and many epochs.

    >>> model = BPRMF(num_users=4, num_items=6, embedding_dim=8)
    >>> batch = {"users": torch.tensor([0, 1]), "items": torch.tensor([2, 3]), "negatives": torch.tensor([[4], [5]])}
    >>> model.loss(batch).shape, model.score_users(torch.tensor([0, 1, 2]), history=None).shape
    (torch.Size([]), torch.Size([3, 6]))
    >>> sparse = BPRMF(num_users=4, num_items=6, embedding_dim=8, sparse=True, reduction="sum")
    >>> sparse.loss(batch).backward(); sparse.item_embedding.weight.grad.is_sparse
    True

    New users are folded in (``recsys.training.fold_in``): ``user_embedding`` refit on pairwise batches.
    """

    user_tables = ("user_embedding",)
    fold_in_batches = "pairwise"

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        reg: float = 0.0,
        init_std: float = 0.1,
        sparse: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        for name, value in (("num_users", num_users), ("num_items", num_items), ("embedding_dim", embedding_dim)):
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}", where="BPRMF", fix=f"set model.module.{name} > 0")
        if reg < 0:
            raise ConfigError(f"reg must be >= 0, got {reg}", where="BPRMF", fix="set model.module.reg >= 0")
        if reduction not in _REDUCTIONS:
            raise ConfigError(f"unknown reduction {reduction!r}", where="BPRMF", fix=f"set model.module.reduction to one of {_REDUCTIONS}")
        self.num_users, self.num_items, self.embedding_dim, self.reg = num_users, num_items, embedding_dim, reg
        self.sparse, self.reduction, self.init_std = sparse, reduction, init_std
        self.user_embedding = nn.Embedding(num_users, embedding_dim, sparse=sparse)
        self.item_embedding = nn.Embedding(num_items, embedding_dim, sparse=sparse)
        self.item_bias = nn.Embedding(num_items, 1, sparse=sparse)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)
        nn.init.zeros_(self.item_bias.weight)
        if sparse:
            for table in (self.user_embedding, self.item_embedding, self.item_bias):
                mark_sparse(table.weight)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        users, positives, negatives = batch["users"], batch["items"], batch["negatives"]
        if negatives.dim() == 1:
            negatives = negatives.unsqueeze(1)
        items = torch.cat([positives.unsqueeze(1), negatives], dim=1)  # (B, 1+S): positive, then negatives
        if not self.sparse and not torch.is_autocast_enabled(users.device.type):  # one node, gradients by hand
            return bpr_loss(self.user_embedding.weight, self.item_embedding.weight, self.item_bias.weight, users, items,
                            self.reg, self.reduction)
        user = self.user_embedding(users)  # (B, D)
        item = self.item_embedding(items)  # (B, 1+S, D)
        bias = self.item_bias(items).squeeze(-1)  # (B, 1+S)
        score = (user.unsqueeze(1) * item).sum(-1) + bias  # (B, 1+S); cheaper than a bmm of 1 x D rows
        pair = -F.logsigmoid(score[:, :1] - score[:, 1:])  # (B, S)
        if self.reg > 0:  # the bias too: unregularized, summed steps inflate popular items' biases
            norms = item.pow(2).sum(-1) + bias.pow(2)  # (B, 1+S)
            pair = pair + self.reg * (user.pow(2).sum(-1, keepdim=True) + norms[:, :1] + norms[:, 1:])  # (B, S)
        return pair.sum() if self.reduction == "sum" else pair.mean()

    def score_users(self, users: Tensor, history: Interactions | None) -> Tensor:
        check_indices(users, self.num_users, "users", "BPRMF.score_users")
        user = self.user_embedding(users)  # (B, D)
        return user @ self.item_embedding.weight.T + self.item_bias.weight.T  # (B, N)

    def score_vectors(self, users: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Users with a column of ones, items with their bias: ``user . item + bias`` as one inner product."""
        user, item = self.user_embedding.weight.detach(), self.item_embedding.weight.detach()
        user = user if users is None else user[users]
        ones = torch.ones(len(user), 1, device=user.device, dtype=user.dtype)
        return torch.cat([user, ones], 1), torch.cat([item, self.item_bias.weight.detach()], 1)  # (U, D+1), (N, D+1)

    def score_items(self, users: Tensor, items: Tensor, history: Interactions | None) -> Tensor:
        check_indices(users, self.num_users, "users", "BPRMF.score_items")
        items = check_candidates(users, items, self.num_items, "BPRMF.score_items")  # (B, C)
        user = self.user_embedding(users).unsqueeze(2)  # (B, D, 1)
        return torch.bmm(self.item_embedding(items), user).squeeze(2) + self.item_bias(items).squeeze(2)  # (B, C)

    def user_embeddings(self, users: Vocabulary) -> KeyedVectors:
        """User vectors keyed by original user id (``data.users``)."""
        return keyed(users, self.user_embedding.weight)

    def item_embeddings(self, items: Vocabulary) -> KeyedVectors:
        """Item vectors keyed by original item id (``data.items``): the vectors only, without the item bias
        (score = user . item + bias, so ``user_embeddings . item_embeddings`` ranks up to the bias)."""
        return keyed(items, self.item_embedding.weight)
