"""The contract every recommender implements, so trainer and evaluator never special-case a model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions


class Recommender(nn.Module):
    """Base class of all recommenders.

    A model implements up to three methods:

    - ``prepare(train, generator=None)``: the closed-form fit step: statistics or closed-form
      solutions from the training split (popularity counts, ALS, EASE), computed on the device the
      model sits on, with randomness drawn from ``generator``. Default: nothing. Iterative fitting
      that is not gradient descent (SGNS, Hogwild BPR) lives in ``recsys.training`` engines.
    - ``loss(batch)``: scalar training loss on one batch (a dict of tensors). Only models
      trained by gradient descent implement it; ``trainable`` tells which.
    - ``score_users(users, history)``: scores of every item for each user, ``(B, N)``, higher is
      better. ``history`` holds the interactions known at evaluation time (what sequential
      models read); the evaluator masks seen items itself.
    - ``predict(batch)``: pointwise predictions ``(B,)`` (ratings, CTR logits) for rating/CTR evaluators.

    Evaluators (the ``eval`` config group) implement ``evaluate_model(model, history, targets)``.
    """

    def prepare(self, train: Interactions, generator: torch.Generator | None = None) -> None:
        """Learn statistics or closed-form parameters from the training split (on ``self.device``)."""

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} is not trained by gradient descent")

    def score_users(self, users: Tensor, history: Interactions) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not rank items for users")

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        """Pointwise predictions for the rows of a batch, ``(B,)``: ratings (explicit models) or logits (CTR)."""
        raise NotImplementedError(f"{type(self).__name__} makes no pointwise predictions")

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """The training loss; ``forward`` so that DistributedDataParallel hooks run."""
        return self.loss(batch)

    @property
    def trainable(self) -> bool:
        """True when the model defines a loss and has parameters to train."""
        return type(self).loss is not Recommender.loss and any(
            p.requires_grad for p in self.parameters()
        )

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")
