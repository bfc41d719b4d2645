"""Cold-start protocol: hold out a fraction of items entirely from training, rank them for the users
who interacted with them.

``cold_start_split`` -> ``ColdStartSplit(train, test, cold_items)``: ``train`` has no interaction with
a cold item, ``test`` has exactly the interactions with cold items. ``evaluate_cold_start`` ranks
with :class:`~recsys.evaluation.ranking.RankingEvaluator`, the user's training items masked, either
among **all** items (``candidates="all"``: cold items must beat every warm item) or among the
**cold** items only (``candidates="cold"``: warm items set to ``-inf``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl
import torch
from torch import Tensor

from recsys.data.interactions import Interactions
from recsys.errors import ConfigError
from recsys.evaluation.ranking import RankingEvaluator

if TYPE_CHECKING:
    from recsys.models.base import Recommender

__all__ = ["ColdStartSplit", "cold_start_split", "evaluate_cold_start"]


@dataclass(frozen=True)
class ColdStartSplit:
    """Training interactions without the cold items, test interactions with them, and their indices.

    It is a split :func:`recsys.run_pipeline` takes (``split=cold``): ``valid`` is empty, so the model fits
    for its epoch budget without epoch selection, and the test metrics rank each test (cold) item among
    **all** items with the user's training items masked (``evaluate_cold_start(candidates="all")``).
    """

    train: Interactions
    test: Interactions
    cold_items: Tensor  # (C,) item indices

    @property
    def valid(self) -> Interactions:
        """No validation interactions (a cold-start split has none)."""
        return self.train.with_frame(self.train.frame.clear(), assume_sorted=True)


def cold_start_split(data: Interactions, fraction: float = 0.1, seed: int = 0) -> ColdStartSplit:
    """Hold out ``fraction`` of the items that have interactions (drawn with ``seed``) entirely.

    >>> from recsys.data.frame import from_frame
    >>> data = from_frame(pl.DataFrame({"user": [1, 1, 2, 2], "item": [5, 6, 5, 7], "timestamp": [1, 2, 1, 2]}))
    >>> split = cold_start_split(data, fraction=0.34, seed=0)
    >>> split.cold_items.numel(), split.train.num_interactions + split.test.num_interactions
    (1, 4)
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction must be in (0, 1), got {fraction}", where="cold_start_split")
    present = torch.unique(data.item_index)
    generator = torch.Generator().manual_seed(seed)
    count = max(1, round(fraction * present.numel()))
    cold = present[torch.randperm(present.numel(), generator=generator)[:count]].sort().values
    is_cold = pl.Series(torch.isin(data.item_index, cold).numpy())
    frame = data.frame
    train, test = frame.filter(~is_cold), frame.filter(is_cold)
    return ColdStartSplit(data.with_frame(train, assume_sorted=True), data.with_frame(test, assume_sorted=True), cold)


def evaluate_cold_start(
    model: Recommender, split: ColdStartSplit, evaluator: RankingEvaluator | None = None, candidates: str = "all",
    per_user: dict[str, Tensor] | None = None,
) -> dict[str, float]:
    """HR/NDCG etc. over the test (cold) interactions; ``history`` given to the model is ``split.train``.

    ``per_user``: filled with each user's metric values, as :meth:`RankingEvaluator.evaluate` does."""
    if candidates not in ("all", "cold"):
        raise ConfigError(f"candidates must be 'all' or 'cold', got {candidates!r}", where="evaluate_cold_start")
    evaluator = evaluator or RankingEvaluator(ks=(10,), metrics=("hr", "ndcg"))
    warm = torch.ones(split.train.num_items, dtype=torch.bool)
    warm[split.cold_items] = False

    def score(users: Tensor) -> Tensor:
        scores = model.score_users(users, split.train).float()  # (B, N)
        if candidates == "cold":
            scores = scores.masked_fill(warm.to(scores.device), float("-inf"))
        return scores

    model.eval()
    with torch.no_grad():
        return evaluator.evaluate(
            score, exclude=split.train.user_item_matrix(), targets=split.test.user_item_matrix(), device=model.device,
            **({"per_user": per_user} if per_user is not None else {}),
        )
