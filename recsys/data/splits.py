"""Train / validation / test splits that keep the full vocabularies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from recsys.data.interactions import Interactions
from recsys.errors import ConfigError, DataError


@dataclass(frozen=True)
class Split:
    """Three parts of one dataset, sharing its vocabularies."""

    train: Interactions
    valid: Interactions
    test: Interactions

    def __iter__(self):  # allows ``train, valid, test = split``
        return iter((self.train, self.valid, self.test))


def _rows_of_users(data: Interactions, where: str) -> None:
    """A DataError for CTR rows (a :class:`~recsys.data.ctr_files.CTRTable`): they have no users or timestamps."""
    if not isinstance(data, Interactions):
        raise DataError(f"{where} splits users' interactions; {data!r} holds CTR rows without users or timestamps",
                        where=where, fix="split CTR rows with split=random (one file) or split=files (train/valid/test files)")


def _parts(data: Interactions, part: np.ndarray) -> Split:
    """Split rows by ``part`` (0 train, 1 valid, 2 test); row order is kept, so no re-sort."""
    mask = pl.Series("part", part)
    train, valid, test = (data.frame.filter(mask == k) for k in range(3))
    return Split(*(data.with_frame(f, assume_sorted=True) for f in (train, valid, test)))


def leave_one_out(data: Interactions) -> Split:
    """Per user in time order (ties broken by item id): test = last, valid = second-to-last,
    train = the rest. Users with fewer than 3 interactions stay wholly in train.

    >>> from recsys.data.frame import from_frame
    >>> data = from_frame(pl.DataFrame({"user": [1, 1, 1, 2], "item": [5, 6, 7, 5], "timestamp": [3, 1, 2, 1]}))
    >>> split = leave_one_out(data)
    >>> split.test.frame["item"].to_list(), split.valid.frame["item"].to_list(), split.train.num_interactions
    ([0], [2], 2)
    """
    _rows_of_users(data, "leave_one_out")
    users = data.frame["user"].to_numpy()  # rows are sorted by (user, timestamp, item)
    counts = np.bincount(users, minlength=data.num_users)
    ends = np.cumsum(counts)[counts >= 3]  # one past each long-enough user's last row
    test_rows, valid_rows = ends - 1, ends - 2  # O(users) work: no per-row arrays but the mask
    train_mask = np.ones(len(users), dtype=bool)
    train_mask[test_rows] = False
    train_mask[valid_rows] = False
    frame = data.frame
    parts = (frame.filter(pl.Series(train_mask)), frame[valid_rows], frame[test_rows])
    return Split(*(data.with_frame(part, assume_sorted=True) for part in parts))


def _check_ratios(ratios: Sequence[float], where: str) -> tuple[float, float, float]:
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(
            f"ratios must be three non-negative numbers summing to 1, got {tuple(ratios)}",
            where=where,
            fix="pass e.g. ratios=(0.8, 0.1, 0.1)",
        )
    return values  # type: ignore[return-value]


def temporal_split(data: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> Split:
    """Global time cut points: the earliest ``ratios[0]`` of interactions train, and so on.

    Cut points are timestamps (quantiles of all timestamps); rows at a cut timestamp go to the
    later part, so no part sees an interaction later than one in a following part.
    """
    train_ratio, valid_ratio, _ = _check_ratios(ratios, "temporal_split(ratios)")
    _rows_of_users(data, "temporal_split")
    if not data.has_timestamps:
        raise DataError(
            f"dataset {data.name!r} has no timestamps",
            where="temporal_split",
            fix="use random_split, or load interactions with a timestamp column",
        )
    times = data.frame["timestamp"].to_numpy()
    ordered = np.sort(times)
    n = len(ordered)
    positions = [min(int(round(r * n)), n - 1) for r in (train_ratio, train_ratio + valid_ratio)]
    valid_from, test_from = (ordered[p] if n else 0 for p in positions)
    part = (times >= valid_from).astype(np.int8) + (times >= test_from).astype(np.int8)
    return _parts(data, part)


def random_split(data: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Each interaction (or CTR row) to train / valid / test at random in the given ratios (exact counts)."""
    train_ratio, valid_ratio, _ = _check_ratios(ratios, "random_split(ratios)")
    if getattr(data, "has_parts", False):
        raise DataError(f"dataset {data.name!r} comes as separate train/valid/test files; split=random would mix them",
                        where="split=random", fix="keep the files' parts with split=files (or give one file to split at random)")
    n = data.num_interactions
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator).numpy()
    n_train = int(round(train_ratio * n))
    n_valid = int(round((train_ratio + valid_ratio) * n)) - n_train
    part = np.zeros(n, dtype=np.int8)
    part[order[n_train : n_train + n_valid]] = 1
    part[order[n_train + n_valid :]] = 2
    return _parts(data, part)
