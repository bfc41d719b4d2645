"""SGNS's (and hierarchical softmax's) per-center SGD as a compiled CPU loop (numba), in word2vec.c's order, as gensim's Cython runs it.

The torch path (:func:`~recsys.training.sgns.sgns_step`) trains ``batch_size`` centers per step as batched
matmuls and ``index_add_``: on CPU its dispatch, not the arithmetic, sets the pace, and rows repeated in a
batch (frequent items) get the *sum* of their updates, which with two Hogwild workers sometimes diverges.
This loop walks each sentence: it subsamples it (word2vec's keep probability), draws each center's reduced
window (``1..window``), and then, skip-gram: for each context ``c`` of center ``w`` accumulates ``neu1e`` over
the targets ``[w, noise...]`` (updating each output row at once) and adds it to ``c``'s input row; CBOW: the
mean (or sum) of the contexts against the same targets, its error added to every context. With hierarchical
softmax (``paths``: every word's Huffman path as output rows and bits) the targets start with ``w``'s path
nodes, each a logistic target ``1 - code``, as word2vec.c's ``-hs 1 -negative k`` (one ``neu1e``, every term
from the same input vector; gensim adds the path's error to the input row before it scores the noise), so the
contexts of one center move the shared path nodes one after another (which the torch step keeps to first
order). Noise comes from the unigram^``ns_exponent`` distribution through the engine's alias table (O(1) per
draw, exactly the torch path's distribution), fresh for every (context, center) pair as in word2vec.c and
gensim, or drawn once per center and shared by its contexts (``shared_noise``: the engine's choice, as its
torch path; on Amazon Beauty, 3 seeds, it measured 3% higher HR@10 and 20% less CPU time than fresh noise).
Noise equal to the center is skipped. The learning rate decays linearly from ``alpha`` to ``min_alpha`` by each thread's progress over
all epochs; the sigmoid is word2vec.c's: a table of 1000 values over ``[-6, 6)``, 0 or 1 beyond (on Amazon Beauty
15-25% less CPU time than computing ``1 / (1 + exp(-x))`` in float32, the same HR@10 over 2 x 3 seeds), and a path
node scoring beyond ``[-6, 6]`` gets no update, as in word2vec.c and gensim. ``threads`` threads take
disjoint shares of the sentences (about equal tokens each), each with its own random stream (a 64-bit
LCG, as word2vec.c's, seeded from ``seed`` and the thread), updating the shared float32 tables (Hogwild).

``numba`` is imported on first use; :func:`available` says whether it can be, and the engine falls back to
its torch steps where it cannot, and on CUDA.
"""

from __future__ import annotations

import functools

import numpy as np

from recsys.runtime import numba_available, once

__all__ = ["available", "load", "sgns_epoch", "sigmoid_table", "thread_bounds"]


available = numba_available  # whether numba imports here (this module's compiled path)


def thread_bounds(offsets: np.ndarray, threads: int) -> np.ndarray:
    """First sentence of each thread's share, ``(threads + 1,)``: consecutive sentences, about equal tokens each.

    >>> thread_bounds(np.array([0, 5, 6, 10, 12]), 2).tolist()  # 6 tokens each
    [0, 2, 4]
    """
    targets = np.linspace(0, offsets[-1], threads + 1)
    bounds = np.searchsorted(offsets, targets, side="left").clip(0, len(offsets) - 1)
    bounds[0], bounds[-1] = 0, len(offsets) - 1
    return bounds.astype(np.int64)


@once
def load() -> None:
    """Compile the loop, or load it from numba's cache (``__pycache__``; about 1 s of CPU), for the types
    :func:`sgns_epoch` passes, so that the first epoch does not pay for it."""
    w_in = np.zeros((2, 1), np.float32)  # the argument types do not depend on hs: one signature serves both
    sgns_epoch(w_in, w_in.copy(), np.zeros(1, np.int64), np.array([0, 1]), np.ones(2, np.float32), np.ones(2, np.float32), np.zeros(2, np.int64),
               negative=1, window=1, shrink=False, basket=False, sg=True, cbow_mean=True, shared_noise=False, alpha=0.0, min_alpha=0.0,
               epoch=0, epochs=1, seed=0, threads=1, paths=(np.array([0, 1, 1]), np.zeros(1, np.int64), np.zeros(1, np.float32)))


_MAX_EXP = 6.0  # word2vec.c's sigmoid table: EXP_TABLE_SIZE values over [-MAX_EXP, MAX_EXP)


@functools.cache
def sigmoid_table(size: int = 1000) -> np.ndarray:
    """word2vec.c's ``expTable``: ``sigmoid(x)`` at ``x = (2 i / size - 1) * 6``, ``(size,)`` float32.

    >>> table = sigmoid_table()
    >>> len(table), round(float(table[500]), 3), bool(table[0] < 0.003 < 0.997 < table[-1])
    (1000, 0.5, True)
    """
    x = (np.arange(size) / size * 2 - 1) * _MAX_EXP
    return (1 / (1 + np.exp(-x))).astype(np.float32)


@functools.cache
def _kernel():
    import numba

    @numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
    def epoch(w_in, w_out, tokens, offsets, bounds, keep, prob, alias, path_offsets, path_nodes, path_codes, sigmoid, negative, hs,
              window, shrink, basket, sg, cbow_mean, shared_noise, alpha, min_alpha, start, span, seed, threads):
        dim = w_in.shape[1]
        vocab = np.uint64(len(prob))
        mul, inc = np.uint64(6364136223846793005), np.uint64(1442695040888963407)
        s8, s32, s40 = np.uint64(8), np.uint64(32), np.uint64(40)
        unit = np.float32(1.0 / (1 << 24))
        one, zero = np.float32(1.0), np.float32(0.0)
        limit, bins, top = np.float32(_MAX_EXP), np.float32(len(sigmoid) / (2 * _MAX_EXP)), len(sigmoid) - 1
        targets = negative + 1 if negative > 0 else 0  # the center and its noise; none with hierarchical softmax alone
        longest = 1
        for s in range(len(offsets) - 1):
            longest = max(longest, offsets[s + 1] - offsets[s])
        counts = np.zeros((threads, 2), np.int64)  # kept centers, (center, context) pairs
        for thread in numba.prange(threads):
            state = np.uint64(seed) ^ (np.uint64(thread + 1) * np.uint64(0x9E3779B97F4A7C15))  # this thread's stream
            for _ in range(4):
                state = state * mul + inc
            words = np.empty(longest, np.int64)
            context = np.empty(2 * window, np.int64)
            noise = np.empty(max(negative, 1), np.int64)
            neu1 = np.empty(dim, np.float32)
            neu1e = np.empty(dim, np.float32)
            first, last = bounds[thread], bounds[thread + 1]
            total = max(offsets[last] - offsets[first], 1)
            for s in range(first, last):
                progress = min(start + span * (offsets[s] - offsets[first]) / total, 1.0)
                lr = np.float32(alpha - (alpha - min_alpha) * progress)
                n = 0
                for p in range(offsets[s], offsets[s + 1]):  # subsample
                    w = tokens[p]
                    if keep[w] < one:
                        state = state * mul + inc
                        if np.float32(state >> s40) * unit >= keep[w]:
                            continue
                    words[n] = w
                    n += 1
                counts[thread, 0] += n
                for i in range(n):
                    w = words[i]
                    m = 0  # the center's context positions
                    if basket:
                        if n > 1:
                            for _ in range(2 * window):
                                state = state * mul + inc
                                j = np.int64(((state >> s32) * np.uint64(n - 1)) >> s32)
                                context[m] = j + 1 if j >= i else j
                                m += 1
                    else:
                        reach = window
                        if shrink:
                            state = state * mul + inc
                            reach = 1 + np.int64(((state >> s32) * np.uint64(window)) >> s32)
                        for j in range(max(i - reach, 0), min(i + reach + 1, n)):
                            if j != i:
                                context[m] = j
                                m += 1
                    if m == 0:
                        continue
                    counts[thread, 1] += m
                    if shared_noise or not sg:
                        for k in range(negative):
                            state = state * mul + inc
                            bucket = np.int64(((state >> s32) * vocab) >> s32)
                            state = state * mul + inc
                            noise[k] = bucket if np.float32((state >> s40)) * unit < prob[bucket] else alias[bucket]
                    if sg:  # each context predicts the center
                        for q in range(m):
                            c = words[context[q]]
                            for f in range(dim):
                                neu1e[f] = zero
                            if hs:  # the center's Huffman path
                                for p in range(path_offsets[w], path_offsets[w + 1]):
                                    node = path_nodes[p]
                                    dot = zero
                                    for f in range(dim):
                                        dot += w_in[c, f] * w_out[node, f]
                                    if dot <= -limit or dot >= limit:
                                        continue
                                    g = (one - path_codes[p] - sigmoid[min(np.int64((dot + limit) * bins), top)]) * lr
                                    for f in range(dim):
                                        neu1e[f] += g * w_out[node, f]
                                        w_out[node, f] += g * w_in[c, f]
                            for d in range(targets):
                                label, target = one, w
                                if d > 0:
                                    label = zero
                                    if shared_noise:
                                        target = noise[d - 1]
                                    else:
                                        state = state * mul + inc
                                        bucket = np.int64(((state >> s32) * vocab) >> s32)
                                        state = state * mul + inc
                                        target = bucket if np.float32((state >> s40)) * unit < prob[bucket] else alias[bucket]
                                    if target == w:
                                        continue
                                dot = zero
                                for f in range(dim):
                                    dot += w_in[c, f] * w_out[target, f]
                                sig = one if dot >= limit else zero if dot <= -limit else sigmoid[min(np.int64((dot + limit) * bins), top)]
                                g = (label - sig) * lr
                                for f in range(dim):
                                    neu1e[f] += g * w_out[target, f]
                                    w_out[target, f] += g * w_in[c, f]
                            for f in range(dim):
                                w_in[c, f] += neu1e[f]
                    else:  # the mean (or sum) of the contexts predicts the center
                        for f in range(dim):
                            neu1[f] = zero
                            neu1e[f] = zero
                        for q in range(m):
                            c = words[context[q]]
                            for f in range(dim):
                                neu1[f] += w_in[c, f]
                        scale = one / np.float32(m)
                        if cbow_mean:
                            for f in range(dim):
                                neu1[f] *= scale
                        if hs:
                            for p in range(path_offsets[w], path_offsets[w + 1]):
                                node = path_nodes[p]
                                dot = zero
                                for f in range(dim):
                                    dot += neu1[f] * w_out[node, f]
                                if dot <= -limit or dot >= limit:
                                    continue
                                g = (one - path_codes[p] - sigmoid[min(np.int64((dot + limit) * bins), top)]) * lr
                                for f in range(dim):
                                    neu1e[f] += g * w_out[node, f]
                                    w_out[node, f] += g * neu1[f]
                        for d in range(targets):
                            label, target = one, w
                            if d > 0:
                                label, target = zero, noise[d - 1]
                                if target == w:
                                    continue
                            dot = zero
                            for f in range(dim):
                                dot += neu1[f] * w_out[target, f]
                            sig = one if dot >= limit else zero if dot <= -limit else sigmoid[min(np.int64((dot + limit) * bins), top)]
                            g = (label - sig) * lr
                            for f in range(dim):
                                neu1e[f] += g * w_out[target, f]
                                w_out[target, f] += g * neu1[f]
                        if not cbow_mean:
                            for f in range(dim):
                                neu1e[f] *= scale
                        for q in range(m):
                            c = words[context[q]]
                            for f in range(dim):
                                w_in[c, f] += neu1e[f]
        return counts[:, 0].sum(), counts[:, 1].sum()

    return epoch


def sgns_epoch(
    w_in: np.ndarray, w_out: np.ndarray, tokens: np.ndarray, offsets: np.ndarray, keep: np.ndarray, prob: np.ndarray, alias: np.ndarray,
    *, negative: int, window: int, shrink: bool, basket: bool, sg: bool, cbow_mean: bool, shared_noise: bool,
    alpha: float, min_alpha: float, epoch: int, epochs: int, seed: int, threads: int,
    paths: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[int, int]:
    """One epoch over the corpus ``tokens`` (sentences split at ``offsets``), training ``w_in`` ``(V(+1), D)`` and
    ``w_out`` float32 in place; returns ``(centers kept by subsampling, (center, context) pairs)``.

    ``keep (V,)`` float32: keep probabilities; ``prob``/``alias``: the noise
    :class:`~recsys.data.skipgram.AliasSampler`'s table ``(V,)`` (unread when ``negative=0``). ``w_out`` holds
    the noise rows ``0..V-1`` when ``negative > 0``, and any rows ``paths`` name. ``paths``: hierarchical softmax,
    ``(offsets (V+1,), nodes, codes)``: word ``w``'s path is ``nodes[offsets[w]:offsets[w + 1]]`` (``w_out`` rows,
    root first) with bits ``codes`` (float32); None: negative sampling alone. The learning rate at progress ``p``
    of all epochs is ``alpha - (alpha - min_alpha) p`` (:meth:`~recsys.training.sgns.SGNS.lr`), ``p`` advancing by sentence.

    >>> w_in, w_out = np.full((2, 2), 0.5, np.float32), np.zeros((2, 2), np.float32)
    >>> sgns_epoch(w_in, w_out, np.array([0, 1]), np.array([0, 2]), np.ones(2, np.float32), np.ones(2, np.float32),
    ...            np.arange(2), negative=1, window=1, shrink=False, basket=False, sg=True, cbow_mean=True, shared_noise=False,
    ...            alpha=0.1, min_alpha=0.1, epoch=0, epochs=1, seed=0, threads=1)
    (2, 2)
    >>> bool(np.abs(w_out).sum() > 0)
    True
    >>> w_out = np.zeros((1, 2), np.float32)  # hierarchical softmax alone: two words, one inner node (bit 0: word 0, 1: word 1)
    >>> paths = np.array([0, 1, 2]), np.zeros(2, np.int64), np.array([0, 1], np.float32)
    >>> sgns_epoch(w_in, w_out, np.array([0, 1]), np.array([0, 2]), np.ones(2, np.float32), np.ones(1, np.float32), np.zeros(1, np.int64),
    ...            negative=0, window=1, shrink=False, basket=False, sg=True, cbow_mean=True, shared_noise=False, alpha=0.1, min_alpha=0.1,
    ...            epoch=0, epochs=1, seed=0, threads=1, paths=paths)
    (2, 2)
    >>> bool(np.abs(w_out).sum() > 0)
    True
    """
    import numba

    threads = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    hs = paths is not None
    path_offsets, path_nodes, path_codes = paths if hs else (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    bounds = thread_bounds(offsets, threads)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        kept, pairs = _kernel()(
            w_in, w_out, tokens.astype(np.int64, copy=False), offsets.astype(np.int64, copy=False), bounds, keep.astype(np.float32, copy=False),
            prob.astype(np.float32, copy=False), alias.astype(np.int64, copy=False), np.ascontiguousarray(path_offsets, np.int64),
            np.ascontiguousarray(path_nodes, np.int64), np.ascontiguousarray(path_codes, np.float32), sigmoid_table(), int(negative), hs,
            int(window), bool(shrink), bool(basket),
            bool(sg), bool(cbow_mean), bool(shared_noise), float(alpha), float(min_alpha), epoch / epochs, 1.0 / epochs,
            np.uint64(seed & 0xFFFFFFFFFFFFFFFF), threads,
        )
    finally:
        numba.set_num_threads(previous)
    return int(kept), int(pairs)
