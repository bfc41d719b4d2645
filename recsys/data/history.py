"""Behaviour histories for CTR rows: each row's most recent earlier items of its user, vectorized (no loop per row or user).

DIN-style models read, for every CTR row ``(user, item, timestamp)``, the items the user interacted with strictly
before ``timestamp`` (never the row's own item or later ones), the ``max_len`` most recent, oldest first. The
lookup is one sort of the events and two ``searchsorted`` calls over a combined ``(user, time)`` key.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch import Tensor

from recsys.errors import DataError

__all__ = ["previous_items"]


def previous_items(events: pl.DataFrame, queries: pl.DataFrame, max_len: int) -> tuple[Tensor, Tensor]:
    """Per query row, the ``row`` values of its user's events with ``timestamp`` strictly before the query's, the
    ``max_len`` most recent in time order (ties by ``row``): flat values ``(nnz,)`` and lengths ``(n,)`` (one ragged bag per query).

    ``events`` has columns ``user``, ``timestamp`` (Int64) and ``row`` (Int64, e.g. an item's vocabulary row);
    ``queries`` has ``user`` and ``timestamp`` (a null timestamp means "now": the user's latest events). The
    ``user`` columns must share a dtype.

    >>> events = pl.DataFrame({"user": [1, 1, 1, 2], "timestamp": [10, 20, 30, 5], "row": [7, 8, 9, 4]})
    >>> queries = pl.DataFrame({"user": [1, 1, 2, 1], "timestamp": [20, 31, 5, None]})
    >>> values, lengths = previous_items(events, queries, max_len=2)
    >>> values.tolist(), lengths.tolist()
    ([7, 8, 9, 8, 9], [1, 2, 0, 2])
    """
    if max_len < 1:
        raise DataError(f"max_len must be >= 1, got {max_len}", where="previous_items", fix="pass a positive max_len")
    # users as dense codes shared by both frames (ints or strings), times as dense ranks shared by both
    users = pl.concat([events["user"], queries["user"]]).rank("dense").cast(pl.Int64).to_numpy()
    big = np.iinfo(np.int64).max
    times = np.concatenate([events["timestamp"].to_numpy(), queries["timestamp"].fill_null(big).to_numpy()])
    _, time_rank = np.unique(times, return_inverse=True)
    width = int(time_rank.max()) + 2 if len(time_rank) else 2
    if (int(users.max(initial=0)) + 1) * width >= 2**62:
        raise DataError(f"{int(users.max(initial=0))} users x {width} distinct times overflow the int64 sort key",
                        where="previous_items", fix="coarsen the timestamps (e.g. to seconds or days)")
    key = users * width + time_rank.reshape(-1)  # (n_events + n_queries,) lexicographic (user, time)
    n = events.height
    event_key, query_key = key[:n], key[n:]
    rows = events["row"].to_numpy()
    order = np.lexsort((rows, event_key))  # ties in time by row: the same history whatever the events' order
    event_key, rows = event_key[order], rows[order]
    end = np.searchsorted(event_key, query_key, side="left")  # first event at or after the query time
    user_start = np.searchsorted(event_key, users[n:] * width, side="left")  # the user's first event
    start = np.maximum(user_start, end - max_len)
    lengths = torch.from_numpy((end - start).astype(np.int64))  # (n,)
    total = int(lengths.sum())
    starts = torch.from_numpy(start.astype(np.int64))
    first = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths, output_size=total)
    position = torch.repeat_interleave(starts, lengths, output_size=total) + torch.arange(total) - first
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))[position], lengths
