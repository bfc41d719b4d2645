"""The contract of a fitting engine that is not the gradient-descent :class:`~recsys.training.Trainer`.

A model config may name one under ``engine:`` (beside ``module``, ``batches``, ``optimizer``); the
pipeline calls it after ``model.prepare(train, generator)`` and before the Trainer. Engines know the
model contract they need (methods and attributes), never model class names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.models.base import Recommender


@runtime_checkable
class FitEngine(Protocol):
    """``fit(model, train, *, device, generator, progress)`` updates ``model`` in place."""

    def fit(self, model: Recommender, train: Interactions, *, device: torch.device,
            generator: torch.Generator, progress: bool = True) -> None: ...
