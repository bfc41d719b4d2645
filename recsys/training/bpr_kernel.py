"""BPR's per-pair SGD as a compiled CPU loop (numba), the way ``implicit`` (Cython) and word2vec.c run it.

Torch runs a step of ``B`` pairs as a dozen whole-batch ops, each a pass over the batch and a few
microseconds of dispatch; a pair's update is only ``3 D`` multiply-adds, so on CPU that overhead, not the
arithmetic, sets the pace (1.6x-1.9x ``implicit``'s time on ml-100k and Beauty). This loop draws each pair,
checks its negative against what the user has seen (one bit of a users x items bitmap, or binary search
in the user's sorted items where the bitmap would pass 256 MiB), and applies ``implicit``'s
update to the three rows at once, one pair after another on each of ``threads`` threads sharing the tables
(Hogwild). Updates are sequential within a thread, so no two updates of a pair's rows are summed as in a
batched step.

A pair's few hundred flops are cheap next to the wait for its three rows (random rows of a table of megabytes:
each a trip to L3 or DRAM), so the loop works in chunks of 128 draws: it first draws and checks them (iterations
independent of each other, whose loads the CPU overlaps), then trains the fresh ones in draw order with the rows of
the pair 4 ahead prefetched (``llvm.prefetch``). Draws come from a xorshift64* stream per thread (seeded by
splitmix64): by itself 38 -> 27 ms an iteration on one thread, against numpy's Mersenne Twister in numba. Together, on Amazon Beauty (176k pairs,
64 dims), one iteration went 38 ms -> 13-15 ms on one thread and 18-21 ms -> 9-11 ms on two.

``numba`` is imported on first use; :func:`available` says whether it can be, and the engine falls back to its
vectorized torch step where it cannot (and on CUDA).
"""

from __future__ import annotations

import functools

import numpy as np

from recsys.runtime import numba_available, once

__all__ = ["available", "bpr_iteration", "csr_rows", "load", "seen_bitmap", "splitmix64"]

_BITMAP_BYTES = 1 << 28  # seen pairs as a users x items bitmap up to 256 MiB (one load per check), else binary search


available = numba_available  # whether numba imports here (this module's compiled path)


@once
def load() -> None:
    """Compile the loop, or load it from numba's cache (``__pycache__``; about 1 s per process), for the types
    :func:`bpr_iteration` passes, so that the fit's first iteration does not pay for it."""
    factors, bias = np.zeros((2, 1), np.float32), np.zeros(2, np.float32)
    indptr, indices = csr_rows(np.zeros(1, np.int64), np.zeros(1, np.int64), 1, 1)
    bpr_iteration(factors, bias, np.zeros(1, np.int64), np.zeros(1, np.int64), indptr, indices, seen_bitmap(indptr, indices, 1),
                  num_users=1, num_items=1, popularity=True, lr=0.0, reg=0.0, seed=0, threads=1)


def csr_rows(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr (U+1,), indices)``: each user's distinct items, sorted, as a CSR row (the seen-pair check).

    >>> indptr, indices = csr_rows(np.array([1, 0, 1, 1]), np.array([2, 0, 0, 2]), num_users=3, num_items=3)
    >>> indptr.tolist(), indices.tolist()
    ([0, 1, 3, 3], [0, 0, 2])
    """
    keys = np.unique(users.astype(np.int64) * num_items + items.astype(np.int64))  # sorted by user, then item
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // num_items, minlength=num_users), out=indptr[1:])
    return indptr, (keys % num_items).astype(np.int64)


def seen_bitmap(indptr: np.ndarray, indices: np.ndarray, num_items: int) -> np.ndarray:
    """Bit ``u * num_items + i`` set where user ``u`` has seen item ``i``, as ``uint64`` words; empty (use the CSR
    rows) when the bitmap would pass 256 MiB.

    >>> words = seen_bitmap(np.array([0, 1, 3]), np.array([2, 0, 1]), num_items=3)
    >>> [int(words[0]) >> bit & 1 for bit in range(6)]
    [0, 0, 1, 1, 1, 0]
    """
    num_users = len(indptr) - 1
    if num_users * num_items // 8 > _BITMAP_BYTES:
        return np.zeros(0, dtype=np.uint64)
    keys = np.repeat(np.arange(num_users, dtype=np.int64), np.diff(indptr)) * num_items + indices  # distinct
    words = np.zeros((num_users * num_items + 63) // 64, dtype=np.uint64)
    np.add.at(words, keys >> 6, np.left_shift(np.uint64(1), (keys & 63).astype(np.uint64)))  # distinct bits: + is |
    return words


def splitmix64(x: int) -> int:
    """The seed of a thread's xorshift64* stream (any 64-bit value to a well-mixed, non-zero one).

    >>> splitmix64(0)
    16294208416658607535
    """
    mask = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return (x ^ (x >> 31)) | 1


@functools.cache
def _kernel():
    from recsys.training import bpr_loops  # numba, imported on first use

    return bpr_loops.iteration


def bpr_iteration(
    factors: np.ndarray, bias: np.ndarray, users: np.ndarray, items: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
    words: np.ndarray | None = None, *, num_users: int, num_items: int, popularity: bool, lr: float, reg: float, seed: int, threads: int,
) -> int:
    """One iteration: ``len(users)`` pairs drawn (``threads`` streams seeded from ``seed``), each trained in place
    on ``factors`` ``(U+N, D)`` float32 and ``bias`` ``(U+N,)`` (users' rows first); returns how many were skipped.

    ``users``/``items`` are the interactions pairs are drawn from; ``indptr``/``indices`` (:func:`csr_rows`) what
    each user has seen, ``words`` (:func:`seen_bitmap`, optional) the same as a bitmap. The update per pair is :func:`~recsys.training.bpr_hogwild.fused_bpr_step`'s.

    >>> factors, bias = np.ones((3, 2), np.float32), np.zeros(3, np.float32)
    >>> indptr, indices = csr_rows(np.array([0]), np.array([0]), 1, 2)
    >>> bpr_iteration(factors, bias, np.array([0]), np.array([0]), indptr, indices, num_users=1, num_items=2,
    ...               popularity=False, lr=0.5, reg=0.0, seed=3, threads=1) in (0, 1)
    True
    """
    import numba

    threads = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        words = np.zeros(0, dtype=np.uint64) if words is None else words
        states = np.array([splitmix64(seed + 7919 * thread) for thread in range(threads)], dtype=np.uint64)
        return int(_kernel()(factors, bias, users, items, indptr, indices, words, num_users, num_items, popularity,
                             np.float32(lr), np.float32(reg), states, threads))
    finally:
        numba.set_num_threads(previous)
