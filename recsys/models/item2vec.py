"""Item2vec (Barkan & Koenigstein 2016): skip-gram with negative sampling over users' item sequences.

Training is :class:`recsys.estimators.word2vec.Word2Vec` on the training split's per-user
sequences (no Trainer epochs: ``batches`` and ``optimizer`` are null in the config). A user's
next items are scored by cosine similarity to the mean unit vector of their ``last_n`` most
recent history items; items never seen in training (or below ``min_count``) score ``-inf``.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.errors import ConfigError
from recsys.estimators.word2vec import Word2Vec
from recsys.models.base import Recommender

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.embeddings.table import KeyedEmbedding


class Item2Vec(Recommender):
    """Item embeddings from word2vec over user sequences; score = cosine to the user's recent items.

    >>> import polars as pl
    >>> from recsys.data.frame import from_frame
    >>> rows = pl.DataFrame({"user": [0, 0, 0, 1, 1, 1], "item": [1, 2, 3, 1, 2, 3], "timestamp": [0, 1, 2, 0, 1, 2]})
    >>> data = from_frame(rows)
    >>> model = Item2Vec(num_items=3, vector_size=8, epochs=2, sample=0.0)
    >>> model.prepare(data)
    >>> model.score_users(torch.tensor([0, 1]), history=data).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        num_items: int,
        vector_size: int = 64,
        window: int = 5,
        negative: int = 5,
        sg: int = 1,
        min_count: int = 1,
        sample: float = 1e-3,
        epochs: int = 10,
        alpha: float = 0.025,
        min_alpha: float = 0.0001,
        ns_exponent: float = 0.75,
        shrink_windows: bool = True,
        basket: bool = False,
        batch_size: int = 256,
        workers: int = 2,
        seed: int = 1,
        device: str = "auto",
        last_n: int = 1,
    ) -> None:
        super().__init__()
        if num_items <= 0:
            raise ConfigError(f"num_items must be positive, got {num_items}", where="Item2Vec", fix="set model.module.num_items > 0")
        if last_n < 1:
            raise ConfigError(f"last_n must be >= 1, got {last_n}", where="Item2Vec", fix="set model.module.last_n to 1 (the last item) or more")
        self.num_items, self.last_n = num_items, last_n
        self.word2vec = Word2Vec(
            vector_size=vector_size, window=window, negative=negative, sg=sg, min_count=min_count, sample=sample,
            epochs=epochs, alpha=alpha, min_alpha=min_alpha, ns_exponent=ns_exponent, shrink_windows=shrink_windows,
            basket=basket, batch_size=batch_size, workers=workers, seed=seed, device=device,
        )
        self.register_buffer("item_vectors", torch.zeros(num_items, vector_size))  # (N, D), rows of unknown items are zero
        self.register_buffer("known", torch.zeros(num_items, dtype=torch.bool))  # (N,)
        self.item_ids: np.ndarray | None = None  # original ids of the item indices, set by prepare
        self._recent: tuple[weakref.ref, Tensor] | None = None

    def prepare(self, train: Interactions) -> None:
        """Train word2vec on the training sequences; keys are item indices 0..N-1."""
        self.word2vec.fit(train.frame.select("user", "item"))  # rows sorted by (user, time): one sentence per user
        wv = self.word2vec.wv
        rows = torch.tensor(wv.index_to_key, dtype=torch.long)
        self.item_vectors.zero_()
        self.known.zero_()
        self.item_vectors[rows.to(self.item_vectors.device)] = wv.table.to(self.item_vectors)
        self.known[rows.to(self.known.device)] = True
        ids = train.items.ids
        self.item_ids = ids.to_numpy().astype(np.int64) if ids.dtype.is_integer() else None

    def _recent_items(self, history: Interactions) -> Tensor:
        """``(num_users, last_n)`` most recent history items (index + 1, 0 = none), cached per history."""
        if self._recent is None or self._recent[0]() is not history:
            self._recent = (weakref.ref(history), history.padded_sequences(self.last_n).to(self.item_vectors.device))
        return self._recent[1]

    def score_users(self, users: Tensor, history: Interactions) -> Tensor:
        unit = F.normalize(self.item_vectors, dim=1)  # (N, D)
        padded = unit.new_zeros(1, unit.shape[1])
        recent = self._recent_items(history)[users.to(unit.device)]  # (B, L), item + 1
        query = torch.cat([padded, unit])[recent].sum(1)  # (B, D): padding and unknown items add zero
        scores = F.normalize(query, dim=1) @ unit.T  # (B, N)
        return scores.masked_fill(~self.known, -torch.inf)

    def item_embedding(self, freeze: bool = True) -> KeyedEmbedding:
        """The item table as a :class:`KeyedEmbedding` keyed by original item ids (item indices when not integers),
        e.g. to initialize another model's item table; items unseen in training have zero rows."""
        from recsys.embeddings.table import KeyedEmbedding

        ids = self.item_ids if self.item_ids is not None else np.arange(self.num_items)
        return KeyedEmbedding.from_pretrained(self.item_vectors.cpu(), ids=ids, freeze=freeze)
