"""Helpers of tests/cli/test_tune.py: planted community data and a split whose test part cannot be read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from recsys.data import Interactions, leave_one_out


def write_communities(path: Path, communities: int = 8, items_per: int = 10, users_per: int = 20, per_user: int = 8,
                      seed: int = 0) -> Path:
    """A CSV where each user interacts only with items of their own community (a known, low-rank answer)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(communities):
        for u in range(users_per):
            items = rng.choice(items_per, size=per_user, replace=False) + c * items_per
            rows += [(c * users_per + u, int(i), 5.0, t) for t, i in enumerate(items)]
    frame = pl.DataFrame(rows, schema=["user", "item", "rating", "timestamp"], orient="row")
    frame.write_csv(path)
    return path


class SplitReadError(AssertionError):
    """Raised when anything reads the test part of a :class:`GuardedSplit`."""


class GuardedSplit:
    """Leave-one-out whose ``test`` raises: proves a search selects on validation only."""

    def __init__(self, data: Interactions) -> None:
        split = leave_one_out(data)
        self.train, self.valid = split.train, split.valid

    @property
    def test(self) -> Interactions:
        raise SplitReadError("the test split was read during the search")


def guarded_split(data: Interactions) -> GuardedSplit:
    """The ``split._target_`` of the guarded-split test."""
    return GuardedSplit(data)
