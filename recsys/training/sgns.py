"""Skip-gram / CBOW with negative sampling (SGNS) and/or hierarchical softmax: the Hogwild engine behind ``Word2Vec`` and ``Item2Vec``.

Training is minibatch Hogwild SGD, as in word2vec.c but vectorized: each epoch subsamples the
corpus, draws every center's (dynamic) window at once, and processes ``batch_size`` centers per
step. A step gathers the centers' context rows and their output rows, computes the logistic
gradients with batched matmuls and adds them back with ``index_add_`` into the touched rows only
(no autograd, no optimizer state). The output rows of a center are the center plus ``negative``
noise tokens (shared by the contexts of one center as in Ji et al. 2016) and, with ``hs=1``, the
inner nodes on the center's Huffman path (:class:`~recsys.data.huffman.HuffmanTree`, gensim's tree),
each a logistic target ``1 - code``; both kinds live in one output table (``syn1neg`` rows, then
``syn1`` rows), so one step trains both, as word2vec.c does with ``-hs 1 -negative k``. Skip-gram
path nodes also carry gensim's in-window order to first order (see :func:`sgns_step`). The learning
rate decays linearly from ``alpha`` to ``min_alpha`` over all epochs. On CPU, ``workers`` forked processes (threads where there is no
fork) train disjoint shares of every epoch concurrently on shared tables (Hogwild, see
:mod:`recsys.training.hogwild`), each with one intra-op thread.

On CPU with numba installed (``kernel="auto"``, or ``"numba"``), training runs instead as a compiled
per-center loop on ``workers`` threads (:mod:`recsys.training.sgns_kernel`, word2vec.c's update order, the
Huffman path nodes too): centers one after another in sentence order, so ``batch_size`` does not apply and
no update of a row repeated within a batch is summed; its draws come from the loop's own per-thread streams,
and its input vectors start at gensim's scale (``init_scale=None``: 1.0; 0.75 on the torch steps).
``kernel="torch"`` keeps the vectorized steps, which GPUs always run.

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

from recsys.data.huffman import HuffmanTree
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
from recsys.training import sgns_kernel
from recsys.training.hogwild import can_fork, run_workers, seed_from, shared_zeros

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.models.base import Recommender

__all__ = ["SGNS", "SGNSEngine", "SGNSResult", "build_vocabulary", "check_kernel", "check_objective", "outputs", "sgns_step"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 18  # centers whose contexts are materialized at once
_GROUP = 8  # batches whose centers are sorted by context count together
_SEED_MASK = (1 << 63) - 1
_KERNELS = ("auto", "numba", "torch")
# compiled loop: noise drawn once per center, shared by its contexts (as the torch path). Fresh noise per pair (word2vec.c,
# gensim) measured 3% lower HR@10 on Amazon Beauty (0.0393 vs 0.0405, 3 seeds, gensim 0.0396) and 25% more CPU time
_SHARED_NOISE = True


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


def check_objective(negative: int, hs: int, sg: int, cbow_mean: int, where: str) -> None:
    """Raise :class:`ConfigError` unless ``negative >= 0``, ``hs``, ``sg``, ``cbow_mean`` in {0, 1}, and something trains.

    >>> check_objective(negative=0, hs=1, sg=1, cbow_mean=1, where="Word2Vec")  # hierarchical softmax alone: fine
    >>> try:
    ...     check_objective(negative=0, hs=0, sg=1, cbow_mean=1, where="Word2Vec")
    ... except ConfigError as error:
    ...     print(str(error).splitlines()[0])
    hs=0 and negative=0 leave nothing to train
    """
    if int(negative) < 0:
        raise ConfigError(f"negative must be >= 0, got {negative}", where=where, fix="set negative to 0 (with hs=1) or a positive integer, e.g. 5")
    for name, value, meaning in (("hs", hs, "0 negative sampling only, 1 hierarchical softmax"), ("sg", sg, "0 CBOW, 1 skip-gram"),
                                 ("cbow_mean", cbow_mean, "0 sum, 1 mean of the context vectors")):
        if value not in (0, 1):
            raise ConfigError(f"{name} must be 0 or 1 ({meaning}), got {value}", where=where, fix=f"set {name}=0 or {name}=1")
    if not hs and not negative:
        raise ConfigError("hs=0 and negative=0 leave nothing to train", where=where, fix="set negative=5 (negative sampling) and/or hs=1 (hierarchical softmax)")


def check_kernel(kernel: str, where: str) -> None:
    """Raise :class:`ConfigError` unless ``kernel`` is ``auto``, ``torch``, or ``numba`` with numba installed
    (negative sampling and/or hierarchical softmax alike).

    >>> check_kernel("torch", where="Word2Vec")
    >>> try:
    ...     check_kernel("cython", where="Word2Vec")
    ... except ConfigError as error:
    ...     print(str(error).splitlines()[0])
    kernel must be one of ('auto', 'numba', 'torch'), got 'cython'
    """
    if kernel not in _KERNELS:
        raise ConfigError(f"kernel must be one of {_KERNELS}, got {kernel!r}", where=where, fix="kernel=auto")
    if kernel == "numba" and not sgns_kernel.available():
        raise ConfigError("kernel='numba' but numba is not installed", where=where, fix="pip install numba, or kernel=auto")


@dataclass(frozen=True)
class _Targets:
    """The output rows of every center: itself and ``negative`` noise draws, and/or its Huffman path's inner nodes.

    Output-table rows: ``syn1neg`` (``0..V-1``) when ``negative > 0``, then ``syn1``, so ``points`` are offset.
    """

    num_keys: int
    sampler: AliasSampler | None  # None when negative=0
    negative: int
    points: Tensor | None = None  # (V, L) output rows of each word's path; None when hs=0
    signs: Tensor | None = None  # (V, L) 1 - 2 * code on the path, 0 past it
    lengths: Tensor | None = None  # (V,)

    @classmethod
    def build(cls, counts: Tensor, negative: int, ns_exponent: float, tree: HuffmanTree | None, device: torch.device) -> _Targets:
        sampler = AliasSampler(noise_distribution(counts, ns_exponent)).to(device) if negative else None
        if tree is None:
            return cls(len(counts), sampler, negative)
        offset = len(counts) if negative else 0  # syn1 rows follow syn1neg's
        return cls(len(counts), sampler, negative, tree.points.to(device) + offset, tree.signs().to(device), tree.lengths.to(device))

    def draw(self, center: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Output rows ``(C, P)``, their weights (see :func:`outputs`; path steps: their signs) and path lengths ``(C,)``."""
        out, weight = [], []
        if self.sampler is not None:
            noise = self.sampler.sample((len(center), self.negative), generator)  # (C, K)
            rows, signs = outputs(center, noise)  # (C, K+1) each
            out.append(rows)
            weight.append(signs)
        depth = torch.zeros_like(center)  # (C,)
        if self.points is not None:
            out.append(self.points[center])  # (C, L)
            weight.append(self.signs[center])  # (C, L)
            depth = self.lengths[center]
        return torch.cat(out, 1), torch.cat(weight, 1), depth

    def paths(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The paths as the compiled loop reads them (:func:`~recsys.training.sgns_kernel.sgns_epoch`): ``offsets (V+1,)``
        into the words' concatenated output rows ``points`` (root first) and their bits ``1 - sign`` over 2, float32;
        None without hs."""
        if self.points is None:
            return None
        inside = torch.arange(self.points.shape[1], device=self.points.device) < self.lengths.unsqueeze(1)  # (V, L)
        offsets = torch.cat([self.lengths.new_zeros(1), self.lengths.cumsum(0)])
        codes = (1 - self.signs[inside]) / 2
        return offsets.cpu().numpy(), self.points[inside].cpu().numpy(), codes.float().cpu().numpy()

    @property
    def path_from(self) -> int | None:
        """The first path column of :meth:`draw`'s outputs (after the center and its noise); None without hs."""
        return None if self.points is None else (self.negative + 1 if self.sampler is not None else 0)

    def columns(self, depth: Tensor, size: int) -> list[int]:
        """Output columns each batch of ``size`` centers needs: the noise block plus its longest path."""
        block = self.negative + 1 if self.sampler is not None else 0
        padded = depth.new_zeros(-(-len(depth) // size) * size)
        padded[: len(depth)] = depth
        return (padded.view(-1, size).amax(1) + block).tolist()


@dataclass(frozen=True)
class SGNSResult:
    """Trained tables and counters of one :meth:`SGNS.train` run."""

    vectors: Tensor  # (V, D) input vectors, on CPU
    syn1neg: Tensor  # (V, D) negative-sampling output vectors, on CPU; (0, D) when negative=0
    effective_words: int  # centers trained after subsampling, all epochs
    seconds: float
    syn1: Tensor | None = None  # (V-1, D) hierarchical-softmax inner-node vectors, on CPU; None when hs=0
    tree: HuffmanTree | None = None  # the Huffman tree syn1 belongs to; None when hs=0


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
    hs: int = 0
    sg: int = 1
    cbow_mean: int = 1
    sample: float = 1e-3
    epochs: int = 5
    alpha: float = 0.025
    min_alpha: float = 0.0001
    ns_exponent: float = 0.75
    shrink_windows: bool = True
    basket: bool = False
    batch_size: int = 256
    init_scale: float | None = None  # None: 1.0 (gensim's) on the compiled loop, 0.75 on the torch steps

    @classmethod
    def from_model(cls, model: Any) -> SGNS:
        """The hyperparameters a model carries as attributes of the same names (missing ones: defaults)."""
        return cls(**{f.name: getattr(model, f.name) for f in fields(cls) if hasattr(model, f.name)})

    def check(self, where: str = "Word2Vec") -> None:
        """Raise :class:`ConfigError` for values training cannot use."""
        if self.init_scale is not None and not self.init_scale > 0:
            raise ConfigError(f"init_scale must be > 0, got {self.init_scale}", where=where, fix="e.g. init_scale=0.75")
        positive = {"vector_size": self.vector_size, "window": self.window, "epochs": self.epochs, "batch_size": self.batch_size}
        for name, value in positive.items():
            if int(value) < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}", where=where, fix=f"set {name} to a positive integer")
        check_objective(self.negative, self.hs, self.sg, self.cbow_mean, where)
        if not 0 < self.alpha or not 0 <= self.min_alpha <= self.alpha:
            raise ConfigError(f"need 0 <= min_alpha <= alpha and alpha > 0, got {self.alpha}, {self.min_alpha}", where=where, fix="e.g. alpha=0.025, min_alpha=0.0001")

    def lr(self, progress: float) -> float:
        """Learning rate at ``progress`` in [0, 1] of all epochs: linear from ``alpha`` to ``min_alpha``."""
        return self.alpha - (self.alpha - self.min_alpha) * min(progress, 1.0)

    def compiled(self, kernel: str, device: torch.device) -> bool:
        """Whether :meth:`train` with ``kernel`` on ``device`` runs the compiled loop (:mod:`recsys.training.sgns_kernel`)."""
        return kernel != "torch" and device.type == "cpu" and sgns_kernel.available()

    def train(self, counts: Tensor, tokens: Tensor, offsets: Tensor, *, workers: int, device: torch.device, seed: int,
              progress: bool = False, kernel: str = "auto") -> SGNSResult:
        """Train fresh tables for ``len(counts)`` keys on ``tokens`` (sentences split at ``offsets``).

        ``workers`` Hogwild workers on CPU (one on other devices); the same ``seed`` and one worker
        give the same vectors. ``kernel``: see :func:`check_kernel` and the module docstring.
        """
        check_kernel(kernel, where="SGNS.train")
        compiled = self.compiled(kernel, device)
        workers = workers if device.type == "cpu" else 1
        num_keys, dim = len(counts), self.vector_size
        tree = HuffmanTree.from_counts(counts) if self.hs else None
        rows_neg, rows_hs = num_keys if self.negative else 0, num_keys - 1 if self.hs else 0
        table = shared_zeros if workers > 1 and can_fork() and not compiled else torch.zeros
        w_in, w_out = table(num_keys + 1, dim), table(max(rows_neg + rows_hs, 1), dim)  # w_in's last row: padding, stays zero
        # uniform in (-init_scale, init_scale) / dim: word2vec.c uses 0.5, gensim 4 uses 1.0. On Amazon Beauty (3 seeds) the compiled
        # loop measured HR@10 0.0391 with 0.75 and 0.0405 with 1.0 (gensim: 0.0396); the torch steps were tuned at 0.75
        scale = self.init_scale if self.init_scale is not None else 1.0 if compiled else 0.75
        init = torch.Generator().manual_seed(seed)
        w_in[:num_keys] = (torch.rand(num_keys, dim, generator=init) * 2 - 1) * scale / dim
        w_in, w_out = w_in.to(device), w_out.to(device)
        targets = _Targets.build(counts, self.negative, self.ns_exponent, tree, device)
        keep = keep_probabilities(counts, self.sample).float().to(device)
        tokens, offsets = tokens.to(device), offsets.to(device)
        if compiled:
            sgns_kernel.load()  # the compiled code, from numba's cache: outside the timing, as gensim's at import
        started = time.perf_counter()
        if compiled:
            effective = self._train_compiled(w_in, w_out, tokens, offsets, keep, targets, workers, seed, progress)
        else:
            sentence = sentence_ids(offsets)
            work = lambda rank: self._train_worker(rank, workers, seed, w_in, w_out, tokens, sentence, offsets, keep, targets, progress)
            effective = sum(run_workers(work, workers))
        seconds = time.perf_counter() - started
        total = len(tokens) * self.epochs
        log.info("SGNS: %d keys, %d epochs, %d workers, %.2fs, %.0f words/s (%d effective)", num_keys, self.epochs, workers, seconds, total / max(seconds, 1e-9), effective)
        w_out = w_out.cpu()
        syn1 = w_out[rows_neg : rows_neg + rows_hs].clone() if tree is not None else None
        return SGNSResult(w_in[:num_keys].cpu().clone(), w_out[:rows_neg].clone(), effective, seconds, syn1, tree)

    def _train_compiled(self, w_in: Tensor, w_out: Tensor, tokens: Tensor, offsets: Tensor, keep: Tensor, targets: _Targets,
                        workers: int, seed: int, progress: bool) -> int:
        """Every epoch as one call of the compiled loop on ``workers`` threads, in place on the tables; returns the centers trained."""
        sampler = targets.sampler
        noise = (sampler.prob.numpy(), sampler.alias.numpy()) if sampler is not None else (np.ones(1, np.float32), np.zeros(1, np.int64))
        arrays = [t.numpy() for t in (tokens, offsets, keep)] + list(noise)
        paths = targets.paths()
        shrink = self.shrink_windows and not self.basket and self.window > 1
        effective = 0
        for epoch in progress_bar(range(self.epochs), desc="SGNS", unit="epoch", disable=None if progress else True):
            kept, _ = sgns_kernel.sgns_epoch(
                w_in.numpy(), w_out.numpy(), *arrays, negative=self.negative, window=self.window, shrink=shrink, basket=self.basket,
                sg=bool(self.sg), cbow_mean=bool(self.cbow_mean), shared_noise=_SHARED_NOISE, alpha=self.alpha, min_alpha=self.min_alpha,
                epoch=epoch, epochs=self.epochs, seed=hash((seed, epoch)) & _SEED_MASK, threads=workers, paths=paths,
            )
            effective += kept
        return effective

    def _train_worker(
        self, rank: int, workers: int, seed: int, w_in: Tensor, w_out: Tensor, tokens: Tensor, sentence: Tensor, offsets: Tensor,
        keep: Tensor, targets: _Targets, progress: bool,
    ) -> int:
        """Every epoch's share ``rank`` of the (subsampled, shuffled) centers; returns the centers trained.

        All workers draw the same subsample and order from the epoch's seed, then take every
        ``workers``-th center, so together they cover the epoch once. Each decays its learning
        rate by its own progress, as gensim's threads do.
        """
        device, sg, mean = tokens.device, bool(self.sg), bool(self.cbow_mean)
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
            for context, out, weight, valid, done in self._jobs(words, where, bounds, order, targets, own):
                sgns_step(w_in, w_out, context, out, weight, valid, self.lr((epoch + done) / self.epochs), sg, mean, targets.path_from)
            effective += len(order)
        return effective

    def _jobs(
        self, words: Tensor, where: Tensor, bounds: tuple[Tensor, Tensor] | None, order: Tensor,
        targets: _Targets, generator: torch.Generator,
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, float]]:
        """Steps of one epoch: contexts (B, C), outputs (B, P), their weights, context mask (B, C), progress.

        Centers come in random ``order``. Each center's real contexts are packed to the front of
        its row, and within groups of ``_GROUP`` batches centers are sorted by how many they have,
        so each batch carries only as many context columns as its fullest row: about 35% fewer
        gathered rows than padding every window to ``2 * window`` on Amazon Beauty. Likewise each batch
        carries only as many Huffman path columns as its centers' longest path (sorting by path length
        too, in groups of 64 batches, padded about 30% less but gave 2-6% lower HR@10 on Beauty).
        """
        size, window, padding, device = self.batch_size, self.window, targets.num_keys, words.device
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
            out, weight, depth = targets.draw(words[centers], generator)  # (C, P), (C, P), (C,)
            valid = (torch.arange(context.shape[1], device=device) < count.unsqueeze(1)).float()  # (C, 2W)
            starts = list(range(0, len(centers), size))
            widths = count[[min(i + size, len(centers)) - 1 for i in starts]].tolist()  # rows sorted within groups: last = fullest
            columns = targets.columns(depth, size)  # output columns each batch needs
            for j in torch.randperm(len(starts), generator=shuffle).tolist():
                rows, width = slice(starts[j], starts[j] + size), widths[j]
                processed += len(centers[rows])
                if width:
                    yield context[rows, :width], out[rows, : columns[j]], weight[rows, : columns[j]], valid[rows, :width], processed / len(order)


def outputs(center: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """Output rows ``(B, K+1)`` (the center, then its noise) and their weights: +1 positive, -1 noise, 0 noise equal to the center.

    >>> outputs(torch.tensor([3]), torch.tensor([[3, 5]]))
    (tensor([[3, 3, 5]]), tensor([[ 1., -0., -1.]]))
    """
    out = torch.cat([center.unsqueeze(1), noise], dim=1)  # (B, K+1)
    weight = (out != center.unsqueeze(1)).float().neg_()  # (B, K+1)
    weight[:, 0] = 1.0
    return out, weight


def sgns_step(w_in: Tensor, w_out: Tensor, context: Tensor, out: Tensor, weight: Tensor, valid: Tensor, lr: float, sg: bool,
              cbow_mean: bool = True, path_from: int | None = None) -> None:
    """One Hogwild minibatch step on ``B`` centers, updating only the touched rows.

    ``context (B, C)`` input rows (padding rows zero, ``valid (B, C)`` 0 there), ``out (B, P)``
    output rows with signed ``weight``: from :func:`outputs` for negative sampling (+1 the center,
    -1 noise), ``1 - 2 * code`` on the center's Huffman path for hierarchical softmax, 0 for padding.
    Every output is one logistic term ``log sigmoid(w * <h, y>)``, whose gradient w.r.t. the score
    ``s`` is ``sigmoid(-w s) w``; rows get ``lr`` times it. Skip-gram: each context's input vector
    is ``h``; CBOW: the mean (``cbow_mean``; sum otherwise) of the contexts, and each context gets
    the whole error (with the sum: divided by the count), as gensim.

    ``path_from``: skip-gram output columns from this one on are Huffman path nodes, which gensim and
    word2vec.c update context after context through the window, so each context already sees the
    node moved by the ones before it. With syn1 starting at zero that coupling is most of what pulls
    co-occurring contexts together early on, so it is kept to first order: context ``k`` also gets
    ``sum_{m<k} (g_k . g_m) x_m`` over the path columns (the scores stay those of the step's start).
    On Amazon Beauty (hs=1, negative=0) this took HR@10 from 0.063 to 0.066 (gensim: 0.068).
    """
    with torch.no_grad():
        dim = w_in.shape[1]
        y = w_out.index_select(0, out.flatten()).view(*out.shape, dim)  # (B, P, D)
        x = w_in.index_select(0, context.flatten()).view(*context.shape, dim)  # (B, C, D)
        if sg:  # each context predicts the center
            w = weight.unsqueeze(1)  # (B, 1, P)
            g = torch.bmm(x, y.transpose(1, 2)).mul_(w).neg_().sigmoid_().mul_(w * lr).mul_(valid.unsqueeze(2))  # (B, C, P)
            dx = torch.bmm(g, y)  # (B, C, D)
            dy = torch.bmm(g.transpose(1, 2), x)  # (B, P, D)
            if path_from is not None and context.shape[1] > 1:  # in-window order on the shared path nodes
                path = g[:, :, path_from:]  # (B, C, L)
                dx += torch.bmm(torch.bmm(path, path.transpose(1, 2)).tril_(-1), x)  # (B, C, C) @ (B, C, D)
        else:  # the mean (or sum) of the contexts predicts the center
            count = valid.sum(1, keepdim=True)  # (B, 1)
            h = x.sum(1)  # (B, D)
            if cbow_mean:
                h = h / count.clamp_min(1)
            g = torch.bmm(y, h.unsqueeze(2)).squeeze(2).mul_(weight).neg_().sigmoid_().mul_(weight * lr).mul_(count > 0)  # (B, P)
            dy = g.unsqueeze(2) * h.unsqueeze(1)  # (B, P, D)
            error = torch.bmm(g.unsqueeze(1), y)  # (B, 1, D)
            if not cbow_mean:
                error = error / count.clamp_min(1).unsqueeze(2)
            dx = error * valid.unsqueeze(2)  # (B, C, D)
        w_in.index_add_(0, context.flatten(), dx.view(-1, dim))  # (alpha= would take a slower kernel)
        w_out.index_add_(0, out.flatten(), dy.reshape(-1, dim))


class SGNSEngine:
    """Fits a model's item vectors by SGNS over each user's time-ordered training items (one sentence per user).

    The model exposes the :class:`SGNS` hyperparameters as attributes (``vector_size``, ``window``,
    ``negative``, ..., ``min_count``) and ``set_vectors(rows, vectors)``, which receives the item
    indices kept by ``min_count`` and their ``(V, D)`` input vectors. ``workers`` Hogwild workers on CPU;
    ``kernel``: ``auto`` (the compiled loop on CPU when numba is installed), ``numba`` or ``torch``.

    >>> import polars as pl
    >>> from recsys.data.frame import from_frame
    >>> from recsys.models.item2vec import Item2Vec
    >>> data = from_frame(pl.DataFrame({"user": [0, 0, 0, 1, 1, 1], "item": [1, 2, 3, 1, 2, 3], "timestamp": [0, 1, 2, 0, 1, 2]}))
    >>> model = Item2Vec(num_items=3, vector_size=8, epochs=2, sample=0.0)
    >>> SGNSEngine(workers=1).fit(model, data, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), progress=False)
    >>> bool(model.known.all()), model.score_users(torch.tensor([0, 1]), history=data).shape
    (True, torch.Size([2, 3]))
    """

    def __init__(self, workers: int = 2, kernel: str = "auto") -> None:
        if int(workers) < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}", where="SGNSEngine", fix="set model.engine.workers to a positive integer")
        check_kernel(kernel, where="SGNSEngine")
        self.workers, self.kernel = workers, kernel

    def warm_up(self, device: torch.device) -> None:
        """Load the compiled loop now if a fit on ``device`` may run it (see :func:`~recsys.training.engine.warm_up_in_background`)."""
        if device.type == "cpu" and self.kernel != "torch" and sgns_kernel.available():
            sgns_kernel.load()

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
        result = hyper.train(counts, tokens, offsets, workers=self.workers, device=device, seed=seed, progress=progress, kernel=self.kernel)
        model.set_vectors(torch.tensor(keys, dtype=torch.long), result.vectors)
        return result
