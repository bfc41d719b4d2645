"""Item2vec (Barkan & Koenigstein 2016): skip-gram with negative sampling (or hierarchical softmax) over users' item sequences.

The model holds the item vectors (buffers, so they are in ``state_dict``) and scores; fitting is the
SGNS engine (``recsys.training.sgns.SGNSEngine``, named under ``engine:`` in the config; no Trainer
epochs: ``batches`` and ``optimizer`` are null), which reads the word2vec hyperparameters below and
writes the vectors with :meth:`Item2Vec.set_vectors`. A user's next items are scored by cosine
similarity to the mean unit vector of their ``last_n`` most recent history items; items never seen
in training (or below ``min_count``) score ``-inf``.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.errors import ConfigError, DataError
from recsys.models.base import Recommender, check_candidates, check_indices

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.data.vocabulary import Vocabulary
    from recsys.embeddings.keyed_vectors import KeyedVectors


class Item2Vec(Recommender):
    """Item embeddings from word2vec over user sequences; score = cosine to the user's recent items.

    >>> import polars as pl
    >>> from recsys.data.frame import from_frame
    >>> data = from_frame(pl.DataFrame({"user": [0, 0, 1, 1], "item": [1, 2, 2, 3], "timestamp": [0, 1, 0, 1]}))
    >>> model = Item2Vec(num_items=3, vector_size=2)
    >>> model.set_vectors(torch.tensor([0, 1]), torch.tensor([[1.0, 0.0], [0.8, 0.6]]))  # item 2 untrained
    >>> model.score_users(torch.tensor([0]), history=data)  # user 0's last item: index 1
    tensor([[0.8000, 1.0000,   -inf]])

    A user is read only through ``history`` (``reads_history``), so new users are scored from their items.
    """

    reads_history = True

    def __init__(
        self,
        num_items: int,
        vector_size: int = 64,
        window: int = 5,
        negative: int = 5,
        hs: int = 0,
        sg: int = 1,
        cbow_mean: int = 1,
        min_count: int = 1,
        sample: float = 1e-3,
        epochs: int = 10,
        alpha: float = 0.025,
        min_alpha: float = 0.0001,
        ns_exponent: float = 0.75,
        shrink_windows: bool = True,
        basket: bool = False,
        batch_size: int = 256,
        last_n: int = 1,
    ) -> None:
        super().__init__()
        if num_items <= 0:
            raise ConfigError(f"num_items must be positive, got {num_items}", where="Item2Vec", fix="set model.module.num_items > 0")
        if last_n < 1:
            raise ConfigError(f"last_n must be >= 1, got {last_n}", where="Item2Vec", fix="set model.module.last_n to 1 (the last item) or more")
        for name, value in (("vector_size", vector_size), ("window", window), ("epochs", epochs), ("batch_size", batch_size), ("min_count", min_count)):
            if int(value) < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}", where="Item2Vec", fix=f"set model.module.{name} to a positive integer")
        if int(negative) < 0 or hs not in (0, 1) or not (hs or negative):
            raise ConfigError(f"need negative >= 0 and hs in (0, 1), not both off; got negative={negative}, hs={hs}", where="Item2Vec",
                              fix="set model.module.negative=5 (negative sampling) and/or model.module.hs=1 (hierarchical softmax)")
        self.num_items, self.last_n = num_items, last_n
        self.vector_size, self.window, self.negative, self.hs, self.sg, self.min_count = vector_size, window, negative, hs, sg, min_count
        self.cbow_mean = cbow_mean
        self.sample, self.epochs, self.alpha, self.min_alpha, self.ns_exponent = sample, epochs, alpha, min_alpha, ns_exponent
        self.shrink_windows, self.basket, self.batch_size = shrink_windows, basket, batch_size
        self.register_buffer("item_vectors", torch.zeros(num_items, vector_size))  # (N, D), rows of unknown items are zero
        self.register_buffer("known", torch.zeros(num_items, dtype=torch.bool))  # (N,)
        self._recent: tuple[weakref.ref, Tensor] | None = None

    def set_vectors(self, rows: Tensor, vectors: Tensor) -> None:
        """Make ``vectors (V, D)`` the vectors of item indices ``rows (V,)``; every other item becomes unknown."""
        if vectors.shape != (len(rows), self.vector_size):
            raise DataError(f"vectors {tuple(vectors.shape)} do not fit {len(rows)} rows of size {self.vector_size}",
                            where="Item2Vec.set_vectors", fix="pass one vector_size row per item index")
        rows = rows.to(self.item_vectors.device)
        with torch.no_grad():
            self.item_vectors.zero_()
            self.known.zero_()
            self.item_vectors[rows] = vectors.to(self.item_vectors)
            self.known[rows] = True
        self._recent = None

    def _recent_items(self, history: Interactions) -> Tensor:
        """``(num_users, last_n)`` most recent history items (index + 1, 0 = none), cached per history."""
        if self._recent is None or self._recent[0]() is not history or self._recent[1].device != self.item_vectors.device:
            self._recent = (weakref.ref(history), history.padded_sequences(self.last_n).to(self.item_vectors.device))
        return self._recent[1]

    def score_users(self, users: Tensor, history: Interactions) -> Tensor:
        check_indices(users, history.num_users, "users", "Item2Vec.score_users")
        query, unit = self._query(users, history)
        scores = query @ unit.T  # (B, N)
        return scores.masked_fill(~self.known, -torch.inf)

    def score_items(self, users: Tensor, items: Tensor, history: Interactions) -> Tensor:
        check_indices(users, history.num_users, "users", "Item2Vec.score_items")
        items = check_candidates(users, items, self.num_items, "Item2Vec.score_items").to(self.item_vectors.device)
        query, unit = self._query(users, history)
        scores = torch.bmm(unit[items], query.unsqueeze(2)).squeeze(2)  # (B, C)
        return scores.masked_fill(~self.known[items], -torch.inf)

    def _query(self, users: Tensor, history: Interactions) -> tuple[Tensor, Tensor]:
        """Unit query vectors ``(B, D)`` (the sum of each user's recent unit item vectors) and the unit items ``(N, D)``."""
        unit = F.normalize(self.item_vectors, dim=1)  # (N, D)
        padded = unit.new_zeros(1, unit.shape[1])
        recent = self._recent_items(history)[users.to(unit.device)]  # (B, L), item + 1
        query = torch.cat([padded, unit])[recent].sum(1)  # (B, D): padding and unknown items add zero
        return F.normalize(query, dim=1), unit

    def item_embeddings(self, items: Vocabulary) -> KeyedVectors:
        """The item vectors as :class:`KeyedVectors` keyed by the original ids of ``items`` (``data.items``),
        e.g. to initialize another model's item table (``to_keyed_embedding(freeze=False)``); items unseen in
        training have zero rows."""
        from recsys.embeddings.keyed_vectors import KeyedVectors

        if len(items) != self.num_items:
            raise DataError(f"vocabulary has {len(items)} ids but the model {self.num_items} items", where="Item2Vec.item_embeddings",
                            fix="pass the vocabulary of the data the model was built for (data.items)")
        return KeyedVectors(items.ids.to_list(), self.item_vectors.detach().float().cpu().clone())
