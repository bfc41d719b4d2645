"""CTR evaluation: ROC AUC and log loss of a model's logits on labelled rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from recsys.data.ctr_batches import CTRBatches
from recsys.errors import ConfigError
from recsys.evaluation.pointwise import log_loss, roc_auc

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.models.base import Recommender

__all__ = ["CTREvaluator"]


class CTREvaluator:
    """Score a CTR model's ``predict(batch)`` logits on target interactions: ``{"auc", "logloss"}``.

    ``evaluate_model`` encodes the targets with the model's own fitted pipeline (``model.features``, the one
    object the model and its training batches share: vocabularies from the training split, unseen values to
    OOV) and labels them ``rating >= model.features.label_threshold``; nothing is refit or redeclared here.

    >>> m = CTREvaluator().metrics(torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    >>> m["auc"], round(m["logloss"], 4)
    (1.0, 0.3657)
    """

    requires = "predict"  # the model method this evaluator calls

    def __init__(self, batch_size: int = 65536) -> None:
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}", where="CTREvaluator", fix="set eval.batch_size > 0")
        self.batch_size = batch_size

    @staticmethod
    def metric_names() -> list[str]:
        """The metric keys :meth:`evaluate_model` reports."""
        return ["auc", "logloss"]

    def evaluate_model(self, model: Recommender, history: Interactions, targets: Interactions) -> dict[str, float]:
        """AUC and log loss on ``targets`` (``history`` is not needed: CTR rows are scored independently)."""
        features = getattr(model, "features", None)
        if features is None or not features.fitted:
            raise ConfigError(
                f"{type(model).__name__} has no fitted feature pipeline (model.features)",
                where="CTREvaluator.evaluate_model",
                fix="evaluate a CTR model (lr, fm, deepfm) built with features=<the fitted FeaturePipeline>",
            )
        batches = CTRBatches(targets, features, batch_size=self.batch_size, shuffle=False)
        return self.evaluate_batches(model, batches)

    @torch.no_grad()
    def evaluate_batches(self, model: Recommender, batches: Iterable[dict[str, Tensor]]) -> dict[str, float]:
        """AUC and log loss over any labelled batches (e.g. ``FeatureBatches`` of a libsvm file)."""
        was_training = model.training
        model.eval()
        device = model.device
        logits, labels = [], []
        try:
            for batch in batches:
                batch = {k: v.to(device) for k, v in batch.items()}
                logits.append(model.predict(batch).float().cpu())
                labels.append(batch["labels"].cpu())
        finally:
            model.train(was_training)
        return self.metrics(torch.cat(logits), torch.cat(labels))

    @staticmethod
    def metrics(logits: Tensor, labels: Tensor) -> dict[str, float]:
        """``{"auc", "logloss"}`` of logits against 0/1 labels."""
        return {"auc": roc_auc(logits, labels), "logloss": log_loss(torch.sigmoid(logits.double()), labels)}
