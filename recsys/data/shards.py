"""Per-rank data shards: each process of a ``torchrun`` job reads only its users' rows of an interaction file.

A user's rows all land on one rank (``hash(user) % world_size``), so per-user splits (leave-one-out,
histories, sequences) work on a shard exactly as on the whole file. The file is scanned lazily with the
shard filter pushed into the scan: a rank holds its shard, never the dataset (it still reads the user
column of every row group to filter it).

The id vocabularies must be identical on every rank (the embedding tables are replicated by data-parallel
training, so row ``i`` must mean the same id everywhere). :func:`agree_vocabulary` builds them from an
all-gather of each rank's unique ids; for tens of millions of ids, precompute them once and pass them in.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import torch.distributed as dist

from recsys.data.frame import _columns_of, _require, _scan
from recsys.data.interactions import Interactions
from recsys.data.vocabulary import Vocabulary
from recsys.errors import ConfigError, DataError

__all__ = ["agree_vocabulary", "read_shard", "shard_of"]

# fixed seeds: every rank (same polars version) computes the same hash of the same id
_SEED = 0x5EED


def _group() -> tuple[int, int] | None:
    """(rank, world size) of an initialized process group, else None."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None


def shard_of(column: str, world_size: int) -> pl.Expr:
    """The shard (``0..world_size-1``) of each row: a fixed-seed hash of its ``column`` modulo ``world_size``.

    Deterministic for one polars version (all ranks of a job run the same environment).

    >>> frame = pl.DataFrame({"user": [1, 2, 3, 1]})
    >>> shards = frame.select(shard_of("user", 2))["shard"].to_list()
    >>> shards[0] == shards[3], set(shards) <= {0, 1}
    (True, True)
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise ConfigError(f"world_size must be a positive int, got {world_size!r}", where="shard_of")
    return (pl.col(column).hash(_SEED) % world_size).cast(pl.Int64).alias("shard")


def _resolve(rank: int | None, world_size: int | None, where: str) -> tuple[int, int]:
    group = _group()
    rank = rank if rank is not None else (group[0] if group else 0)
    world_size = world_size if world_size is not None else (group[1] if group else 1)
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is outside [0, {world_size})", where=where, fix="pass 0 <= rank < world_size")
    return rank, world_size


def agree_vocabulary(values: pl.Series, vocabulary: Vocabulary | None = None) -> Vocabulary:
    """One sorted vocabulary on every rank: ``vocabulary`` if given, else the union of every rank's unique
    ``values`` (an all-gather of the unique ids; just this rank's ids outside a process group).

    >>> agree_vocabulary(pl.Series([30, 10, 30])).ids.to_list()
    [10, 30]
    """
    if vocabulary is not None:
        return vocabulary
    unique = values.drop_nulls().unique()
    group = _group()
    if group is None or group[1] == 1:
        return Vocabulary.from_values(unique)
    gathered: list[list] = [[] for _ in range(group[1])]
    dist.all_gather_object(gathered, unique.to_list())
    merged = pl.Series("id", [v for part in gathered for v in part], dtype=unique.dtype)
    return Vocabulary.from_values(merged)


def read_shard(
    path: str | Path,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str | None = "rating",
    time_col: str | None = "timestamp",
    users: Vocabulary | None = None,
    items: Vocabulary | None = None,
    separator: str | None = None,
    name: str = "custom",
) -> Interactions:
    """This rank's rows of a CSV/Parquet interaction file, id-mapped with vocabularies shared by all ranks.

    ``rank``/``world_size`` default to the process group's (0 and 1 outside one). Rows whose user hashes to
    this rank are read (:func:`shard_of`); ``users``/``items`` are the agreed vocabularies, built by
    :func:`agree_vocabulary` when not given (a collective call: every rank must call ``read_shard`` then).
    With ``world_size > 1`` and no process group both vocabularies must be given.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "rows.csv")
    >>> pl.DataFrame({"user": [1, 2, 3, 4], "item": [7, 8, 7, 9]}).write_csv(path)
    >>> items = Vocabulary.from_values(pl.Series([7, 8, 9])); users = Vocabulary.from_values(pl.Series([1, 2, 3, 4]))
    >>> parts = [read_shard(path, rank=r, world_size=2, users=users, items=items) for r in range(2)]
    >>> sum(p.num_interactions for p in parts), parts[0].num_items
    (4, 3)
    """
    where = f"read_shard({path})"
    rank, world_size = _resolve(rank, world_size, where)
    group = _group()
    if world_size > 1 and (group is None or group[1] != world_size) and (users is None or items is None):
        raise ConfigError(
            f"shard {rank} of {world_size} outside a process group of that size cannot agree on vocabularies",
            where=where, fix="call it under torchrun (init the process group first) or pass users= and items=",
        )
    path = Path(path)
    renames = {user_col: "user", item_col: "item"}
    present = _columns_of(path, separator)
    for column, new in ((rating_col, "rating"), (time_col, "timestamp")):
        if column is not None and (column in present or column != new):
            renames[column] = new
    _require(present, list(renames), where)
    frame = (
        _scan(path, separator).select(pl.col(old).alias(new) for old, new in renames.items())
        .filter(shard_of("user", world_size) == rank)
        .collect()
    )
    for column in ("user", "item"):
        if frame[column].null_count():
            raise DataError(f"column {column!r} has missing ids", where=where, fix="drop rows without a user or item id")
    users = agree_vocabulary(frame["user"], users)
    items = agree_vocabulary(frame["item"], items)
    columns = [pl.Series("user", users.to_index(frame["user"]).numpy()), pl.Series("item", items.to_index(frame["item"]).numpy())]
    columns += [frame[c] for c in ("rating", "timestamp") if c in frame.columns]
    return Interactions(pl.DataFrame(columns), users, items, name=name)
