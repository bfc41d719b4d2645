"""On-disk cache of preprocessed datasets: parquet files in a folder per key, written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from recsys.data.download import file_digest, make_temp_dir
from recsys.data.interactions import Interactions
from recsys.data.vocabulary import Vocabulary

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # bump when parsing or the stored layout changes: old entries are then ignored (2: sha256 per file; 3: files named by their stem as is)


def default_cache_dir() -> Path:
    """``$RECSYS_CACHE_DIR``, else ``~/.cache/recsys``."""
    return Path(os.environ.get("RECSYS_CACHE_DIR") or Path.home() / ".cache" / "recsys")


def _files(sources: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for source in sources:
        found.extend(sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source])
    return found


def cache_key(name: str, options: Mapping[str, Any], sources: Iterable[Path]) -> str:
    """Hash of the dataset name, preprocessing options, source files' size and mtime, and the format."""
    stamp = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in _files(sources)]
    payload = json.dumps([FORMAT_VERSION, name, dict(sorted(options.items())), stamp], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def entry(cache_dir: Path, name: str, key: str) -> Path:
    """Folder of one cache entry."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
    return Path(cache_dir) / "processed" / f"{safe}-{key}"


_PARTS = ("frame", "users", "items", "user_features", "item_features")


def save(data: Interactions, folder: Path) -> None:
    """Write ``data`` into ``folder`` via a temporary sibling renamed when complete.

    ``meta.json`` records the sha256 of every file written, checked by :func:`load`.
    """
    try:
        tmp = make_temp_dir(folder.parent, folder.name)
    except OSError as error:  # a cache that cannot be written is not fatal
        log.warning("could not write cache %s: %s", folder, error)
        return
    try:
        tables = {
            "frame": data.frame,
            "users": data.users.ids.to_frame("id"),
            "items": data.items.ids.to_frame("id"),
            "user_features": data.user_features,
            "item_features": data.item_features,
        }
        digests = {}
        for part, table in tables.items():
            if table is not None:
                table.write_parquet(tmp / f"{part}.parquet")
                digests[f"{part}.parquet"] = file_digest(tmp / f"{part}.parquet")
        meta = {"format": FORMAT_VERSION, "name": data.name, "sha256": digests}
        (tmp / "meta.json").write_text(json.dumps(meta))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except OSError as error:  # a cache that cannot be written is not fatal
        log.warning("could not write cache %s: %s", folder, error)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(folder: Path) -> Interactions | None:
    """The cached Interactions in ``folder``; None (and the entry removed, with a warning) if absent or corrupt.

    Corrupt means unreadable, of another format, or any file whose sha256 differs from the one
    recorded in ``meta.json`` when it was written (a flipped bit that parquet would read silently).
    """
    if not folder.is_dir():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta["format"] != FORMAT_VERSION:
            raise ValueError(f"format {meta['format']} != {FORMAT_VERSION}")
        digests = meta["sha256"]
        if "frame.parquet" not in digests:
            raise ValueError("meta.json records no frame.parquet")
        for file_name, expected in digests.items():
            if file_name not in {f"{part}.parquet" for part in _PARTS}:
                raise ValueError(f"unexpected file {file_name!r} in meta.json")
            found = file_digest(folder / file_name)
            if found != expected:
                raise ValueError(f"sha256 of {file_name} is {found[:12]}..., recorded {expected[:12]}...")
        tables = {part: pl.read_parquet(folder / f"{part}.parquet") if f"{part}.parquet" in digests else None for part in _PARTS}
        return Interactions(
            tables["frame"],
            Vocabulary(tables["users"]["id"]),
            Vocabulary(tables["items"]["id"]),
            user_features=tables["user_features"],
            item_features=tables["item_features"],
            name=meta["name"],
            assume_sorted=True,
        )
    except Exception as error:  # noqa: BLE001 - any unreadable entry is rebuilt
        log.warning("ignoring corrupt cache entry %s (%s); rebuilding it", folder, error)
        shutil.rmtree(folder, ignore_errors=True)
        return None
