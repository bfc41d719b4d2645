"""Fold-in: scores for users a model never saw, by refitting only its per-user tables on their histories.

A model that names its per-user ``nn.Embedding`` tables in ``user_tables`` (BPR-MF, biased MF, NeuMF) is
copied with those tables replaced by fresh ones of ``history.num_users`` rows; every other parameter is
frozen and a few Adam steps of the model's own ``loss`` fit the new rows, all new users at once (one
full-batch step over every history row per step). The model itself is left untouched.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from recsys.data.batches import PairwiseBatches
from recsys.data.pointwise_batches import RatingBatches
from recsys.errors import ConfigError, DataError

if TYPE_CHECKING:
    from recsys.data.epochs import EpochBatches
    from recsys.data.interactions import Interactions
    from recsys.models.base import Recommender

__all__ = ["fold_in", "fold_in_scores"]

_BATCHES = {"pairwise": PairwiseBatches, "ratings": RatingBatches}


def _fresh_table(table: nn.Embedding, num_users: int, std: float, generator: torch.Generator | None) -> nn.Embedding:
    """A dense ``(num_users, D)`` table like ``table``: normal(0, std) rows, zeros for ``D == 1`` (biases)."""
    weight = torch.zeros(num_users, table.embedding_dim)
    if table.embedding_dim > 1:
        weight.normal_(0.0, std, generator=generator)
    fresh = nn.Embedding(num_users, table.embedding_dim)  # dense: Adam takes no sparse gradients
    with torch.no_grad():
        fresh.weight.copy_(weight)
    return fresh.to(device=table.weight.device, dtype=table.weight.dtype)


def _batches(model: Recommender, history: Interactions, generator: torch.Generator | None) -> EpochBatches:
    kind = model.fold_in_batches
    if kind not in _BATCHES:
        raise ConfigError(f"{type(model).__name__}.fold_in_batches is {kind!r}", where="fold_in",
                          fix=f"set the model's fold_in_batches to one of {sorted(_BATCHES)} (what its loss reads)")
    if history.num_interactions == 0:
        raise DataError("the histories are empty", where="fold_in", fix="give at least one item per user")
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return _BATCHES[kind](history, batch_size=history.num_interactions, seed=seed)  # one batch: every row


def fold_in(model: Recommender, history: Interactions, *, steps: int = 100, lr: float = 0.05,
            generator: torch.Generator | None = None) -> Recommender:
    """A copy of ``model`` whose ``user_tables`` hold the users of ``history`` (rows = its user index).

    The copy's fresh tables start like the model's (``normal(0, init_std)``; zeros for biases) and are fit
    by ``steps`` Adam steps (learning rate ``lr``) of ``model.loss`` on batches of ``history`` of the kind
    the model names in ``fold_in_batches`` (``"pairwise"``: negatives drawn from ``generator``; ``"ratings"``:
    the history must carry ratings). The network runs in eval mode (no dropout); only the new tables move.

    >>> import polars as pl
    >>> from recsys.data.frame import from_frame
    >>> from recsys.models.bpr import BPRMF
    >>> data = from_frame(pl.DataFrame({"user": [0, 0, 1], "item": [0, 1, 2]}))
    >>> folded = fold_in(BPRMF(num_users=5, num_items=3, embedding_dim=4), data, steps=2)
    >>> folded.user_embedding.num_embeddings
    2
    """
    if not model.user_tables:
        raise ConfigError(f"{type(model).__name__} names no per-user tables to fold in", where="fold_in",
                          fix="use a model with user_tables (bpr, biased_mf, neumf), or one that reads histories")
    if not isinstance(steps, int) or steps < 0 or not lr > 0:
        raise ConfigError(f"need steps >= 0 and lr > 0, got steps={steps!r}, lr={lr!r}", where="fold_in")
    if history.num_items != getattr(model, "num_items", history.num_items):
        raise DataError(f"history has {history.num_items} items, model {model.num_items}", where="fold_in",
                        fix="build the history on the model's item vocabulary")
    std = float(getattr(model, "init_std", 0.01))
    old = {name: getattr(model, name) for name in model.user_tables}
    fresh = {name: _fresh_table(table, history.num_users, std, generator) for name, table in old.items()}
    memo = {id(old[name]): fresh[name] for name in old}  # deepcopy puts the fresh tables in, never copies the old
    clone = copy.deepcopy(model, memo)
    if hasattr(clone, "num_users"):
        clone.num_users = history.num_users
    clone.requires_grad_(False)
    params = [table.weight.requires_grad_(True) for table in fresh.values()]
    clone.eval()
    batches = _batches(model, history, generator)
    optimizer = torch.optim.Adam(params, lr=lr)
    device = model.device
    with torch.enable_grad():
        for step in range(steps):
            batches.set_epoch(step)  # fresh negatives every step
            batch = {key: value.to(device) for key, value in next(iter(batches)).items()}
            optimizer.zero_grad(set_to_none=True)
            clone.loss(batch).backward()
            optimizer.step()
    clone.requires_grad_(False)
    return clone


def fold_in_scores(model: Recommender, history: Interactions, *, steps: int = 100, lr: float = 0.05,
                   generator: torch.Generator | None = None) -> Tensor:
    """Scores ``(U, N)`` of every user of ``history`` by a :func:`fold_in` copy of ``model`` (the model is unchanged)."""
    clone = fold_in(model, history, steps=steps, lr=lr, generator=generator)
    with torch.no_grad():
        return clone.score_users(torch.arange(history.num_users, device=model.device), history)
