"""BPR trained as ``implicit`` trains it: a Hogwild SGD engine for a BPR-MF model's tables, vectorized in torch.

Each iteration draws as many (user, liked item) pairs as there are interactions, uniformly over the
interactions, and one negative per pair: by default the item of another uniformly drawn interaction
(so negatives follow item popularity, as in ``implicit``), or uniform over items; pairs whose
negative the user has seen are skipped. Updates are plain SGD on ``log sigmoid(x_ui - x_uj)``
with L2 ``regularization`` on the touched rows, ``batch_size`` pairs per vectorized step
(no autograd, no optimizer state). Users and items share one ``(U + N, D)`` table and one
``(U + N,)`` bias vector (the users' entries stay 0), so a step is one gather of its
``(3, B)`` rows (users, positives, negatives), the gradient coefficients computed once, and one
``index_add_`` per tensor; rows of exactly ``D`` floats (the bias apart, not a 65th column)
measured 20-35% less gather/scatter time at ``D = 64`` than ``D + 1``. On CPU, ``workers``
Hogwild workers (:mod:`recsys.training.hogwild`) share the table.

On CPU with numba installed (``kernel="auto"``, or ``"numba"``), the same update runs instead as a compiled
per-pair loop on ``workers`` threads (:mod:`recsys.training.bpr_kernel`, as ``implicit``'s Cython loop):
pairs one after another, so ``batch_size`` does not apply; the draws are the same kind, from the loop's
own per-thread streams. ``kernel="torch"`` keeps the vectorized steps, which GPUs always run.

The engine trains any model with ``user_embedding``, ``item_embedding`` (``nn.Embedding`` of
``(U, D)``, ``(N, D)``) and ``item_bias`` (``(N, 1)``) tables scored ``u . i + b_i``
(:class:`~recsys.models.bpr.BPRMF`), and writes the result back into them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from recsys.errors import ConfigError, DataError
from recsys.runtime import progress_bar
from recsys.training import bpr_kernel
from recsys.training.hogwild import can_fork, run_workers, seed_from, shared_zeros

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.models.base import Recommender

__all__ = ["BPRHogwild", "BPRRun", "SeenPairs", "bpr_step", "fused_bpr_step"]

log = logging.getLogger(__name__)

_SEED_MASK = (1 << 63) - 1
_BITMAP_BYTES = 1 << 28  # seen (user, item) pairs as a bitmap up to 256 MiB, else a sorted key array
_INITS = ("uniform", "model")
_KERNELS = ("auto", "numba", "torch")


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
        kernel: str = "auto",
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
        if kernel not in _KERNELS:
            raise ConfigError(f"kernel must be one of {_KERNELS}, got {kernel!r}", where="BPRHogwild", fix="kernel=auto")
        if kernel == "numba" and not bpr_kernel.available():
            raise ConfigError("kernel='numba' but numba is not installed", where="BPRHogwild", fix="pip install numba, or kernel=auto")
        self.learning_rate, self.regularization, self.iterations = learning_rate, regularization, iterations
        self.negatives, self.batch_size, self.workers, self.init, self.kernel = negatives, batch_size, workers, init, kernel

    def warm_up(self, device: torch.device) -> None:
        """Load the compiled loop now if a fit on ``device`` will run it (see :func:`~recsys.training.engine.warm_up_in_background`)."""
        if self.compiled(device):
            bpr_kernel.load()

    def compiled(self, device: torch.device) -> bool:
        """Whether a fit on ``device`` runs the compiled per-pair loop (:mod:`recsys.training.bpr_kernel`)."""
        return device.type == "cpu" and self.kernel != "torch" and bpr_kernel.available()

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
        compiled = self.compiled(device)
        users, items = train.user_index.to(device), train.item_index.to(device)
        seen = None if compiled else SeenPairs(users, items, num_items)
        table = shared_zeros if workers > 1 and can_fork() and not compiled else torch.zeros
        factors, bias = table(num_users + num_items, dim), table(num_users + num_items)  # (U+N, D), (U+N,): users, then items
        if self.init == "uniform":  # implicit's initialization
            init = torch.Generator().manual_seed(seed)
            factors[:num_users] = (torch.rand(num_users, dim, generator=init) - 0.5) / dim
            factors[num_users:] = (torch.rand(num_items, dim, generator=init) - 0.5) / dim
        else:
            factors[:num_users] = user_weight.detach().cpu()
            factors[num_users:] = item_weight.detach().cpu()
            bias[num_users:] = bias_weight.detach().cpu().view(-1)
        factors, bias = factors.to(device), bias.to(device)
        if compiled:
            bpr_kernel.load()  # the compiled code, from numba's cache: outside the timing, as implicit's at import
        started = time.perf_counter()
        if compiled:
            skipped = self._train_compiled(workers, seed, factors, bias, users, items, num_users, num_items, progress)
        else:
            work = lambda rank: self._train_worker(rank, workers, seed, factors, bias, users, items, seen, num_users, num_items, progress)
            skipped = sum(run_workers(work, workers))
        run = BPRRun(time.perf_counter() - started, skipped, self.iterations * len(users))
        log.info("BPR: %d iterations, %d workers, %.2fs, %d of %d samples skipped (negative seen)", self.iterations, workers,
                 run.seconds, run.skipped, run.samples)
        with torch.no_grad():
            user_weight.copy_(factors[:num_users])
            item_weight.copy_(factors[num_users:])
            bias_weight.copy_(bias[num_users:].unsqueeze(1))
        return run

    def _train_compiled(self, workers: int, seed: int, factors: Tensor, bias: Tensor, users: Tensor, items: Tensor,
                        num_users: int, num_items: int, progress: bool) -> int:
        """Every iteration as one call of the compiled loop, ``workers`` threads; returns how many pairs were skipped."""
        users_np, items_np = users.numpy().astype(np.int64), items.numpy().astype(np.int64)
        indptr, indices = bpr_kernel.csr_rows(users_np, items_np, num_users, num_items)
        words = bpr_kernel.seen_bitmap(indptr, indices, num_items)
        factors_np, bias_np = factors.numpy(), bias.numpy()  # the tables themselves: updated in place
        skipped = 0
        for iteration in progress_bar(range(self.iterations), desc="BPR", unit="it", disable=None if progress else True):
            skipped += bpr_kernel.bpr_iteration(
                factors_np, bias_np, users_np, items_np, indptr, indices, words, num_users=num_users, num_items=num_items,
                popularity=self.negatives == "popularity", lr=self.learning_rate, reg=self.regularization,
                seed=hash((seed, iteration)) & _SEED_MASK, threads=workers,
            )
        return skipped

    def _train_worker(self, rank: int, workers: int, seed: int, factors: Tensor, bias: Tensor, users: Tensor, items: Tensor,
                      seen: SeenPairs, num_users: int, num_items: int, progress: bool) -> int:
        """Every iteration's share ``rank`` of the samples; returns how many were skipped."""
        device, n = users.device, len(users)
        share = -(-n // workers)
        skipped = 0
        item_rows = items + num_users  # items' rows in the shared table
        iterations = progress_bar(range(self.iterations), desc="BPR", unit="it", disable=None if progress else True) if rank == 0 else range(self.iterations)
        for iteration in iterations:
            generator = torch.Generator(device=device).manual_seed(hash((seed, iteration, rank)) & _SEED_MASK)
            liked = torch.randint(n, (share,), generator=generator, device=device)
            user = users[liked]
            if self.negatives == "popularity":
                negative = items[torch.randint(n, (share,), generator=generator, device=device)]
            else:
                negative = torch.randint(num_items, (share,), generator=generator, device=device)
            fresh = ~seen.contains(user, negative)
            rows = torch.stack([user, item_rows[liked], negative + num_users])[:, fresh]  # (3, S): one mask for all three
            skipped += share - rows.shape[1]
            for start in range(0, rows.shape[1], self.batch_size):
                fused_bpr_step(factors, bias, rows[:, start : start + self.batch_size], self.learning_rate, self.regularization)
        return skipped


def bpr_step(user_table: Tensor, item_table: Tensor, user: Tensor, positive: Tensor, negative: Tensor, lr: float, reg: float) -> None:
    """One vectorized SGD step on ``B`` (user, positive, negative) triples, ``implicit``'s update per triple,
    on ``implicit``'s layout (two tables, the item bias a last column against the users' constant 1);
    the engine runs the same update as :func:`fused_bpr_step`.

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


def fused_bpr_step(factors: Tensor, bias: Tensor, rows: Tensor, lr: float, reg: float) -> None:
    """:func:`bpr_step` on one shared table: ``rows`` ``(3, B)`` (users, positives, negatives) index ``factors``
    ``(R, D)`` and ``bias`` ``(R,)``; a user's bias entry stays 0.

    One gather per tensor into a ``(3, B, D)`` block (each role's rows contiguous: about 25% less time per
    step than a ``(B, 3, D)`` block, 14-20% less than :func:`bpr_step`, one thread, ``D = 64``), the
    coefficients once, the block turned into its update in place, one ``index_add_`` per tensor.

    >>> factors, bias = torch.ones(3, 2), torch.zeros(3)
    >>> fused_bpr_step(factors, bias, torch.tensor([[0], [1], [2]]), lr=0.5, reg=0.0)
    >>> factors.tolist(), bias.tolist()
    ([[1.0, 1.0], [1.25, 1.25], [0.75, 0.75]], [0.0, 0.25, -0.25])
    """
    with torch.no_grad():
        size, flat = rows.shape[1], rows.reshape(-1)
        block = factors.index_select(0, flat).view(3, size, -1)  # (3, B, D)
        offset = bias.index_select(0, flat).view(3, size)  # (3, B), row 0 is 0
        user, positive, negative = block[0], block[1], block[2]  # (B, D) each
        difference = torch.sub(positive, negative)  # (B, D)
        score = torch.linalg.vecdot(user, difference).add_(offset[1]).sub_(offset[2])  # (B,): x_ui - x_uj
        step = torch.sigmoid(score.neg_()).mul_(lr)  # (B,): lr * z
        pull = user * step.unsqueeze(1)  # (B, D): lr z u, before the block is scaled
        block.mul_(-lr * reg)
        offset.mul_(-lr * reg)
        user.addcmul_(difference, step.unsqueeze(1))
        positive.add_(pull)
        negative.sub_(pull)
        offset[1].add_(step)
        offset[2].sub_(step)
        factors.index_add_(0, flat, block.view(3 * size, -1))
        bias.index_add_(0, flat, offset.view(-1))
