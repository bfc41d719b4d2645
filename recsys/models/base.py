"""The contract every recommender implements, so trainer and evaluator never special-case a model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from recsys.errors import DataError

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions


def check_indices(index: Tensor, size: int | Sequence[int], name: str, where: str) -> None:
    """Raise a :class:`DataError` naming the bad values unless every entry of ``index`` lies in ``[0, size)``.

    ``size`` may be one bound per column (the last dimension), e.g. per-field table sizes. One min/max
    (a single device sync) per call; the bad values are gathered only on failure.

    >>> check_indices(torch.tensor([0, 2]), 3, "users", "M.score_users")
    >>> check_indices(torch.tensor([0, 3, 5]), 3, "users", "M.score_users")
    Traceback (most recent call last):
    ...
    recsys.errors.DataError: users index out of range: got [3, 5]; valid range is [0, 3) (3 users)
      where: M.score_users
      fix: pass users indices of the model's data (map original ids with data.users.to_index)
    """
    index = torch.as_tensor(index)
    if index.numel() == 0:
        return
    if index.is_floating_point() or index.dtype == torch.bool or index.is_complex():
        raise DataError(f"{name} must be integer indices, got {index.dtype}", where=where, fix=f"pass {name} as a torch.long tensor")
    per_column = not isinstance(size, int)
    bound = torch.as_tensor(size, device=index.device) if per_column else size
    flat = index.reshape(-1, index.shape[-1]) if per_column and index.dim() else index
    low, high = (flat.amin(0), flat.amax(0)) if per_column else torch.aminmax(flat)
    if bool(torch.stack([low.min() < 0, (high >= bound).any()]).any()):  # one sync
        bad_mask = (flat < 0) | (flat >= bound)
        bad = flat[bad_mask].unique()[:5].tolist()
        if per_column:
            column = int(bad_mask.any(0).int().argmax())
            valid = f"column {column} must lie in [0, {int(bound[column])}) (sizes {[int(b) for b in bound][:8]})"
        else:
            valid = f"valid range is [0, {size}) ({size} {name})"
        raise DataError(
            f"{name} index out of range: got {bad}; {valid}",
            where=where,
            fix=f"pass {name} indices of the model's data (map original ids with data.{name}.to_index)"
            if name in ("users", "items") else f"pass {name} within the table sizes the model was built with",
        )


def check_candidates(users: Tensor, items: Tensor, num_items: int, where: str) -> Tensor:
    """Candidate ``items`` for ``score_items`` as ``(B, C)`` (a ``(C,)`` row is shared by every user), checked."""
    items = torch.as_tensor(items)
    if items.dim() == 1:
        items = items.unsqueeze(0).expand(users.shape[0], -1)
    if items.dim() != 2 or items.shape[0] != users.shape[0]:
        raise DataError(f"items must be (B, C) or (C,) for {users.shape[0]} users, got {tuple(items.shape)}",
                        where=where, fix="pass one row of candidate items per user")
    check_indices(items, num_items, "items", where)
    return items.long()


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
    - ``score_items(users, items, history)``: scores ``(B, C)`` of candidate items only (sampled evaluation);
      the default gathers them from ``score_users``, models where a few items are cheaper override it.
    - ``predict(batch)``: pointwise predictions ``(B,)`` (ratings, CTR logits) for rating/CTR evaluators.

    For users the model never saw (inference, ``recsys.inference``), a model either reads users only
    through ``history`` (``reads_history = True``: sequential models, item2vec, content, EASE,
    popularity), overrides ``score_histories`` (ALS solves the user's factors), or names its per-user
    tables in ``user_tables`` so ``recsys.training.fold_in`` fits them against the frozen rest.

    Evaluators (the ``eval`` config group) implement ``evaluate_model(model, history, targets)``.
    """

    #: True when ``score_users`` sees a user only through ``history`` (no learned per-user parameters).
    reads_history: bool = False
    #: Names of the per-user parameter tables (``nn.Embedding``, rows = user index) a fold-in refits.
    user_tables: tuple[str, ...] = ()
    #: The batches a fold-in feeds to ``loss``: ``"pairwise"`` (users, items, negatives) or ``"ratings"``
    #: (users, items, ratings); None where the model has no ``user_tables``.
    fold_in_batches: str | None = None
    #: True when scores are logits of a click probability (CTR models): recommendations add ``probability``.
    scores_are_logits: bool = False

    def batch_arguments(self) -> dict[str, Any]:
        """What the model decides about its training batches (``max_len``, ``num_negatives``, ...):
        :func:`recsys.run_pipeline` passes each to the batches factory where the caller left it open,
        so a value is set once, on the model. Default: nothing."""
        return {}

    def score_histories(self, history: Interactions) -> Tensor:
        """Scores ``(U, N)`` of every user of ``history`` from their interactions alone (users may be new).

        ``history`` shares the model's item index; its users are whoever is asked about.
        """
        if self.reads_history:
            return self.score_users(torch.arange(history.num_users, device=self.device), history)
        raise NotImplementedError(
            f"{type(self).__name__} cannot score a user from a history alone"
            + (" (fold-in: recsys.training.fold_in)" if self.user_tables else "")
        )

    def prepare(self, train: Interactions, generator: torch.Generator | None = None) -> None:
        """Learn statistics or closed-form parameters from the training split (on ``self.device``)."""

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} is not trained by gradient descent")

    def score_users(self, users: Tensor, history: Interactions) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not rank items for users")

    def score_vectors(self, users: Tensor | None = None) -> tuple[Tensor, Tensor] | None:
        """``(queries (B, D), items (N, D))`` with ``score_users(users) == queries @ items.T`` (every user when
        ``users`` is None), for models whose scores are inner products (batch recommendation then ranks item
        tiles without the ``(B, N)`` block); None (the default) where they are not."""
        return None

    def score_items(self, users: Tensor, items: Tensor, history: Interactions) -> Tensor:
        """Scores ``(B, C)`` of candidate ``items`` (``(B, C)``, or ``(C,)`` for every user): the matching
        columns of ``score_users``, which this default gathers (correct for every model)."""
        scores = self.score_users(users, history)  # (B, N)
        items = check_candidates(users, items, scores.shape[1], f"{type(self).__name__}.score_items")
        return scores.gather(1, items.to(scores.device))  # (B, C)

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
