"""Rating-prediction evaluation: RMSE and MAE of ``model.predict`` on held-out ratings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from recsys.errors import ConfigError, DataError
from recsys.evaluation.pointwise import mae, rmse

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.models.base import Recommender

__all__ = ["RatingEvaluator"]


class RatingEvaluator:
    """RMSE and MAE of a model's pointwise predictions on the target rows, in batches.

    ``model.predict({"users", "items"})`` returns one predicted rating per row, ``(B,)``.

    >>> import polars as pl
    >>> from recsys.data.frame import from_frame
    >>> from recsys.models.base import Recommender
    >>> class Three(Recommender):
    ...     def predict(self, batch):
    ...         return torch.full(batch["users"].shape, 3.0)
    >>> targets = from_frame(pl.DataFrame({"user": [1, 2], "item": [5, 5], "rating": [4.0, 2.0]}))
    >>> RatingEvaluator().evaluate_model(Three(), targets, targets)
    {'rmse': 1.0, 'mae': 1.0}
    """

    requires = "predict"  # the model method this evaluator calls

    def __init__(self, batch_size: int = 65536) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}", where="RatingEvaluator")
        self.batch_size = batch_size

    @staticmethod
    def metric_names() -> list[str]:
        """The metric keys :meth:`evaluate_model` reports."""
        return ["rmse", "mae"]

    def evaluate_model(self, model: Recommender, history: Interactions, targets: Interactions) -> dict[str, float]:
        """Predict every target row's rating (``history`` is unused: rating models need no masking)."""
        if not targets.has_ratings:
            raise DataError(
                f"targets {targets.name!r} have no ratings", where="RatingEvaluator.evaluate_model",
                fix="evaluate rating models on a dataset with a rating column, or use eval=full for implicit data",
            )
        if targets.num_interactions == 0:
            raise DataError("no target ratings to evaluate", where="RatingEvaluator.evaluate_model",
                            fix="use a split with held-out rows (e.g. split=random)")
        model.eval()
        device = model.device
        users, items = targets.user_index, targets.item_index
        with torch.no_grad():
            pred = torch.cat([
                model.predict({"users": users[s : s + self.batch_size].to(device), "items": items[s : s + self.batch_size].to(device)})
                .float().cpu()
                for s in range(0, users.shape[0], self.batch_size)
            ])
        truth = targets.ratings.float()
        return {"rmse": rmse(pred, truth), "mae": mae(pred, truth)}
