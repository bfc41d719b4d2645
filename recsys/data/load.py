"""``load_dataset``: a dataset by name or path -> preprocessed, cached Interactions."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recsys.data import cache, download, filters, frame, movielens, sequences_file
from recsys.data.interactions import Interactions
from recsys.errors import ConfigError, DataError

EMBEDDED = "ml-latest-small"
MOVIELENS = (EMBEDDED, *download.ARCHIVES)
KNOWN = (*MOVIELENS, "amazon-beauty", "amazon-<category> (e.g. amazon-sports)", "a path to a .csv/.parquet/.txt file")
FILE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".txt")
COLUMN_DEFAULTS = {"user_col": "user", "item_col": "item", "rating_col": "rating", "time_col": "timestamp", "separator": None}


def embedded_folder() -> Path:
    """Folder of the embedded ml-latest-small: the checkout's ``datasets/`` or the wheel's ``recsys/datasets/``."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "datasets" / EMBEDDED, package.parent / "datasets" / EMBEDDED):
        if candidate.is_dir():
            return candidate
    raise DataError(
        "the embedded ml-latest-small dataset is missing from this installation",
        where=f"{package / 'datasets' / EMBEDDED} or {package.parent / 'datasets' / EMBEDDED}",
        fix="reinstall recsys, or pass root= to a folder that holds ml-latest-small/",
    )


def _local(root: Path, names: tuple[str, ...], has: Callable[[Path], bool], itself: bool) -> Path | None:
    """``root/<name>`` for the first name whose folder passes ``has``, else (if ``itself``)
    ``root`` itself, else None."""
    for candidate in (*(root / n for n in names), *([root] if itself else [])):
        if has(candidate):
            return candidate
    return None


def _is_movielens(folder: Path) -> bool:
    return any((folder / f).is_file() for f in ("ratings.csv", "ratings.parquet", "u.data", "ratings.dat"))


def _data_root(root: str | Path | None) -> tuple[Path | None, bool]:
    """The local data root and whether it was given explicitly (else ``$RECSYS_DATA_ROOT``)."""
    if root is not None:
        return Path(root).expanduser(), True
    env = os.environ.get("RECSYS_DATA_ROOT")
    return (Path(env).expanduser() if env else None), False


def _amazon_file(name: str, root: Path, explicit: bool) -> Path | None:
    """The sequence file of ``amazon-<category>``: ``<category>.txt`` in ``root/<name>/`` (or ``root``), in any case,
    or a file whose name starts with ``<category>_`` (``amazon-sports`` -> ``Sports_and_Outdoors.txt``)."""
    stem = name.removeprefix("amazon-").lower()
    for folder in (root / name, *([root] if explicit else [])):
        files = sorted(p for p in folder.glob("*.txt") if p.is_file()) if folder.is_dir() else []
        exact = [p for p in files if p.stem.lower() == stem]
        prefixed = [p for p in files if p.stem.lower().startswith(stem + "_")]
        if exact or len(prefixed) == 1:
            return (exact or prefixed)[0]
        if len(prefixed) > 1:
            raise DataError(f"several sequence files match {name}: {[p.name for p in prefixed]}", where=str(folder),
                            fix=f"pass the file itself: dataset.name={prefixed[0]} (or dataset=file)")
    return None


def _resolve(
    name: str, root: Path | None, explicit: bool, cache_dir: Path, allow_download: bool, columns: dict[str, Any]
) -> tuple[Path, Callable[[], Interactions]]:
    """The source (file or folder) of a dataset, and the parser that reads it.

    An explicit ``root`` must hold the dataset; ``$RECSYS_DATA_ROOT`` is used when it does.
    """
    path = Path(name).expanduser()
    if path.suffix.lower() in FILE_SUFFIXES or path.is_file():
        if not path.is_file():
            raise DataError(f"file not found: {path}", where=f"load_dataset({name!r})", fix="check the path")
        if path.suffix.lower() == ".txt":
            if columns != COLUMN_DEFAULTS:
                raise ConfigError(f"column options {sorted(k for k in columns if columns[k] != COLUMN_DEFAULTS[k])} do not "
                                  "apply to a sequence file (one 'user item1 item2 ...' line per user)",
                                  where=f"load_dataset({name!r})", fix="drop them, or convert the file to CSV/Parquet")
            return path, lambda: sequences_file.load_sequence_file(path)
        return path, lambda: frame.from_frame(path, name=path.stem, **columns)
    if columns != COLUMN_DEFAULTS:
        raise ConfigError(f"column options apply to files; {name!r} is a named dataset", where=f"load_dataset({name!r})",
                          fix="drop user_col/item_col/rating_col/time_col/separator, or pass a file path as name")
    if name in MOVIELENS:
        archive = download.ARCHIVES.get(name)
        names = (name, archive.folder) if archive else (name,)
        folder = _local(root, names, _is_movielens, itself=explicit) if root is not None else None
        if folder is None and explicit:
            movielens.movielens_format(root / name)  # raises: names the path and the expected files
        if folder is None and name == EMBEDDED:
            folder = embedded_folder()
        elif folder is None and allow_download:
            folder = download.download_movielens(name, cache_dir)
        elif folder is None:
            raise DataError(
                f"{name} is not available locally and download=False",
                where=f"load_dataset({name!r})",
                fix=f"pass root= (or set RECSYS_DATA_ROOT) to a folder holding {name}/, or download=True",
            )
        return folder, lambda: movielens.read_movielens(folder, name)
    if name.startswith("amazon-") and len(name) > len("amazon-"):
        stem = name.removeprefix("amazon-")
        file_name = f"{stem[:1].upper()}{stem[1:]}.txt"
        where = f"{root}/{name}/ or {root}/" if root else "no root given"
        found = _amazon_file(name, root, explicit) if root is not None else None
        if found is not None:
            return found, lambda: sequences_file.load_sequence_file(found, name)
        raise DataError(
            f"{name} is not downloadable; its sequence file ({file_name}, any case, or {stem}_*.txt) was not found",
            where=where,
            fix=f"pass root= (or set RECSYS_DATA_ROOT) to the folder holding {name}/{file_name} or {file_name}, "
            "or pass the file itself: dataset=file dataset.name=PATH",
        )
    raise DataError(
        f"unknown dataset {name!r}",
        where="load_dataset(name)",
        fix=f"use one of: {', '.join(KNOWN)}",
    )


def load_dataset(
    name: str = "ml-latest-small",
    root: str | Path | None = None,
    *,
    min_rating: float | None = None,
    k_core: int | None = None,
    deduplicate: bool = False,
    cache_dir: str | Path | None = None,
    download: bool = True,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str | None = "rating",
    time_col: str | None = "timestamp",
    separator: str | None = None,
) -> Interactions:
    """Load a dataset by name or path, preprocess it, and cache the result.

    Names: ``ml-latest-small`` (embedded), ``ml-100k``, ``ml-1m``, ``ml-10m``, ``ml-20m``,
    ``ml-25m`` (downloaded from GroupLens unless ``root``/``$RECSYS_DATA_ROOT`` holds
    ``<name>/``), ``amazon-<category>`` (a local ``<category>.txt``, any case, or ``<category>_*.txt``
    under ``root``), or a path to a .csv/.tsv/.parquet table or a .txt sequence file (one
    ``user item1 item2 ...`` line per user, in time order). A file's dataset is named by its stem.
    Tables are read with the column options (:func:`~recsys.data.frame.from_frame`: ``user_col``,
    ``item_col``, ``rating_col``/``time_col``, None for none, and the CSV ``separator``).
    Preprocessing, in order: ``min_rating`` (keep rating >= it), ``deduplicate`` (latest of
    each user-item pair), ``k_core`` (users and items with >= k interactions).
    The result is cached in ``cache_dir`` (``$RECSYS_CACHE_DIR`` or ``~/.cache/recsys``),
    keyed by name, options and the source files' size and mtime.
    """
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else cache.default_cache_dir()
    columns = {"user_col": user_col, "item_col": item_col, "rating_col": rating_col, "time_col": time_col,
               "separator": separator}
    source, parse = _resolve(str(name), *_data_root(root), cache_root, download, columns)
    options = {"min_rating": min_rating, "k_core": k_core, "deduplicate": deduplicate}
    if columns != COLUMN_DEFAULTS:  # the cache keys of named datasets and default columns stay as they were
        options.update(columns)
    folder = cache.entry(cache_root, name if source.is_dir() else source.stem, cache.cache_key(name, options, [source]))
    data = cache.load(folder)
    if data is not None:
        return data
    data = parse()
    if min_rating is not None:
        data = filters.binarize(data, min_rating)
    if deduplicate:
        data = filters.deduplicate(data)
    if k_core is not None:
        data = filters.k_core(data, k_core, k_core)
    cache.save(data, folder)
    return data
