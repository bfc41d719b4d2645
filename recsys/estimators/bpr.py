"""``BayesianPersonalizedRanking``: BPR-MF with ``implicit``'s names and training scheme, as a facade.

It composes the one BPR-MF model (:class:`~recsys.models.bpr.BPRMF`, which the Trainer also trains
by gradient descent) with the Hogwild BPR engine (:class:`~recsys.training.bpr_hogwild.BPRHogwild`:
implicit's per-pair SGD: a compiled loop on ``workers`` threads on CPU, vectorized torch steps on GPU). The result is the BPRMF
(``model_``), scored by the shared evaluator like every other model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recsys.errors import ConfigError, DataError
from recsys.models.bpr import BPRMF
from recsys.runtime import resolve_device
from recsys.training.bpr_hogwild import BPRHogwild

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions


class BayesianPersonalizedRanking:
    """BPR-MF with ``implicit``'s hyperparameter names and training scheme; ``fit`` returns ``self``, ``model_`` the BPRMF.

    >>> import torch
    >>> from recsys.data.frame import from_frame
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"user": [0, 0, 1, 1, 2, 2], "item": [0, 1, 1, 2, 2, 0]})
    >>> model = BayesianPersonalizedRanking(factors=4, iterations=3, workers=1, device="cpu").fit(from_frame(frame))
    >>> model.model_.score_users(torch.tensor([0, 1]), history=None).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        factors: int = 100,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        negatives: str = "popularity",
        batch_size: int = 1024,
        workers: int = 2,
        seed: int = 0,
        device: str = "auto",
        kernel: str = "auto",
    ) -> None:
        self.factors, self.learning_rate, self.regularization, self.iterations = factors, learning_rate, regularization, iterations
        self.negatives, self.batch_size, self.workers, self.seed, self.device = negatives, batch_size, workers, seed, device
        self.kernel = kernel

    def _engine(self) -> BPRHogwild:
        if int(self.factors) < 1:
            raise ConfigError(f"factors must be >= 1, got {self.factors}", where="BayesianPersonalizedRanking", fix="set factors to a positive integer")
        return BPRHogwild(learning_rate=self.learning_rate, regularization=self.regularization, iterations=self.iterations,
                          negatives=self.negatives, batch_size=self.batch_size, workers=self.workers, init="uniform",
                          kernel=self.kernel)

    def fit(self, interactions: Interactions) -> BayesianPersonalizedRanking:
        """Train on ``interactions`` (every (user, item) row is a positive); sets ``model_`` and ``train_seconds_``."""
        engine = self._engine()
        if interactions.num_interactions == 0:
            raise DataError("no interactions to train on", where="BayesianPersonalizedRanking.fit", fix="pass a non-empty Interactions")
        device = resolve_device(self.device, where="BayesianPersonalizedRanking(device=...)")
        model = BPRMF(interactions.num_users, interactions.num_items, embedding_dim=self.factors, reg=self.regularization).to(device)
        run = engine.fit_seeded(model, interactions, device=device, seed=self.seed)
        self.train_seconds_ = run.seconds
        self.model_ = model
        return self
