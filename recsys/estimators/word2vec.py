"""``Word2Vec``: skip-gram / CBOW with negative sampling in torch (CPU and CUDA), a gensim-style estimator.

Training is minibatch Hogwild SGD, as in word2vec.c but vectorized: each epoch subsamples the
corpus, draws every center's (dynamic) window at once, and processes ``batch_size`` centers per
step. A step gathers the centers' context rows and their output rows (the center plus ``negative``
noise tokens, shared by the contexts of one center as in Ji et al. 2016), computes the logistic
gradients with batched matmuls and adds them back with ``index_add_`` into the touched rows only
(no autograd, no optimizer state). The learning rate decays linearly from ``alpha`` to
``min_alpha`` over all epochs. On CPU, ``workers`` forked processes (threads where there is no
fork) train disjoint shares of every epoch concurrently on shared tables (Hogwild, see
:mod:`recsys.estimators.hogwild`), each with one intra-op thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
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
from recsys.estimators.hogwild import can_fork, run_workers, shared_zeros
from recsys.estimators.keyed_vectors import (
    KeyedVectors,
    _load_npz,
    _save_npz,
    _write_atomic,
)

log = logging.getLogger(__name__)

_CHUNK = 1 << 18  # centers whose contexts are materialized at once
_GROUP = 8  # batches whose centers are sorted by context count together
_SEED_MASK = (1 << 63) - 1


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def corpus_frame(corpus: Any) -> pl.DataFrame:
    """Any supported corpus as a frame of ``sentence`` (int) and ``token`` columns, in sentence order.

    Accepts a list of token lists (strings or ints), an :class:`~recsys.data.interactions.Interactions`
    (each user's items in time order, keyed by original item id), or a pandas/polars frame with
    ``user``, ``item`` and optionally ``timestamp`` columns (sorted by user, then time).
    """
    if hasattr(corpus, "item_index") and hasattr(corpus, "items"):  # Interactions, sorted by (user, time)
        tokens = corpus.items.ids.gather(corpus.frame["item"])
        return pl.DataFrame({"sentence": corpus.frame["user"], "token": tokens})
    if isinstance(corpus, (pd.DataFrame, pl.DataFrame)):
        frame = pl.from_pandas(corpus) if isinstance(corpus, pd.DataFrame) else corpus
        missing = [c for c in ("user", "item") if c not in frame.columns]
        if missing:
            raise DataError(f"corpus frame lacks column(s) {missing}", where=f"Word2Vec.fit; columns: {frame.columns}", fix="pass a frame with user, item and optionally timestamp columns")
        order = ["user", "timestamp"] if "timestamp" in frame.columns else ["user"]
        frame = frame.sort(order, maintain_order=True)
        return frame.select(pl.col("user").rank("dense").cast(pl.Int64).alias("sentence"), pl.col("item").alias("token"))
    if isinstance(corpus, (list, tuple)):
        if not corpus:
            return pl.DataFrame({"sentence": [], "token": []}, schema={"sentence": pl.Int64, "token": pl.Int64})
        if any(isinstance(s, (str, bytes)) for s in corpus[:100]):
            raise DataError("the corpus is a list of strings, not a list of token lists", where="Word2Vec.fit", fix="split each sentence into tokens: [line.split() for line in lines]")
        try:
            series = pl.Series("token", [list(s) for s in corpus])
        except (TypeError, pl.exceptions.PolarsError) as error:
            raise DataError(f"cannot read the sentences as token lists: {error}", where="Word2Vec.fit", fix="pass a list of lists of str (or of int), one type throughout") from None
        lengths = torch.from_numpy(series.list.len().to_numpy().astype(np.int64))
        frame = pl.DataFrame({"sentence": sentence_ids(torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])).numpy(), "token": series.explode().drop_nulls()}) if int(lengths.sum()) else pl.DataFrame({"sentence": [], "token": []})
        return frame
    raise DataError(f"cannot train on a {type(corpus).__name__}", where="Word2Vec.fit", fix="pass a list of token lists, an Interactions, or a (user, item, timestamp) DataFrame")


class Word2Vec:
    """Skip-gram (``sg=1``) or CBOW (``sg=0``) with negative sampling; gensim's hyperparameter names.

    >>> corpus = [["a", "b", "c"], ["x", "y", "z"]] * 200
    >>> model = Word2Vec(vector_size=8, window=2, min_count=1, sample=0, epochs=5, workers=1, seed=0).fit(corpus)
    >>> len(model.wv), model.wv.vector_size, [key for key, _ in model.most_similar("a", topn=5)].count("a")
    (6, 8, 0)
    """

    def __init__(
        self,
        vector_size: int = 100,
        window: int = 5,
        negative: int = 5,
        sg: int = 1,
        min_count: int = 5,
        sample: float = 1e-3,
        epochs: int = 5,
        alpha: float = 0.025,
        min_alpha: float = 0.0001,
        ns_exponent: float = 0.75,
        shrink_windows: bool = True,
        basket: bool = False,
        batch_size: int = 256,
        workers: int = 2,
        seed: int = 1,
        device: str = "auto",
        init_scale: float = 0.75,
    ) -> None:
        self.vector_size, self.window, self.negative, self.sg = vector_size, window, negative, sg
        self.min_count, self.sample, self.epochs, self.alpha, self.min_alpha = min_count, sample, epochs, alpha, min_alpha
        self.ns_exponent, self.shrink_windows, self.basket = ns_exponent, shrink_windows, basket
        self.batch_size, self.workers, self.seed, self.device = batch_size, workers, seed, device
        self.init_scale = init_scale

    def _check_params(self) -> None:
        if not self.init_scale > 0:
            raise ConfigError(f"init_scale must be > 0, got {self.init_scale}", where="Word2Vec", fix="e.g. init_scale=0.75")
        positive = {"vector_size": self.vector_size, "window": self.window, "negative": self.negative, "epochs": self.epochs, "batch_size": self.batch_size, "workers": self.workers, "min_count": self.min_count}
        for name, value in positive.items():
            if int(value) < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}", where="Word2Vec", fix=f"set {name} to a positive integer")
        if self.sg not in (0, 1):
            raise ConfigError(f"sg must be 0 (CBOW) or 1 (skip-gram), got {self.sg}", where="Word2Vec", fix="set sg=1 or sg=0")
        if not 0 < self.alpha or not 0 <= self.min_alpha <= self.alpha:
            raise ConfigError(f"need 0 <= min_alpha <= alpha and alpha > 0, got {self.alpha}, {self.min_alpha}", where="Word2Vec", fix="e.g. alpha=0.025, min_alpha=0.0001")

    # vocabulary ---------------------------------------------------------------------------
    def _vocabulary(self, frame: pl.DataFrame) -> tuple[list, Tensor, Tensor, Tensor]:
        """Keys by descending count, their counts, and the corpus as (tokens, offsets) of kept tokens."""
        if frame.height == 0:
            raise DataError("the corpus is empty", where="Word2Vec.fit", fix="pass at least one non-empty sentence")
        counts = frame.group_by("token").len().filter(pl.col("len") >= self.min_count)
        if counts.height == 0:
            top = frame["token"].value_counts(sort=True).row(0)
            raise DataError(
                f"min_count={self.min_count} removes every token (the most frequent, {top[0]!r}, occurs {top[1]} times)",
                where="Word2Vec.fit", fix=f"lower min_count to at most {top[1]}",
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

    # training -----------------------------------------------------------------------------
    def fit(self, corpus: Any) -> Word2Vec:
        """Build the vocabulary and train; returns ``self`` with ``wv_`` (:class:`KeyedVectors`) set."""
        self._check_params()
        keys, counts, tokens, offsets = self._vocabulary(corpus_frame(corpus))
        device = resolve_device(self.device)
        workers = self.workers if device.type == "cpu" else 1
        num_keys, dim = len(keys), self.vector_size
        table = shared_zeros if workers > 1 and can_fork() else torch.zeros
        w_in, w_out = table(num_keys + 1, dim), table(num_keys, dim)  # w_in's last row: padding, stays zero
        # uniform in (-init_scale, init_scale) / dim: word2vec.c uses 0.5, gensim 4 uses 1.0
        init = torch.Generator().manual_seed(self.seed)
        w_in[:num_keys] = (torch.rand(num_keys, dim, generator=init) * 2 - 1) * self.init_scale / dim
        w_in, w_out = w_in.to(device), w_out.to(device)
        sampler = AliasSampler(noise_distribution(counts, self.ns_exponent)).to(device)
        keep = keep_probabilities(counts, self.sample).float().to(device)
        tokens, offsets = tokens.to(device), offsets.to(device)
        sentence = sentence_ids(offsets)
        started = time.perf_counter()
        work = lambda rank: self._train_worker(rank, workers, w_in, w_out, tokens, sentence, offsets, keep, sampler)
        effective = sum(run_workers(work, workers))
        seconds = time.perf_counter() - started
        total = len(tokens) * self.epochs
        self.train_seconds_, self.effective_words_, self.corpus_words_ = seconds, effective, total
        log.info("word2vec: %d keys, %d epochs, %d workers, %.2fs, %.0f words/s (%d effective)", num_keys, self.epochs, workers, seconds, total / max(seconds, 1e-9), effective)
        self.wv_ = KeyedVectors(keys, w_in[:num_keys].cpu().clone())
        self.syn1neg_ = w_out.cpu().clone()
        self.counts_ = counts
        return self

    def _train_worker(
        self, rank: int, workers: int, w_in: Tensor, w_out: Tensor, tokens: Tensor, sentence: Tensor, offsets: Tensor,
        keep: Tensor, sampler: AliasSampler,
    ) -> int:
        """Every epoch's share ``rank`` of the (subsampled, shuffled) centers; returns the centers trained.

        All workers draw the same subsample and order from the epoch's seed, then take every
        ``workers``-th center, so together they cover the epoch once. Each decays its learning
        rate by its own progress, as gensim's threads do.
        """
        device, sg = tokens.device, bool(self.sg)
        effective = 0
        for epoch in range(self.epochs):
            shared = torch.Generator(device=device).manual_seed(hash((self.seed, epoch)) & _SEED_MASK)
            kept = torch.rand(len(tokens), generator=shared, device=device) < keep[tokens]
            words, where = tokens[kept], sentence[kept]
            order = torch.randperm(len(words), generator=shared, device=device)[rank::workers]
            bounds = None
            if self.basket:
                sentences = torch.arange(len(offsets) - 1, device=device)
                bounds = torch.searchsorted(where, sentences), torch.searchsorted(where, sentences, right=True)
            own = torch.Generator(device=device).manual_seed(hash((self.seed, epoch, rank)) & _SEED_MASK)
            for context, out, weight, valid, progress in self._jobs(words, where, bounds, order, sampler, own):
                lr = self._lr((epoch + progress) / self.epochs)
                _sgns_step(w_in, w_out, context, out, weight, valid, lr, sg)
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
            out, weight = _outputs(words[centers], noise)  # (C, K+1) each
            valid = (torch.arange(context.shape[1], device=device) < count.unsqueeze(1)).float()  # (C, 2W)
            starts = list(range(0, len(centers), size))
            widths = count[[min(i + size, len(centers)) - 1 for i in starts]].tolist()  # rows sorted within groups: last = fullest
            for j in torch.randperm(len(starts), generator=shuffle).tolist():
                rows, width = slice(starts[j], starts[j] + size), widths[j]
                processed += len(centers[rows])
                if width:
                    yield context[rows, :width], out[rows], weight[rows], valid[rows, :width], processed / len(order)

    def _lr(self, progress: float) -> float:
        return self.alpha - (self.alpha - self.min_alpha) * min(progress, 1.0)

    # gensim-style queries -------------------------------------------------------------------
    @property
    def wv(self) -> KeyedVectors:
        """The trained vectors (gensim's name for ``wv_``)."""
        if not hasattr(self, "wv_"):
            raise DataError("this Word2Vec is not fitted yet", where="Word2Vec.wv", fix="call fit(corpus) first, or Word2Vec.load(path)")
        return self.wv_

    def most_similar(self, positive: Hashable | list | None = None, negative: list | None = None, topn: int = 10) -> list[tuple[Hashable, float]]:
        return self.wv.most_similar(positive, negative, topn)

    def similarity(self, a: Hashable, b: Hashable) -> float:
        return self.wv.similarity(a, b)

    def __getitem__(self, key: Hashable | list) -> np.ndarray:
        return self.wv[key]

    def save(self, path: str | Path) -> Path:
        """Save params, keys, counts and both tables to ``.npz`` (no pickle)."""
        params = {k: v for k, v in vars(self).items() if not k.endswith("_")}
        wv = self.wv
        arrays = {"vectors": wv.table.numpy(), "syn1neg": self.syn1neg_.numpy(), "counts": self.counts_.numpy()}
        return _write_atomic(Path(path), lambda tmp: _save_npz(tmp, wv.index_to_key, params, **arrays))

    @classmethod
    def load(cls, path: str | Path) -> Word2Vec:
        keys, arrays, params = _load_npz(path)
        model = cls(**params)
        model.wv_ = KeyedVectors(keys, torch.from_numpy(arrays["vectors"]))
        model.syn1neg_, model.counts_ = torch.from_numpy(arrays["syn1neg"]), torch.from_numpy(arrays["counts"])
        return model


def _outputs(center: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """Output rows ``(B, K+1)`` (the center, then its noise) and their weights: +1 positive, -1 noise, 0 noise equal to the center."""
    out = torch.cat([center.unsqueeze(1), noise], dim=1)  # (B, K+1)
    weight = (out != center.unsqueeze(1)).float().neg_()  # (B, K+1)
    weight[:, 0] = 1.0
    return out, weight


def _sgns_step(w_in: Tensor, w_out: Tensor, context: Tensor, out: Tensor, weight: Tensor, valid: Tensor, lr: float, sg: bool) -> None:
    """One Hogwild minibatch step of negative sampling on ``B`` centers, updating only the touched rows.

    ``context (B, C)`` input rows (padding rows zero, ``valid (B, C)`` 0 there), ``out (B, K+1)``
    output rows with ``weight`` from :func:`_outputs`. The gradient of ``log sigmoid(x . y_pos) +
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
