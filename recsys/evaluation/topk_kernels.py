"""The compiled loops behind :mod:`recsys.evaluation.topk` (numba; this module is imported on first use).

They are module-level functions so that numba's cache (``cache=True``) finds them again in a new process:
a jitted function calling a jitted closure gets a new cache key in every process and is recompiled.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["absorb", "compact", "finish"]


@numba.njit(nogil=True, cache=True)
def compact(values, indices, size, k):  # keep the best k of the first ``size`` (in index order), in index order
    kth = np.partition(values[:size].copy(), size - k)[size - k]  # the k-th largest
    room = k
    for i in range(size):
        room -= values[i] > kth
    kept = 0
    for i in range(size):  # every score above kth, then the earliest of those equal to it
        value = values[i]
        if value > kth or (value == kth and room > 0):
            if not value > kth:
                room -= 1
            values[kept], indices[kept] = value, indices[i]
            kept += 1
    return kth


@numba.njit(parallel=True, nogil=True, cache=True)
def absorb(tile, offset, indptr, columns, cursor, banned, fill, k, values, indices, sizes, thresholds):
    """Feed the scores of items ``offset ..`` (one tile, ``(B, T)``) to each row's selection."""
    rows, width = tile.shape
    end = offset + width
    first_banned, last_banned = np.searchsorted(banned, offset), np.searchsorted(banned, end)
    capacity = values.shape[1]
    for r in numba.prange(rows):
        row = tile[r]
        while cursor[r] < indptr[r + 1] and columns[cursor[r]] < end:  # this row's excluded items in the tile
            if columns[cursor[r]] >= offset:
                row[columns[cursor[r]] - offset] = fill
            cursor[r] += 1
        for b in range(first_banned, last_banned):
            row[banned[b] - offset] = fill
        vals, idx = values[r], indices[r]
        size, threshold, j = sizes[r], thresholds[r], 0
        while size < k and j < width:  # the first k scores enter unconditionally, NaN as -inf
            value = row[j]
            vals[size], idx[size] = (-np.inf if value != value else value), offset + j
            size += 1
            j += 1
            if size == k:
                threshold = compact(vals, idx, size, k)
        for j in range(j, width):
            value = row[j]
            if value > threshold:  # a later index: an equal score (or NaN) never enters
                vals[size], idx[size] = value, offset + j
                size += 1
                if size == capacity:
                    threshold = compact(vals, idx, size, k)
                    size = k
        sizes[r], thresholds[r] = size, threshold


@numba.njit(parallel=True, nogil=True, cache=True)
def finish(values, indices, sizes, k, out_values, out_indices):
    for r in numba.prange(len(sizes)):
        vals, idx = values[r], indices[r]
        if sizes[r] > k:
            compact(vals, idx, sizes[r], k)
        order = np.argsort(-vals[:k], kind="mergesort")  # best first; stable: equal scores by index
        for j in range(k):
            out_values[r, j] = vals[order[j]]
            out_indices[r, j] = idx[order[j]]
