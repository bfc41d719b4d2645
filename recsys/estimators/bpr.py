"""``BayesianPersonalizedRanking``: BPR-MF trained as ``implicit`` trains it, vectorized in torch.

Each iteration draws as many (user, liked item) pairs as there are interactions, uniformly over the
interactions, and one negative per pair: by default the item of another uniformly drawn interaction
(so negatives follow item popularity, as in ``implicit``), or uniform over items; pairs whose
negative the user has seen are skipped. Updates are plain SGD on ``log sigmoid(x_ui - x_uj)``
with L2 ``regularization`` on the touched rows, ``batch_size`` pairs per vectorized step,
gathering and ``index_add_``-ing only the touched rows (no autograd, no optimizer state); the
item bias is an extra item column against a constant 1 in the user's. On CPU, ``workers``
Hogwild workers (:mod:`recsys.estimators.hogwild`) share the tables. The result is a
:class:`~recsys.models.bpr.BPRMF`, scored by the shared evaluator like every other model.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from recsys.errors import ConfigError, DataError
from recsys.estimators.hogwild import can_fork, run_workers, shared_zeros
from recsys.estimators.word2vec import resolve_device
from recsys.models.bpr import BPRMF

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions

log = logging.getLogger(__name__)

_SEED_MASK = (1 << 63) - 1
_BITMAP_BYTES = 1 << 28  # seen (user, item) pairs as a bitmap up to 256 MiB, else a sorted key array


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


class BayesianPersonalizedRanking:
    """BPR-MF with ``implicit``'s hyperparameter names and training scheme; ``fit`` returns ``self``, ``model_`` the BPRMF.

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
    ) -> None:
        self.factors, self.learning_rate, self.regularization, self.iterations = factors, learning_rate, regularization, iterations
        self.negatives, self.batch_size, self.workers, self.seed, self.device = negatives, batch_size, workers, seed, device

    def _check_params(self) -> None:
        for name in ("factors", "iterations", "batch_size", "workers"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", where="BayesianPersonalizedRanking", fix=f"set {name} to a positive integer")
        if not self.learning_rate > 0 or not self.regularization >= 0:
            raise ConfigError(f"need learning_rate > 0 and regularization >= 0, got {self.learning_rate}, {self.regularization}",
                              where="BayesianPersonalizedRanking", fix="e.g. learning_rate=0.01, regularization=0.01")
        if self.negatives not in ("popularity", "uniform"):
            raise ConfigError(f"negatives must be 'popularity' or 'uniform', got {self.negatives!r}", where="BayesianPersonalizedRanking", fix="negatives=popularity")

    def fit(self, interactions: Interactions) -> BayesianPersonalizedRanking:
        """Train on ``interactions`` (every (user, item) row is a positive); sets ``model_`` and ``train_seconds_``."""
        self._check_params()
        if interactions.num_interactions == 0:
            raise DataError("no interactions to train on", where="BayesianPersonalizedRanking.fit", fix="pass a non-empty Interactions")
        device = resolve_device(self.device)
        workers = self.workers if device.type == "cpu" else 1
        num_users, num_items, dim = interactions.num_users, interactions.num_items, self.factors
        users, items = interactions.user_index.to(device), interactions.item_index.to(device)
        seen = SeenPairs(users, items, num_items)
        init = torch.Generator().manual_seed(self.seed)
        table = shared_zeros if workers > 1 and can_fork() else torch.zeros
        user_table, item_table = table(num_users, dim + 1), table(num_items, dim + 1)
        user_table[:, :dim] = (torch.rand(num_users, dim, generator=init) - 0.5) / dim  # implicit's initialization
        item_table[:, :dim] = (torch.rand(num_items, dim, generator=init) - 0.5) / dim
        user_table[:, dim] = 1.0  # against the item bias column
        user_table, item_table = user_table.to(device), item_table.to(device)
        started = time.perf_counter()
        work = lambda rank: self._train_worker(rank, workers, user_table, item_table, users, items, seen, num_items)
        skipped = sum(run_workers(work, workers))
        self.train_seconds_ = time.perf_counter() - started
        log.info("BPR: %d iterations, %d workers, %.2fs, %d of %d samples skipped (negative seen)", self.iterations, workers,
                 self.train_seconds_, skipped, self.iterations * len(users))
        model = BPRMF(num_users, num_items, embedding_dim=dim, reg=self.regularization)
        with torch.no_grad():
            model.user_embedding.weight.copy_(user_table[:, :dim])
            model.item_embedding.weight.copy_(item_table[:, :dim])
            model.item_bias.weight.copy_(item_table[:, dim:])
        self.model_ = model.to(device)
        return self

    def _train_worker(self, rank: int, workers: int, user_table: Tensor, item_table: Tensor, users: Tensor, items: Tensor,
                      seen: SeenPairs, num_items: int) -> int:
        """Every iteration's share ``rank`` of the samples; returns how many were skipped."""
        device, n = users.device, len(users)
        share = -(-n // workers)
        skipped = 0
        for iteration in range(self.iterations):
            generator = torch.Generator(device=device).manual_seed(hash((self.seed, iteration, rank)) & _SEED_MASK)
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
                _bpr_step(user_table, item_table, user[rows], positive[rows], negative[rows], self.learning_rate, self.regularization)
        return skipped


def _bpr_step(user_table: Tensor, item_table: Tensor, user: Tensor, positive: Tensor, negative: Tensor, lr: float, reg: float) -> None:
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
