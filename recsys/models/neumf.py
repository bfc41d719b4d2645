"""NeuMF (He et al. 2017, "Neural Collaborative Filtering"): GMF and MLP towers fused by one output layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.errors import ConfigError
from recsys.models.als import keyed
from recsys.models.base import Recommender, check_candidates, check_indices

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.data.vocabulary import Vocabulary
    from recsys.embeddings.keyed_vectors import KeyedVectors

_MODES = ("neumf", "gmf", "mlp")


class MLPTower(nn.Module):
    """``relu(W [p_u; q_i] + b)`` then more ReLU layers; the first layer is split in a user and an item half
    so full ranking adds two precomputed projections instead of concatenating every (user, item) pair."""

    def __init__(self, dim: int, layers: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.user_in = nn.Linear(dim, layers[0])
        self.item_in = nn.Linear(dim, layers[0], bias=False)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(layers[:-1], layers[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, user: Tensor, item: Tensor) -> Tensor:  # (..., D) each, broadcastable
        h = self.dropout(F.relu(self.user_in(user) + self.item_in(item)))  # (..., L0)
        for layer in self.hidden:
            h = self.dropout(F.relu(layer(h)))
        return h  # (..., L_last)


class NeuMF(Recommender):
    """GMF (``p_u * q_i``) and MLP towers with separate embeddings, concatenated into one logit.

    ``mode="gmf"`` or ``"mlp"`` trains one tower alone (the paper's pretraining); :meth:`load_pretrained`
    initializes the fused model from two such models, the output layer weighted ``alpha`` / ``1 - alpha``
    (reading their checkpoints is ``recsys.training.pretrained.NeuMFPretrained``'s job). Trained with binary
    cross-entropy on each positive and its sampled negatives (batches of ``PairwiseBatches``).

    >>> model = NeuMF(num_users=4, num_items=6, gmf_dim=4, mlp_dim=4, layers=(8, 4))
    >>> batch = {"users": torch.tensor([0, 1]), "items": torch.tensor([2, 3]), "negatives": torch.tensor([[4], [5]])}
    >>> model.loss(batch).shape, model.score_users(torch.tensor([0, 1, 2]), history=None).shape
    (torch.Size([]), torch.Size([3, 6]))

    New users are folded in (``recsys.training.fold_in``): both towers' user tables refit on pairwise batches.
    """

    user_tables = ("gmf_user", "mlp_user")
    fold_in_batches = "pairwise"

    def __init__(
        self,
        num_users: int,
        num_items: int,
        gmf_dim: int = 32,
        mlp_dim: int = 32,
        layers: Sequence[int] = (64, 32, 16),
        dropout: float = 0.0,
        mode: str = "neumf",
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        layers = list(layers)
        for name, value in (("num_users", num_users), ("num_items", num_items), ("gmf_dim", gmf_dim), ("mlp_dim", mlp_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive int, got {value!r}", where="NeuMF", fix=f"set model.module.{name} > 0")
        if not layers or any(int(n) <= 0 for n in layers):
            raise ConfigError(f"layers must be positive sizes, got {layers}", where="NeuMF", fix="e.g. layers: [64, 32, 16]")
        if mode not in _MODES or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"invalid mode={mode!r} or dropout={dropout}", where="NeuMF", fix=f"mode in {_MODES}, 0 <= dropout < 1")
        self.num_users, self.num_items, self.mode = num_users, num_items, mode
        self.gmf_dim, self.mlp_dim, self.layers, self.dropout = gmf_dim, mlp_dim, layers, dropout
        self.init_std = init_std
        self.gmf_user = nn.Embedding(num_users, gmf_dim)
        self.gmf_item = nn.Embedding(num_items, gmf_dim)
        self.mlp_user = nn.Embedding(num_users, mlp_dim)
        self.mlp_item = nn.Embedding(num_items, mlp_dim)
        self.mlp = MLPTower(mlp_dim, layers, dropout)
        width = {"neumf": gmf_dim + layers[-1], "gmf": gmf_dim, "mlp": layers[-1]}[mode]
        self.head = nn.Linear(width, 1)
        for table in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(table.weight, std=init_std)
        if mode == "gmf":  # an unused tower would only waste optimizer steps
            self.mlp.requires_grad_(False)
            self.mlp_user.requires_grad_(False)
            self.mlp_item.requires_grad_(False)
        elif mode == "mlp":
            self.gmf_user.requires_grad_(False)
            self.gmf_item.requires_grad_(False)

    def logits(self, users: Tensor, items: Tensor) -> Tensor:
        """Logits of (user, item) pairs; ``items`` (B,) or (B, S) -> same shape."""
        expand = items.dim() == 2
        parts = []
        if self.mode != "mlp":
            user = self.gmf_user(users)  # (B, D)
            parts.append((user.unsqueeze(1) if expand else user) * self.gmf_item(items))  # (B[, S], D)
        if self.mode != "gmf":
            user = self.mlp_user(users)
            parts.append(self.mlp(user.unsqueeze(1) if expand else user, self.mlp_item(items)))  # (B[, S], L)
        return self.head(torch.cat(parts, dim=-1)).squeeze(-1)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        users, positives, negatives = batch["users"], batch["items"], batch["negatives"]
        if negatives.dim() == 1:
            negatives = negatives.unsqueeze(1)
        items = torch.cat([positives.unsqueeze(1), negatives], dim=1)  # (B, 1 + S)
        labels = torch.zeros_like(items, dtype=torch.float32)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(self.logits(users, items), labels)

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        check_indices(batch["users"], self.num_users, "users", "NeuMF.predict")
        check_indices(batch["items"], self.num_items, "items", "NeuMF.predict")
        return self.logits(batch["users"], batch["items"])

    def score_users(self, users: Tensor, history: Interactions | None) -> Tensor:
        check_indices(users, self.num_users, "users", "NeuMF.score_users")
        weight, bias = self.head.weight.squeeze(0), self.head.bias  # (width,), (1,)
        scores = bias.expand(users.shape[0], self.num_items).clone()  # (B, N)
        if self.mode != "mlp":
            gmf_w = weight[: self.gmf_dim]
            scores += (self.gmf_user(users) * gmf_w) @ self.gmf_item.weight.T  # (B, N)
        if self.mode != "gmf":
            mlp_w = weight[-self.layers[-1] :]
            user_proj = self.mlp.user_in(self.mlp_user(users))  # (B, L0)
            item_proj = self.mlp.item_in(self.mlp_item.weight)  # (N, L0)
            step = max(1, (1 << 24) // (self.num_items * self.layers[0]))  # bound (b, N, L0) memory
            for start in range(0, users.shape[0], step):  # chunks of users, not one user at a time
                h = F.relu(user_proj[start : start + step, None, :] + item_proj)  # (b, N, L0)
                for layer in self.mlp.hidden:
                    h = F.relu(layer(h))
                scores[start : start + step] += h @ mlp_w  # (b, N)
        return scores

    def score_items(self, users: Tensor, items: Tensor, history: Interactions | None) -> Tensor:
        check_indices(users, self.num_users, "users", "NeuMF.score_items")
        return self.logits(users, check_candidates(users, items, self.num_items, "NeuMF.score_items"))  # (B, C)

    # pretraining (Section 3.4.1 of the paper) --------------------------------------------------------
    def tower(self, mode: str) -> NeuMF:
        """A fresh ``mode="gmf"`` or ``"mlp"`` model of this model's sizes, to load a pretraining run's weights into."""
        if mode not in ("gmf", "mlp"):
            raise ConfigError(f"a tower is mode gmf or mlp, not {mode!r}", where="NeuMF.tower")
        return NeuMF(self.num_users, self.num_items, self.gmf_dim, self.mlp_dim, self.layers, mode=mode)

    def load_pretrained(self, gmf: NeuMF, mlp: NeuMF, alpha: float = 0.5) -> None:
        """Copy the towers of a trained ``mode="gmf"`` and ``mode="mlp"`` model; head = [alpha h_gmf, (1-alpha) h_mlp]."""
        if gmf.mode != "gmf" or mlp.mode != "mlp" or self.mode != "neumf":
            raise ConfigError("load_pretrained needs a gmf-mode and an mlp-mode model into a neumf-mode one", where="NeuMF",
                              fix="pretrain with model.module.mode=gmf and mode=mlp, then fit mode=neumf")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha}", where="NeuMF.load_pretrained", fix="e.g. alpha=0.5 (the paper's)")
        with torch.no_grad():
            self.gmf_user.load_state_dict(gmf.gmf_user.state_dict())
            self.gmf_item.load_state_dict(gmf.gmf_item.state_dict())
            self.mlp_user.load_state_dict(mlp.mlp_user.state_dict())
            self.mlp_item.load_state_dict(mlp.mlp_item.state_dict())
            self.mlp.load_state_dict(mlp.mlp.state_dict())
            self.head.weight.copy_(torch.cat([alpha * gmf.head.weight, (1 - alpha) * mlp.head.weight], dim=1))
            self.head.bias.copy_(alpha * gmf.head.bias + (1 - alpha) * mlp.head.bias)

    def user_embeddings(self, users: Vocabulary) -> KeyedVectors:
        """``[gmf | mlp]`` user embeddings keyed by original user id."""
        return keyed(users, torch.cat([self.gmf_user.weight, self.mlp_user.weight], dim=1))

    def item_embeddings(self, items: Vocabulary) -> KeyedVectors:
        """``[gmf | mlp]`` item embeddings keyed by original item id."""
        return keyed(items, torch.cat([self.gmf_item.weight, self.mlp_item.weight], dim=1))
