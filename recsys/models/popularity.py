"""Popularity baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from recsys.errors import ConfigError
from recsys.models.base import Recommender, check_candidates, check_indices

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions


class Popularity(Recommender):
    """Scores each item by its number of training interactions.

    >>> model = Popularity(num_items=3)
    >>> model.item_counts.copy_(torch.tensor([5.0, 1.0, 3.0]))
    tensor([5., 1., 3.])
    >>> model.score_users(torch.tensor([0, 1]), history=None)
    tensor([[5., 1., 3.],
            [5., 1., 3.]])
    """

    reads_history = True  # no per-user parameters: every user, new or not, gets the same scores

    def __init__(self, num_items: int) -> None:
        super().__init__()
        if num_items <= 0:
            raise ConfigError(f"num_items must be positive, got {num_items}", where="Popularity")
        self.num_items = num_items
        self.register_buffer("item_counts", torch.zeros(num_items))

    def prepare(self, train: Interactions, generator: torch.Generator | None = None) -> None:
        """Count each item's training interactions on ``self.device``."""
        counts = torch.bincount(train.item_index.to(self.item_counts.device), minlength=self.num_items)
        self.item_counts.copy_(counts)

    def score_users(self, users: Tensor, history: Interactions | None) -> Tensor:
        if history is not None:  # the scores ignore the user, but an index outside the history is a caller's bug
            check_indices(users, history.num_users, "users", "Popularity.score_users")
        return self.item_counts.unsqueeze(0).repeat(users.shape[0], 1)  # (B, N)

    def score_items(self, users: Tensor, items: Tensor, history: Interactions | None) -> Tensor:
        if history is not None:
            check_indices(users, history.num_users, "users", "Popularity.score_items")
        return self.item_counts[check_candidates(users, items, self.num_items, "Popularity.score_items")]  # (B, C)
