"""The contract of a fitting engine that is not the gradient-descent :class:`~recsys.training.Trainer`.

A model config may name one under ``engine:`` (beside ``module``, ``batches``, ``optimizer``); the
pipeline calls it after ``model.prepare(train, generator)`` and before the Trainer. Engines know the
model contract they need (methods and attributes), never model class names.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.models.base import Recommender


@runtime_checkable
class FitEngine(Protocol):
    """``fit(model, train, *, device, generator, progress)`` updates ``model`` in place."""

    def fit(self, model: Recommender, train: Interactions, *, device: torch.device,
            generator: torch.Generator, progress: bool = True) -> None: ...


def warm_up_in_background(engine: Any, device: torch.device) -> threading.Thread | None:
    """Start ``engine.warm_up(device)`` (an engine's optional hook: load its compiled code, e.g. from numba's
    cache, about 1 s) on a daemon thread, so that it overlaps loading and splitting the data; None when the
    engine has no such hook. ``fit`` needs no join: a fit that starts first loads the code itself (numba's
    compiler lock makes the two loads one).

    >>> warm_up_in_background(object(), torch.device("cpu")) is None
    True
    """
    hook = getattr(engine, "warm_up", None)
    if hook is None:
        return None
    thread = threading.Thread(target=hook, args=(device,), name="recsys-warm-up", daemon=True)
    thread.start()
    return thread
