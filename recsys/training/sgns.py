"""Skip-gram / CBOW with negative sampling (SGNS): the Hogwild engine behind ``Word2Vec`` and ``Item2Vec``.

Training is minibatch Hogwild SGD, as in word2vec.c but vectorized: each epoch subsamples the
corpus, draws every center's (dynamic) window at once, and processes ``batch_size`` centers per
step. A step gathers the centers' context rows and their output rows (the center plus ``negative``
noise tokens, shared by the contexts of one center as in Ji et al. 2016), computes the logistic
gradients with batched matmuls and adds them back with ``index_add_`` into the touched rows only
(no autograd, no optimizer state). The learning rate decays linearly from ``alpha`` to
``min_alpha`` over all epochs. On CPU, ``workers`` forked processes (threads where there is no
fork) train disjoint shares of every epoch concurrently on shared tables (Hogwild, see
:mod:`recsys.training.hogwild`), each with one intra-op thread.

:class:`SGNS` holds the hyperparameters (gensim's names) and trains input/output tables on a corpus
given as token indices; :class:`SGNSEngine` is the :class:`~recsys.training.engine.FitEngine` that
trains a model exposing those hyperparameters (``Item2Vec``) on its training sequences.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch
from torch import Tensor

from recsys.data.skipgram import (
    AliasSampler,
    draw_reach,
    keep_probabilities,
    noise_distribution,
    pack_contexts,
    sentence_ids,
    window_contexts,
)
from recsys.errors import ConfigError, DataError
from recsys.runtime import progress_bar
from recsys.training.hogwild import can_fork, run_workers, seed_from, shared_zeros

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.models.base import Recommender

__all__ = ["SGNS", "SGNSEngine", "SGNSResult", "build_vocabulary", "outputs", "sgns_step"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 18  # centers whose contexts are materialized at once
_GROUP = 8  # batches whose centers are sorted by context count together
_SEED_MASK = (1 << 63) - 1


def build_vocabulary(frame: pl.DataFrame, min_count: int, where: str = "Word2Vec.fit") -> tuple[list, Tensor, Tensor, Tensor]:
    """Keys by descending count (ties by key), their counts, and the corpus as (tokens, offsets) of kept tokens.

    ``frame`` has ``sentence`` and ``token`` columns in sentence order.

    >>> keys, counts, tokens, offsets = build_vocabulary(pl.DataFrame({"sentence": [0, 0, 1], "token": ["b", "a", "b"]}), 1)
    >>> keys, counts.tolist(), tokens.tolist(), offsets.tolist()
    (['b', 'a'], [2, 1], [0, 1, 0], [0, 2, 3])
    """
    if frame.height == 0:
        raise DataError("the corpus is empty", where=where, fix="pass at least one non-empty sentence")
    counts = frame.group_by("token").len().filter(pl.col("len") >= min_count)
    if counts.height == 0:
        top = frame["token"].value_counts(sort=True).row(0)
        raise DataError(
            f"min_count={min_count} removes every token (the most frequent, {top[0]!r}, occurs {top[1]} times)",
            where=where, fix=f"lower min_count to at most {top[1]}",
        )
    counts = counts.sort(["len", "token"], descending=[True, False]).with_row_index("index")
    rows = frame.join(counts.select("token", "index"), on="token", how="inner", maintain_order="left")
    sentence = rows["sentence"]
    starts = (sentence != sentence.shift(1)).fill_null(True)
    first = torch.from_numpy(starts.arg_true().to_numpy().astype(np.int64))
    offsets = torch.cat([first, torch.tensor([rows.height])])
    tokens = torch.from_numpy(rows["index"].cast(pl.Int64).to_numpy().copy())
    keys = counts["token"].to_list()
    return keys, torch.from_numpy(counts["len"].cast(pl.Int64).to_numpy().copy()), tokens, offsets


@dataclass(frozen=True)
class SGNSResult:
    """Trained tables and counters of one :meth:`SGNS.train` run."""

    vectors: Tensor  # (V, D) input vectors, on CPU
    syn1neg: Tensor  # (V, D) output vectors, on CPU
    effective_words: int  # centers trained after subsampling, all epochs
    seconds: float


@dataclass(frozen=True)
class SGNS:
    """SGNS hyperparameters (gensim's names) and the training loop over a tokenized corpus.

    >>> keys, counts, tokens, offsets = build_vocabulary(pl.DataFrame({"sentence": [0] * 3 + [1] * 3, "token": [1, 2, 3, 7, 8, 9]}), 1)
    >>> result = SGNS(vector_size=4, window=2, epochs=2, sample=0.0).train(counts, tokens, offsets, workers=1, device=torch.device("cpu"), seed=0)
    >>> result.vectors.shape, result.effective_words
    (torch.Size([6, 4]), 12)
    """

    vector_size: int = 100
    window: int = 5
    negative: int = 5
    sg: int = 1
    sample: float = 1e-3
    epochs: int = 5
    alpha: float = 0.025
    min_alpha: float = 0.0001
    ns_exponent: float = 0.75
    shrink_windows: bool = True
    basket: bool = False
    batch_size: int = 256
    init_scale: float = 0.75

    @classmethod
    def from_model(cls, model: Any) -> SGNS:
        """The hyperparameters a model carries as attributes of the same names (missing ones: defaults)."""
        return cls(**{f.name: getattr(model, f.name) for f in fields(cls) if hasattr(model, f.name)})

    def check(self, where: str = "Word2Vec") -> None:
        """Raise :class:`ConfigError` for values training cannot use."""
        if not self.init_scale > 0:
            raise ConfigError(f"init_scale must be > 0, got {self.init_scale}", where=where, fix="e.g. init_scale=0.75")
        positive = {"vector_size": self.vector_size, "window": self.window, "negative": self.negative, "epochs": self.epochs, "batch_size": self.batch_size}
        for name, value in positive.items():
            if int(value) < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}", where=where, fix=f"set {name} to a positive integer")
        if self.sg not in (0, 1):
            raise ConfigError(f"sg must be 0 (CBOW) or 1 (skip-gram), got {self.sg}", where=where, fix="set sg=1 or sg=0")
        if not 0 < self.alpha or not 0 <= self.min_alpha <= self.alpha:
            raise ConfigError(f"need 0 <= min_alpha <= alpha and alpha > 0, got {self.alpha}, {self.min_alpha}", where=where, fix="e.g. alpha=0.025, min_alpha=0.0001")

    def lr(self, progress: float) -> float:
        """Learning rate at ``progress`` in [0, 1] of all epochs: linear from ``alpha`` to ``min_alpha``."""
        return self.alpha - (self.alpha - self.min_alpha) * min(progress, 1.0)

    def train(self, counts: Tensor, tokens: Tensor, offsets: Tensor, *, workers: int, device: torch.device, seed: int,
              progress: bool = False) -> SGNSResult:
        """Train fresh tables for ``len(counts)`` keys on ``tokens`` (sentences split at ``offsets``).

        ``workers`` Hogwild workers on CPU (one on other devices); the same ``seed`` and one worker
        give the same vectors.
        """
        workers = workers if device.type == "cpu" else 1
        num_keys, dim = len(counts), self.vector_size
        table = shared_zeros if workers > 1 and can_fork() else torch.zeros
        w_in, w_out = table(num_keys + 1, dim), table(num_keys, dim)  # w_in's last row: padding, stays zero
        # uniform in (-init_scale, init_scale) / dim: word2vec.c uses 0.5, gensim 4 uses 1.0
        init = torch.Generator().manual_seed(seed)
        w_in[:num_keys] = (torch.rand(num_keys, dim, generator=init) * 2 - 1) * self.init_scale / dim
        w_in, w_out = w_in.to(device), w_out.to(device)
        sampler = AliasSampler(noise_distribution(counts, self.ns_exponent)).to(device)
        keep = keep_probabilities(counts, self.sample).float().to(device)
        tokens, offsets = tokens.to(device), offsets.to(device)
        sentence = sentence_ids(offsets)
        started = time.perf_counter()
        work = lambda rank: self._train_worker(rank, workers, seed, w_in, w_out, tokens, sentence, offsets, keep, sampler, progress)
        effective = sum(run_workers(work, workers))
        seconds = time.perf_counter() - started
        total = len(tokens) * self.epochs
        log.info("SGNS: %d keys, %d epochs, %d workers, %.2fs, %.0f words/s (%d effective)", num_keys, self.epochs, workers, seconds, total / max(seconds, 1e-9), effective)
        return SGNSResult(w_in[:num_keys].cpu().clone(), w_out.cpu().clone(), effective, seconds)

    def _train_worker(
        self, rank: int, workers: int, seed: int, w_in: Tensor, w_out: Tensor, tokens: Tensor, sentence: Tensor, offsets: Tensor,
        keep: Tensor, sampler: AliasSampler, progress: bool,
    ) -> int:
        """Every epoch's share ``rank`` of the (subsampled, shuffled) centers; returns the centers trained.

        All workers draw the same subsample and order from the epoch's seed, then take every
        ``workers``-th center, so together they cover the epoch once. Each decays its learning
        rate by its own progress, as gensim's threads do.
        """
        device, sg = tokens.device, bool(self.sg)
        effective = 0
        epochs = progress_bar(range(self.epochs), desc="SGNS", unit="epoch", disable=None if progress else True) if rank == 0 else range(self.epochs)
        for epoch in epochs:
            shared = torch.Generator(device=device).manual_seed(hash((seed, epoch)) & _SEED_MASK)
            kept = torch.rand(len(tokens), generator=shared, device=device) < keep[tokens]
            words, where = tokens[kept], sentence[kept]
            order = torch.randperm(len(words), generator=shared, device=device)[rank::workers]
            bounds = None
            if self.basket:
                sentences = torch.arange(len(offsets) - 1, device=device)
                bounds = torch.searchsorted(where, sentences), torch.searchsorted(where, sentences, right=True)
            own = torch.Generator(device=device).manual_seed(hash((seed, epoch, rank)) & _SEED_MASK)
            for context, out, weight, valid, done in self._jobs(words, where, bounds, order, sampler, own):
                sgns_step(w_in, w_out, context, out, weight, valid, self.lr((epoch + done) / self.epochs), sg)
            effective += len(order)
        return effective

    def _jobs(
        self, words: Tensor, where: Tensor, bounds: tuple[Tensor, Tensor] | None, order: Tensor,
        sampler: AliasSampler, generator: torch.Generator,
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, float]]:
        """Steps of one epoch: contexts (B, C), outputs (B, K+1), their weights, context mask (B, C), progress.

        Centers come in random ``order``. Each center's real contexts are packed to the front of
        its row, and within groups of ``_GROUP`` batches centers are sorted by how many they have,
        so each batch carries only as many context columns as its fullest row: about 35% fewer
        gathered rows than padding every window to ``2 * window`` on Amazon Beauty.
        """
        size, window, padding, device = self.batch_size, self.window, sampler.alias.numel(), words.device
        shuffle = torch.Generator().manual_seed(int(torch.randint(1 << 62, (1,), generator=generator, device=device)))
        processed = 0
        for chunk in range(0, len(order), _CHUNK):
            centers = order[chunk : chunk + _CHUNK]  # (C,)
            reach = draw_reach(len(centers), window, generator, device) if self.shrink_windows and not self.basket and window > 1 else None
            context = window_contexts(words, where, centers, window, padding, reach, self.basket, generator, bounds)  # (C, 2W)
            context, count = pack_contexts(context, padding)  # (C, 2W), (C,)
            group = torch.arange(len(centers), device=device) // (size * _GROUP)
            by_count = torch.argsort(group * (2 * window + 1) + count)
            centers, context, count = centers[by_count], context[by_count], count[by_count]
            noise = sampler.sample((len(centers), self.negative), generator)  # (C, K)
            out, weight = outputs(words[centers], noise)  # (C, K+1) each
            valid = (torch.arange(context.shape[1], device=device) < count.unsqueeze(1)).float()  # (C, 2W)
            starts = list(range(0, len(centers), size))
            widths = count[[min(i + size, len(centers)) - 1 for i in starts]].tolist()  # rows sorted within groups: last = fullest
            for j in torch.randperm(len(starts), generator=shuffle).tolist():
                rows, width = slice(starts[j], starts[j] + size), widths[j]
                processed += len(centers[rows])
                if width:
                    yield context[rows, :width], out[rows], weight[rows], valid[rows, :width], processed / len(order)


def outputs(center: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """Output rows ``(B, K+1)`` (the center, then its noise) and their weights: +1 positive, -1 noise, 0 noise equal to the center.

    >>> outputs(torch.tensor([3]), torch.tensor([[3, 5]]))
    (tensor([[3, 3, 5]]), tensor([[ 1., -0., -1.]]))
    """
    out = torch.cat([center.unsqueeze(1), noise], dim=1)  # (B, K+1)
    weight = (out != center.unsqueeze(1)).float().neg_()  # (B, K+1)
    weight[:, 0] = 1.0
    return out, weight


def sgns_step(w_in: Tensor, w_out: Tensor, context: Tensor, out: Tensor, weight: Tensor, valid: Tensor, lr: float, sg: bool) -> None:
    """One Hogwild minibatch step of negative sampling on ``B`` centers, updating only the touched rows.

    ``context (B, C)`` input rows (padding rows zero, ``valid (B, C)`` 0 there), ``out (B, K+1)``
    output rows with ``weight`` from :func:`outputs`. The gradient of ``log sigmoid(x . y_pos) +
    sum_k log sigmoid(-x . y_k)`` w.r.t. a score ``s`` is ``sigmoid(-w s) w`` for weight ``w``
    (``1 - sigmoid(s)`` for the positive, ``-sigmoid(s)`` for noise); rows get ``lr`` times it.
    """
    with torch.no_grad():
        dim = w_in.shape[1]
        y = w_out.index_select(0, out.flatten()).view(*out.shape, dim)  # (B, K+1, D)
        x = w_in.index_select(0, context.flatten()).view(*context.shape, dim)  # (B, C, D)
        if sg:  # each context predicts the center
            w = weight.unsqueeze(1)  # (B, 1, K+1)
            g = torch.bmm(x, y.transpose(1, 2)).mul_(w).neg_().sigmoid_().mul_(w * lr).mul_(valid.unsqueeze(2))  # (B, C, K+1)
            dx = torch.bmm(g, y)  # (B, C, D)
            dy = torch.bmm(g.transpose(1, 2), x)  # (B, K+1, D)
        else:  # the mean of the contexts predicts the center; each context gets the whole error (word2vec.c)
            count = valid.sum(1, keepdim=True)  # (B, 1)
            h = x.sum(1) / count.clamp_min(1)  # (B, D)
            g = torch.bmm(y, h.unsqueeze(2)).squeeze(2).mul_(weight).neg_().sigmoid_().mul_(weight * lr).mul_(count > 0)  # (B, K+1)
            dy = g.unsqueeze(2) * h.unsqueeze(1)  # (B, K+1, D)
            dx = torch.bmm(g.unsqueeze(1), y) * valid.unsqueeze(2)  # (B, C, D)
        w_in.index_add_(0, context.flatten(), dx.view(-1, dim))  # (alpha= would take a slower kernel)
        w_out.index_add_(0, out.flatten(), dy.reshape(-1, dim))


class SGNSEngine:
    """Fits a model's item vectors by SGNS over each user's time-ordered training items (one sentence per user).

    The model exposes the :class:`SGNS` hyperparameters as attributes (``vector_size``, ``window``,
    ``negative``, ..., ``min_count``) and ``set_vectors(rows, vectors)``, which receives the item
    indices kept by ``min_count`` and their ``(V, D)`` input vectors. ``workers`` Hogwild workers on CPU.

    >>> import polars as pl
    >>> from recsys.data.frame import from_frame
    >>> from recsys.models.item2vec import Item2Vec
    >>> data = from_frame(pl.DataFrame({"user": [0, 0, 0, 1, 1, 1], "item": [1, 2, 3, 1, 2, 3], "timestamp": [0, 1, 2, 0, 1, 2]}))
    >>> model = Item2Vec(num_items=3, vector_size=8, epochs=2, sample=0.0)
    >>> SGNSEngine(workers=1).fit(model, data, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), progress=False)
    >>> bool(model.known.all()), model.score_users(torch.tensor([0, 1]), history=data).shape
    (True, torch.Size([2, 3]))
    """

    def __init__(self, workers: int = 2) -> None:
        if int(workers) < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}", where="SGNSEngine", fix="set model.engine.workers to a positive integer")
        self.workers = workers

    def fit(self, model: Recommender, train: Interactions, *, device: torch.device, generator: torch.Generator,
            progress: bool = True) -> None:
        self.fit_seeded(model, train, device=device, seed=seed_from(generator), progress=progress)

    def fit_seeded(self, model: Recommender, train: Interactions, *, device: torch.device, seed: int,
                   progress: bool = False) -> SGNSResult:
        """:meth:`fit` from an integer seed, as ``Word2Vec(seed=...)`` trains: the same seed and one worker give
        the same vectors as ``Word2Vec`` on the same (user, item) corpus. Returns the run (``seconds``: the
        training loop alone)."""
        where = f"{type(model).__name__} (SGNSEngine)"
        hyper = SGNS.from_model(model)
        hyper.check(where)
        frame = train.frame.select("user", "item").sort("user", maintain_order=True)  # rows of a user in time order
        frame = pl.DataFrame({"sentence": frame["user"], "token": frame["item"]})
        keys, counts, tokens, offsets = build_vocabulary(frame, int(getattr(model, "min_count", 1)), where=where)
        result = hyper.train(counts, tokens, offsets, workers=self.workers, device=device, seed=seed, progress=progress)
        model.set_vectors(torch.tensor(keys, dtype=torch.long), result.vectors)
        return result
