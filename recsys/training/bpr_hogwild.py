"""BPR trained as ``implicit`` trains it: a Hogwild SGD engine for a BPR-MF model's tables, vectorized in torch.

Each iteration draws as many (user, liked item) pairs as there are interactions, uniformly over the
interactions, and one negative per pair: by default the item of another uniformly drawn interaction
(so negatives follow item popularity, as in ``implicit``), or uniform over items; pairs whose
negative the user has seen are skipped. Updates are plain SGD on ``log sigmoid(x_ui - x_uj)``
with L2 ``regularization`` on the touched rows, ``batch_size`` pairs per vectorized step,
gathering and ``index_add_``-ing only the touched rows (no autograd, no optimizer state); the
item bias is an extra item column against a constant 1 in the user's. On CPU, ``workers``
Hogwild workers (:mod:`recsys.training.hogwild`) share the tables.

The engine trains any model with ``user_embedding``, ``item_embedding`` (``nn.Embedding`` of
``(U, D)``, ``(N, D)``) and ``item_bias`` (``(N, 1)``) tables scored ``u . i + b_i``
(:class:`~recsys.models.bpr.BPRMF`), and writes the result back into them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from recsys.errors import ConfigError, DataError
from recsys.runtime import progress_bar
from recsys.training.hogwild import can_fork, run_workers, seed_from, shared_zeros

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.models.base import Recommender

__all__ = ["BPRHogwild", "BPRRun", "SeenPairs", "bpr_step"]

log = logging.getLogger(__name__)

_SEED_MASK = (1 << 63) - 1
_BITMAP_BYTES = 1 << 28  # seen (user, item) pairs as a bitmap up to 256 MiB, else a sorted key array
_INITS = ("uniform", "model")


class SeenPairs:
    """Membership of (user, item) pairs: a bitmap of ``users x items`` bits (one gather per query)
    when it fits in 256 MiB, else binary search in the sorted pair keys (7x slower on Beauty).

    >>> seen = SeenPairs(torch.tensor([0, 1]), torch.tensor([2, 0]), num_items=3)
    >>> seen.contains(torch.tensor([0, 0, 1]), torch.tensor([2, 0, 0])).tolist()
    [True, False, True]
    """

    def __init__(self, users: Tensor, items: Tensor, num_items: int) -> None:
        self.num_items = num_items
        keys = torch.unique(users * num_items + items)  # (P,) sorted
        size = (int(users.max()) + 1) * num_items if len(users) else 0
        if size // 8 <= _BITMAP_BYTES:  # sums of distinct powers of two == their bitwise or
            self.words = torch.zeros((size + 63) // 64, dtype=torch.long, device=keys.device).index_add_(0, keys >> 6, torch.ones_like(keys) << (keys & 63))
            self.keys = None
        else:
            self.words, self.keys = None, keys

    def contains(self, users: Tensor, items: Tensor) -> Tensor:
        key = users * self.num_items + items
        if self.words is not None:
            word = (key >> 6).clamp_max(len(self.words) - 1)  # users beyond the last seen one have no pairs
            return ((self.words[word] >> (key & 63)) & 1 == 1) & (key >> 6 < len(self.words))
        return self.keys[torch.searchsorted(self.keys, key).clamp_max(len(self.keys) - 1)] == key


@dataclass(frozen=True)
class BPRRun:
    """What one :meth:`BPRHogwild.fit_seeded` run did."""

    seconds: float
    skipped: int  # sampled pairs dropped because the user had seen the negative
    samples: int  # pairs drawn, all iterations


class BPRHogwild:
    """``implicit``'s BPR scheme as vectorized Hogwild SGD on a BPR-MF model's tables (a :class:`~recsys.training.engine.FitEngine`).

    ``init="uniform"`` starts from ``implicit``'s initialization (factors uniform in ``+-0.5 / D``,
    zero biases), drawn from the generator; ``init="model"`` continues from the model's weights.

    >>> import polars as pl
    >>> from recsys.data.frame import from_frame
    >>> from recsys.models.bpr import BPRMF
    >>> data = from_frame(pl.DataFrame({"user": [0, 0, 1, 1, 2, 2], "item": [0, 1, 1, 2, 2, 0]}))
    >>> model = BPRMF(num_users=3, num_items=3, embedding_dim=4)
    >>> BPRHogwild(iterations=3, workers=1).fit(model, data, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), progress=False)
    >>> model.score_users(torch.tensor([0, 1]), history=None).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        negatives: str = "popularity",
        batch_size: int = 1024,
        workers: int = 2,
        init: str = "uniform",
    ) -> None:
        for name, value in (("iterations", iterations), ("batch_size", batch_size), ("workers", workers)):
            if int(value) < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}", where="BPRHogwild", fix=f"set {name} to a positive integer")
        if not learning_rate > 0 or not regularization >= 0:
            raise ConfigError(f"need learning_rate > 0 and regularization >= 0, got {learning_rate}, {regularization}",
                              where="BPRHogwild", fix="e.g. learning_rate=0.01, regularization=0.01")
        if negatives not in ("popularity", "uniform"):
            raise ConfigError(f"negatives must be 'popularity' or 'uniform', got {negatives!r}", where="BPRHogwild", fix="negatives=popularity")
        if init not in _INITS:
            raise ConfigError(f"init must be one of {_INITS}, got {init!r}", where="BPRHogwild", fix="init=uniform")
        self.learning_rate, self.regularization, self.iterations = learning_rate, regularization, iterations
        self.negatives, self.batch_size, self.workers, self.init = negatives, batch_size, workers, init

    def fit(self, model: Recommender, train: Interactions, *, device: torch.device, generator: torch.Generator,
            progress: bool = True) -> None:
        self.fit_seeded(model, train, device=device, seed=seed_from(generator), progress=progress)

    def fit_seeded(self, model: Recommender, train: Interactions, *, device: torch.device, seed: int, progress: bool = False) -> BPRRun:
        """:meth:`fit` from an integer seed: the same seed and one worker give the same tables."""
        if train.num_interactions == 0:
            raise DataError("no interactions to train on", where=f"{type(model).__name__} (BPRHogwild)", fix="pass a non-empty Interactions")
        user_weight, item_weight, bias_weight = model.user_embedding.weight, model.item_embedding.weight, model.item_bias.weight
        workers = self.workers if device.type == "cpu" else 1
        (num_users, dim), num_items = user_weight.shape, item_weight.shape[0]
        if (train.num_users, train.num_items) != (num_users, num_items):
            raise DataError(f"data has {train.num_users} users / {train.num_items} items, model {num_users} / {num_items}",
                            where="BPRHogwild.fit", fix="build the model with the dataset's num_users and num_items")
        users, items = train.user_index.to(device), train.item_index.to(device)
        seen = SeenPairs(users, items, num_items)
        table = shared_zeros if workers > 1 and can_fork() else torch.zeros
        user_table, item_table = table(num_users, dim + 1), table(num_items, dim + 1)  # (U, D+1), (N, D+1)
        if self.init == "uniform":  # implicit's initialization
            init = torch.Generator().manual_seed(seed)
            user_table[:, :dim] = (torch.rand(num_users, dim, generator=init) - 0.5) / dim
            item_table[:, :dim] = (torch.rand(num_items, dim, generator=init) - 0.5) / dim
        else:
            user_table[:, :dim] = user_weight.detach().cpu()
            item_table[:, :dim] = item_weight.detach().cpu()
            item_table[:, dim:] = bias_weight.detach().cpu()
        user_table[:, dim] = 1.0  # against the item bias column
        user_table, item_table = user_table.to(device), item_table.to(device)
        started = time.perf_counter()
        work = lambda rank: self._train_worker(rank, workers, seed, user_table, item_table, users, items, seen, num_items, progress)
        skipped = sum(run_workers(work, workers))
        run = BPRRun(time.perf_counter() - started, skipped, self.iterations * len(users))
        log.info("BPR: %d iterations, %d workers, %.2fs, %d of %d samples skipped (negative seen)", self.iterations, workers,
                 run.seconds, run.skipped, run.samples)
        with torch.no_grad():
            user_weight.copy_(user_table[:, :dim])
            item_weight.copy_(item_table[:, :dim])
            bias_weight.copy_(item_table[:, dim:])
        return run

    def _train_worker(self, rank: int, workers: int, seed: int, user_table: Tensor, item_table: Tensor, users: Tensor,
                      items: Tensor, seen: SeenPairs, num_items: int, progress: bool) -> int:
        """Every iteration's share ``rank`` of the samples; returns how many were skipped."""
        device, n = users.device, len(users)
        share = -(-n // workers)
        skipped = 0
        iterations = progress_bar(range(self.iterations), desc="BPR", unit="it", disable=None if progress else True) if rank == 0 else range(self.iterations)
        for iteration in iterations:
            generator = torch.Generator(device=device).manual_seed(hash((seed, iteration, rank)) & _SEED_MASK)
            liked = torch.randint(n, (share,), generator=generator, device=device)
            user, positive = users[liked], items[liked]
            if self.negatives == "popularity":
                negative = items[torch.randint(n, (share,), generator=generator, device=device)]
            else:
                negative = torch.randint(num_items, (share,), generator=generator, device=device)
            known = seen.contains(user, negative)
            user, positive, negative = user[~known], positive[~known], negative[~known]
            skipped += int(known.sum())
            for start in range(0, len(user), self.batch_size):
                rows = slice(start, start + self.batch_size)
                bpr_step(user_table, item_table, user[rows], positive[rows], negative[rows], self.learning_rate, self.regularization)
        return skipped


def bpr_step(user_table: Tensor, item_table: Tensor, user: Tensor, positive: Tensor, negative: Tensor, lr: float, reg: float) -> None:
    """One vectorized SGD step on ``B`` (user, positive, negative) triples, ``implicit``'s update per triple.

    With ``z = sigmoid(-(u . (i - j)))``: ``u += lr (z (i - j) - reg u)``, ``i += lr (z u - reg i)``,
    ``j += lr (-z u - reg j)``; the last column is the item bias (the user's stays 1).
    """
    with torch.no_grad():
        u = user_table.index_select(0, user)  # (B, D+1)
        pair = torch.cat([positive, negative])  # (2B,)
        v = item_table.index_select(0, pair)  # (2B, D+1)
        size = len(user)
        difference = v[:size] - v[size:]  # (B, D+1)
        step = torch.sigmoid(-torch.linalg.vecdot(u, difference)).mul_(lr).unsqueeze(1)  # (B, 1): lr * z
        du = difference.mul_(step).sub_(u, alpha=lr * reg)  # (B, D+1), in place of difference
        du[:, -1] = 0.0
        dv = v.mul_(-lr * reg)  # (2B, D+1), in place of v
        dv[:size].addcmul_(step, u)
        dv[size:].addcmul_(step, u, value=-1.0)
        user_table.index_add_(0, user, du)
        item_table.index_add_(0, pair, dv)
