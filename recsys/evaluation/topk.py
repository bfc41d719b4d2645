"""Exact top-``k`` per row of a score block, and of ``queries @ items.T`` without the whole block: a compiled
CPU selection (numba) beside ``torch.topk``.

Batch recommendation scores users against the whole catalogue and keeps each row's best ``k``. On CPU the cost
is memory, not arithmetic: a block of 1,024 users x 100k items is 400 MB, written by the matmul and read back by
``torch.topk`` from DRAM (about 1.5 ns per score here). :func:`topk_dot` instead scores an item tile at a time
(a few MB, in cache) and feeds each tile to a selection that keeps its state between tiles. The selection
compares each score with a threshold, the ``k``-th best so far, and appends the few that beat it to a buffer of
``2k + 64`` per row; a full buffer is cut back to its best ``k`` (a partition), which raises the threshold. After
the first few thousand scores almost none beat it, so a score costs one compare, on ``threads`` threads over
the rows. ``implicit`` selects with a heap in C++ over whole blocks.

Order is ``torch.topk``'s where scores differ; equal scores keep the lower item index first, and ``NaN`` ranks
below every number (``torch.topk`` ranks it first). Both functions fall back to torch on CUDA, where numba is
missing, and for small blocks.

>>> values, indices = topk(torch.tensor([[0.5, 2.0, 1.0, 2.0], [3.0, -1.0, 0.0, 1.0]]), 2)
>>> values.tolist(), indices.tolist()
([[2.0, 2.0], [3.0, 1.0]], [[1, 3], [0, 3]])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from recsys.runtime import numba_available, numba_threads, once

__all__ = ["available", "load", "topk", "topk_dot"]

_MIN_SCORES = 1 << 16  # smaller blocks: torch (the kernel's launch costs more than it saves)
_TILE_BYTES = 1 << 22  # one (B, T) score tile: 4 MiB (half per thread: in L2 and L3)


available = numba_available  # whether numba imports here (this module's compiled path)


@once
def load() -> None:
    """Compile the selection, or load it from numba's cache, so that the first call does not pay for it."""
    _topk_numpy(np.zeros((1, 2), np.float32), 1)


def _check(kernel: str, k: int, width: int) -> None:
    if kernel not in ("auto", "numba", "torch"):
        raise ValueError(f"kernel must be 'auto', 'numba' or 'torch', got {kernel!r}")
    if not 0 <= k <= width:
        raise ValueError(f"k={k} is outside [0, {width}]")


def _compiled(kernel: str, device: torch.device, k: int, scores: int) -> bool:
    usable = device.type == "cpu" and k > 0 and available()
    if kernel == "numba" and not usable:
        raise ValueError("kernel='numba' needs numba, a CPU tensor and k > 0")
    return kernel == "numba" or (kernel == "auto" and usable and scores >= _MIN_SCORES)


def topk(scores: Tensor, k: int, *, kernel: str = "auto") -> tuple[Tensor, Tensor]:
    """``(values, indices)``, each ``(B, k)``, of the ``k`` best scores of each row of ``scores`` ``(B, N)``, best first.

    ``kernel``: ``"auto"`` (the compiled selection for CPU blocks of at least 65,536 scores when numba imports,
    else ``torch.topk``), ``"numba"`` or ``"torch"``. Both give the same values; indices differ only among
    equal scores (here the lower index first)."""
    _check(kernel, k, scores.shape[1])
    if not _compiled(kernel, scores.device, k, scores.numel()):
        return scores.topk(k, dim=1)
    load()
    values, indices = _topk_numpy(scores.detach().float().contiguous().numpy(), k)
    return torch.from_numpy(values), torch.from_numpy(indices)


def topk_dot(queries: Tensor, items: Tensor, k: int, *, exclude: tuple[Any, Any] | None = None, banned: Tensor | None = None,
             fill: float = float("-inf"), kernel: str = "auto") -> tuple[Tensor, Tensor]:
    """The ``k`` best of ``queries @ items.T`` per query, ``(values, indices)`` each ``(B, k)``, best first, as
    :func:`topk` of the whole block would give, without holding the block.

    ``exclude``: ``(indptr (B+1,), indices)``, a CSR of items per query to score ``fill`` (a user's liked items);
    ``banned``: items scored ``fill`` for every query. Such items come back, at ``fill``, only where fewer than
    ``k`` others are left. ``kernel`` as in :func:`topk`; the torch path scores the block whole (CUDA).

    >>> queries, items = torch.eye(2), torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])  # scores [1, 0, 2], [0, 1, 0]
    >>> values, indices = topk_dot(queries, items, 2, exclude=(np.array([0, 1, 2]), np.array([2, 1])))  # row 0: not 2
    >>> values.tolist(), indices.tolist()  # row 1 without item 1: two equal scores, the lower index first
    ([[1.0, 0.0], [0.0, 0.0]], [[0, 1], [0, 2]])
    """
    _check(kernel, k, items.shape[0])
    rows, width = queries.shape[0], items.shape[0]
    if not _compiled(kernel, queries.device, k, rows * width):
        scores = (queries @ items.T).float()  # (B, N)
        if exclude is not None:
            indptr, columns = (torch.as_tensor(np.asarray(a, dtype=np.int64), device=scores.device) for a in exclude)
            scores[torch.repeat_interleave(torch.arange(rows, device=scores.device), indptr[1:] - indptr[:-1]), columns] = fill
        if banned is not None:
            scores[:, banned.to(scores.device)] = fill
        return scores.topk(k, dim=1)
    load()
    indptr, columns = ((np.zeros(rows + 1, np.int64), np.zeros(0, np.int64)) if exclude is None
                       else _sorted_rows(*(np.asarray(a, dtype=np.int64) for a in exclude)))
    banned_sorted = np.zeros(0, np.int64) if banned is None else np.unique(banned.cpu().numpy().astype(np.int64))
    queries, items = queries.detach().float().contiguous(), items.detach().float()
    state = _State(rows, k)
    tile = max(256, min(width, _TILE_BYTES // (4 * max(rows, 1))))
    buffer = torch.empty(rows, tile)
    cursor = indptr[:-1].copy()
    with numba_threads():
        for offset in range(0, width, tile):
            part = items[offset : offset + tile]
            scores = torch.mm(queries, part.T, out=buffer[:, : len(part)]) if len(part) == tile else queries @ part.T
            _kernel()[0](scores.numpy(), offset, indptr, columns, cursor, banned_sorted, np.float32(fill), k,
                         state.values, state.indices, state.sizes, state.thresholds)
        values, indices = state.finish(k)
    return torch.from_numpy(values), torch.from_numpy(indices)


def _sorted_rows(indptr: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR with each row's columns sorted (the kernel walks them in order alongside the tiles), from 0."""
    columns, indptr = columns[indptr[0] : indptr[-1]], indptr - indptr[0]
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    order = np.lexsort((columns, rows))
    return indptr, columns[order]


class _State:
    """Per-row selection state carried across item tiles: a buffer of candidates, its fill and threshold."""

    def __init__(self, rows: int, k: int) -> None:
        capacity = 2 * k + 64
        self.values = np.empty((rows, capacity), np.float32)
        self.indices = np.empty((rows, capacity), np.int64)
        self.sizes = np.zeros(rows, np.int64)
        self.thresholds = np.full(rows, -np.inf, np.float32)

    def finish(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        values, indices = np.empty((len(self.sizes), k), np.float32), np.empty((len(self.sizes), k), np.int64)
        _kernel()[1](self.values, self.indices, self.sizes, k, values, indices)
        return values, indices


def _topk_numpy(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    rows = scores.shape[0]
    state = _State(rows, k)
    none = np.zeros(rows + 1, np.int64)
    with numba_threads():
        _kernel()[0](scores, 0, none, none[:0], none[:-1].copy(), none[:0], np.float32(-np.inf), k,
                     state.values, state.indices, state.sizes, state.thresholds)
        return state.finish(k)


def _kernel():
    from recsys.evaluation import topk_kernels  # numba, imported on first use

    return topk_kernels.absorb, topk_kernels.finish
