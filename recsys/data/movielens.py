"""Parsers of the MovieLens file formats (CSV/Parquet, ml-100k, ml-1m/ml-10m ``::`` files)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys.data.frame import build, read_table
from recsys.data.interactions import Interactions
from recsys.errors import DataError

FORMATS = {
    "csv": ["ratings.csv (or ratings.parquet)", "movies.csv", "tags.csv (optional)"],
    "100k": ["u.data", "u.item", "u.genre", "u.user"],
    "dat": ["ratings.dat", "movies.dat", "users.dat (ml-1m)", "tags.dat (ml-10m, optional)"],
}
NO_GENRES = "(no genres listed)"


def movielens_format(folder: Path) -> str:
    """Which MovieLens layout ``folder`` holds: "csv", "100k" or "dat"; DataError if none."""
    if (folder / "ratings.parquet").is_file() or (folder / "ratings.csv").is_file():
        return "csv"
    if (folder / "u.data").is_file():
        return "100k"
    if (folder / "ratings.dat").is_file():
        return "dat"
    expected = "; ".join(f"{kind}: {', '.join(files)}" for kind, files in FORMATS.items())
    state = "does not exist" if not folder.is_dir() else f"holds {sorted(p.name for p in folder.iterdir())[:12]}"
    raise DataError(
        f"no MovieLens ratings file found in {folder} (it {state})",
        where=str(folder),
        fix=f"point root= at the folder that holds the extracted files; expected one of: {expected}",
    )


def read_movielens(folder: str | Path, name: str = "movielens") -> Interactions:
    """Interactions with user and item features from an extracted MovieLens folder."""
    folder = Path(folder)
    kind = movielens_format(folder)
    if kind == "csv":
        return _read_csv_layout(folder, name)
    if kind == "100k":
        return _read_100k(folder, name)
    return _read_dat_layout(folder, name)


def _table(folder: Path, stem: str, columns: list[str]) -> pl.DataFrame:
    """``stem.parquet`` if present (the embedded copy), else ``stem.csv``."""
    parquet = folder / f"{stem}.parquet"
    return read_table(parquet if parquet.is_file() else folder / f"{stem}.csv", columns)


def _genres(column: pl.Expr, separator: str = "|") -> pl.Expr:
    """"A|B" -> ["A", "B"]; MovieLens' "(no genres listed)" -> []."""
    return column.str.split(separator).list.filter(pl.element() != NO_GENRES)


def _tags(tags: pl.DataFrame) -> pl.DataFrame:
    """Per-item sorted unique tags (original item ids in column ``item``)."""
    return tags.group_by("item").agg(pl.col("tag").cast(pl.String).drop_nulls().unique().sort().alias("tags"))


def _with_tags(items: pl.DataFrame, tags: pl.DataFrame | None) -> pl.DataFrame:
    if tags is None:
        return items
    joined = items.join(_tags(tags), on="item", how="left")
    return joined.with_columns(pl.col("tags").fill_null(pl.lit([], dtype=pl.List(pl.String))))


def _read_csv_layout(folder: Path, name: str) -> Interactions:
    ratings = _table(folder, "ratings", ["userId", "movieId", "rating", "timestamp"])
    ratings = ratings.rename({"userId": "user", "movieId": "item"})
    items = None
    if (folder / "movies.csv").is_file() or (folder / "movies.parquet").is_file():
        movies = _table(folder, "movies", ["movieId", "title", "genres"])
        items = movies.select(pl.col("movieId").alias("item"), "title", _genres(pl.col("genres")).alias("genres"))
        tags = None
        if (folder / "tags.csv").is_file() or (folder / "tags.parquet").is_file():
            tags = _table(folder, "tags", ["movieId", "tag"]).rename({"movieId": "item"})
        items = _with_tags(items, tags)
    return build(ratings, name=name, where=str(folder / "ratings.*"), item_features=items)


def _lines(path: Path) -> pl.Series:
    """Non-empty lines of a small text file (items, users, genres): UTF-8, else latin-1
    (ml-100k and ml-1m are latin-1)."""
    if not path.is_file():
        raise DataError(f"file not found: {path}", where=str(path.parent), fix=f"expected files: {FORMATS}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = pl.Series("line", text.splitlines(), dtype=pl.String)
    return lines.filter(lines.str.strip_chars() != "")


def _fields(path: Path, separator: str, names: list[str]) -> pl.DataFrame:
    """Split each line of a small text file into ``names`` (the last field keeps the rest)."""
    lines = _lines(path).to_frame()
    parts = lines.select(pl.col("line").str.splitn(separator, len(names)).struct.rename_fields(names)).unnest("line")
    if parts[names[-1]].null_count():
        raise DataError(
            f"{parts[names[-1]].null_count()} line(s) with fewer than {len(names)} fields",
            where=str(path),
            fix=f"expected {separator!r}-separated fields {names}",
        )
    return parts


def _ratings_numeric(path: Path, separator: str) -> pl.DataFrame:
    """user, item, rating, timestamp rows of u.data (tab) or ratings.dat (``::``)."""
    if not path.is_file():
        raise DataError(f"file not found: {path}", where=str(path.parent), fix=f"expected files: {FORMATS}")
    names = ["user", "item", "rating", "timestamp"]
    if separator == "::":  # one-byte separator ':' yields empty fields between the values
        frame = pl.read_csv(path, separator=":", has_header=False, infer_schema=False, quote_char=None)
        frame = frame.select(frame.columns[0::2])
    else:
        frame = pl.read_csv(path, separator=separator, has_header=False, infer_schema=False, quote_char=None)
    if frame.width != 4:
        raise DataError(
            f"expected 4 fields per line, found {frame.width}",
            where=str(path),
            fix=f"each line must be user{separator}item{separator}rating{separator}timestamp",
        )
    frame.columns = names
    frame = frame.with_columns(pl.col(c).str.strip_chars() for c in names)
    ids = frame.select(pl.col("user", "item").cast(pl.Int64, strict=False))
    for column in ("user", "item"):
        bad = frame[column].filter(ids[column].is_null() & frame[column].is_not_null())
        if len(bad):
            raise DataError(
                f"column {column!r} has {len(bad)} non-integer id(s), e.g. {bad.head(5).to_list()}",
                where=str(path),
                fix="MovieLens ids are integers; check that this is an unmodified MovieLens file",
            )
    return frame.with_columns(ids)


def _read_100k(folder: Path, name: str) -> Interactions:
    ratings = _ratings_numeric(folder / "u.data", "\t")
    items = users = None
    if (folder / "u.item").is_file():
        genre_names = _fields(folder / "u.genre", "|", ["genre", "index"]).sort(
            pl.col("index").str.strip_chars().cast(pl.Int64)
        )["genre"].to_list()
        fixed = ["item", "title", "release", "video_release", "url"]
        raw = _fields(folder / "u.item", "|", [*fixed, "flags"])
        flags = pl.col("flags").str.split("|")
        items = raw.select(
            pl.col("item").cast(pl.Int64),
            "title",
            pl.concat_list(
                pl.when(flags.list.get(i, null_on_oob=True) == "1").then(pl.lit(g)) for i, g in enumerate(genre_names)
            ).list.drop_nulls().alias("genres"),
        )
    if (folder / "u.user").is_file():
        users = _fields(folder / "u.user", "|", ["user", "age", "gender", "occupation", "zip"]).with_columns(
            pl.col("user").cast(pl.Int64), pl.col("age").cast(pl.Int64)
        )
    data = build(ratings, name=name, where=str(folder / "u.data"), user_features=users, item_features=items)
    return data


def _read_dat_layout(folder: Path, name: str) -> Interactions:
    ratings = _ratings_numeric(folder / "ratings.dat", "::")
    items = users = None
    if (folder / "movies.dat").is_file():
        movies = _fields(folder / "movies.dat", "::", ["item", "title", "genres"])
        items = movies.select(pl.col("item").cast(pl.Int64), "title", _genres(pl.col("genres")).alias("genres"))
        tags = None
        if (folder / "tags.dat").is_file():
            tags = _fields(folder / "tags.dat", "::", ["user", "item", "tag", "timestamp"])
            tags = tags.select(pl.col("item").cast(pl.Int64), "tag")
        items = _with_tags(items, tags)
    if (folder / "users.dat").is_file():
        users = _fields(folder / "users.dat", "::", ["user", "gender", "age", "occupation", "zip"]).select(
            pl.col("user").cast(pl.Int64), pl.col("age").cast(pl.Int64), "gender",
            pl.col("occupation").cast(pl.Int64), "zip",
        )
    return build(ratings, name=name, where=str(folder / "ratings.dat"), user_features=users, item_features=items)
