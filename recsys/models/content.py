"""Content-based recommender: items scored by text similarity to the user's history (cold-start ready)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.errors import ConfigError, DataError
from recsys.models.als import keyed
from recsys.models.base import Recommender, check_indices

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.data.vocabulary import Vocabulary
    from recsys.embeddings.keyed_vectors import KeyedVectors


class ContentRecommender(Recommender):
    """Score = cosine between an item's vector and the mean of the user's history item vectors.

    The model holds one L2-normalized vector per item (the ``item_vectors`` buffer, ``(N, D)``, in
    ``state_dict``), so items never seen in training are scored like any other. It computes no
    vectors itself: ``set_item_vectors`` plugs them in, from an engine
    (:class:`recsys.training.text_vectors.ItemTextEngine` encodes the item texts) or precomputed
    (e.g. an MLM encoder trained from scratch).

    >>> model = ContentRecommender(num_items=3)
    >>> model.set_item_vectors(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]))
    >>> model.profile_scores(torch.tensor([[1.0, 0.0, 0.0]])).argsort(descending=True).tolist()
    [[0, 1, 2]]

    A user is read only through ``history`` (``reads_history``): new users are scored from their items.
    """

    reads_history = True

    def __init__(self, num_items: int) -> None:
        super().__init__()
        if num_items <= 0:
            raise ConfigError(f"num_items must be positive, got {num_items}", where="ContentRecommender")
        self.num_items = num_items
        self.register_buffer("item_vectors", torch.zeros(num_items, 0))  # (N, D); D = 0 until set
        self._profiles: tuple[Interactions, Tensor] | None = None  # (history, (U, D) profiles)

    def set_item_vectors(self, vectors: Tensor) -> None:
        """Use ``vectors`` ``(num_items, D)`` (row = item index) as the item table; rows are L2-normalized."""
        if vectors.dim() != 2 or vectors.shape[0] != self.num_items:
            raise DataError(f"item vectors {tuple(vectors.shape)} need {self.num_items} rows", where="ContentRecommender.set_item_vectors",
                            fix="pass one row per item index")
        self.item_vectors = F.normalize(vectors.detach().float(), dim=1).to(self.item_vectors.device)
        self._profiles = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        saved = state_dict.get(prefix + "item_vectors")
        if saved is not None and saved.dim() == 2 and saved.shape[0] == self.num_items:
            self.item_vectors = torch.empty_like(saved, device=self.item_vectors.device)  # take the saved width D
            self._profiles = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, *args, **kwargs):
        self._profiles = None  # cached profiles live on the old device / dtype
        return super()._apply(*args, **kwargs)

    def profile_scores(self, history_rows: Tensor) -> Tensor:
        """Scores ``(B, N)`` for users given as item-weight rows ``(B, N)`` (1 = in history)."""
        profile = F.normalize(history_rows.to(self.item_vectors) @ self.item_vectors, dim=1)  # (B, D)
        return profile @ self.item_vectors.T  # (B, N)

    def score_users(self, users: Tensor, history: Interactions) -> Tensor:
        check_indices(users, history.num_users, "users", "ContentRecommender.score_users")
        if self.item_vectors.shape[1] == 0:
            raise DataError("no item vectors", where="ContentRecommender.score_users",
                            fix="fit it with recsys.training.text_vectors.ItemTextEngine (model=content) or call set_item_vectors")
        if self._profiles is None or self._profiles[0] is not history:  # all users' profiles once per history
            matrix = history.user_item_matrix().to(self.item_vectors.device).to(self.item_vectors.dtype)  # CSR (U, N)
            self._profiles = (history, F.normalize(matrix @ self.item_vectors, dim=1))  # (U, D)
        profile = self._profiles[1][users.to(self.item_vectors.device)]  # (B, D)
        return profile @ self.item_vectors.T  # (B, N)

    def item_embeddings(self, items: Vocabulary) -> KeyedVectors:
        """The (L2-normalized) item vectors keyed by original item id (``data.items``)."""
        if self.item_vectors.shape[1] == 0:
            raise DataError("no item vectors", where="ContentRecommender.item_embeddings",
                            fix="fit it with recsys.training.text_vectors.ItemTextEngine (model=content) or call set_item_vectors")
        return keyed(items, self.item_vectors)
