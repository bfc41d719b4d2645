"""Content-based recommender: items scored by text similarity to the user's history (cold-start ready)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.errors import ConfigError, DataError
from recsys.models.base import Recommender

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions


class ContentRecommender(Recommender):
    """Score = cosine between an item's text embedding and the mean of the user's history item embeddings.

    ``prepare(train)`` encodes every item's text (``fields`` of ``train.item_features``) with the
    pretrained encoder in ``checkpoint`` (a Hugging Face directory; None = the bundled MiniLM), so
    items never seen in training are scored like any other. ``set_item_vectors`` plugs in
    precomputed vectors instead (e.g. from an MLM encoder trained from scratch).

    >>> model = ContentRecommender(num_items=3)
    >>> model.set_item_vectors(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]))
    >>> model.profile_scores(torch.tensor([[1.0, 0.0, 0.0]])).argsort(descending=True).tolist()
    [[0, 1, 2]]
    """

    def __init__(
        self,
        num_items: int,
        checkpoint: str | None = None,
        fields: Sequence[str] = ("title", "genres", "tags"),
        batch_size: int = 64,
        cache_dir: str | None = None,
        device: str = "auto",
        progress: bool = True,
    ) -> None:
        super().__init__()
        if num_items <= 0:
            raise ConfigError(f"num_items must be positive, got {num_items}", where="ContentRecommender")
        self.num_items, self.checkpoint, self.fields = num_items, checkpoint, tuple(fields)
        self.batch_size, self.cache_dir, self.device_name, self.progress = batch_size, cache_dir, device, progress
        self.register_buffer("item_vectors", torch.zeros(num_items, 0))
        self._profiles: tuple[int, Tensor] | None = None

    def set_item_vectors(self, vectors: Tensor) -> None:
        """Use ``vectors`` ``(num_items, D)`` (row = item index) as the item table; rows are L2-normalized."""
        if vectors.dim() != 2 or vectors.shape[0] != self.num_items:
            raise DataError(f"item vectors {tuple(vectors.shape)} need {self.num_items} rows", where="ContentRecommender.set_item_vectors",
                            fix="pass one row per item index")
        self.item_vectors = F.normalize(vectors.float(), dim=1).to(self.item_vectors.device)
        self._profiles = None

    def prepare(self, train: Interactions) -> None:
        from recsys.text.checkpoint import load_pretrained
        from recsys.text.item_text import item_text_embeddings, item_texts

        encoder, tokenizer = load_pretrained(self.checkpoint)
        texts = item_texts(train.item_features, self.num_items, self.fields)
        table = item_text_embeddings(texts, list(range(self.num_items)), encoder, tokenizer, self.batch_size,
                                     cache_dir=self.cache_dir, device=self.device_name, progress=self.progress)
        self.set_item_vectors(table.weight.detach())

    def profile_scores(self, history_rows: Tensor) -> Tensor:
        """Scores ``(B, N)`` for users given as item-weight rows ``(B, N)`` (1 = in history)."""
        profile = F.normalize(history_rows.to(self.item_vectors) @ self.item_vectors, dim=1)  # (B, D)
        return profile @ self.item_vectors.T  # (B, N)

    def score_users(self, users: Tensor, history: Interactions) -> Tensor:
        if self.item_vectors.shape[1] == 0:
            raise DataError("no item vectors", where="ContentRecommender.score_users", fix="call prepare(train) or set_item_vectors first")
        if self._profiles is None or self._profiles[0] != id(history):  # all users' profiles once per history
            matrix = history.user_item_matrix().to(self.item_vectors.device).to(self.item_vectors.dtype)  # CSR (U, N)
            self._profiles = (id(history), F.normalize(matrix @ self.item_vectors, dim=1))  # (U, D)
        profile = self._profiles[1][users.to(self.item_vectors.device)]  # (B, D)
        return profile @ self.item_vectors.T  # (B, N)
