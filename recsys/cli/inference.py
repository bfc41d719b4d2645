"""``recsys recommend|similar|export RUN_DIR``: use a saved run from the command line (no Hydra).

Bad input (a missing or damaged run directory, unknown ids, a bad format) prints one message and exits 2;
outputs are written to a temporary file and renamed, so nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

from recsys.errors import ConfigError, RecsysError
from recsys.evaluation.table import format_table
from recsys.runs import LoadedRun, load_run
from recsys.runtime import atomic_write, atomic_write_text

USAGE_ERROR = 2
EXPORT_FORMATS = ("parquet", "npy", "word2vec")


def _ids(values: str | None, file: str | None, dtype: pl.DataType) -> pl.Series | None:
    """Ids from ``--users 1,2,3`` or a file with one id per line, cast to the vocabulary's type."""
    if values is None and file is None:
        return None
    if file is not None:
        try:
            raw = [line.strip() for line in Path(file).read_text().splitlines() if line.strip()]
        except OSError as error:
            raise RecsysError(f"cannot read the id file ({error.strerror})", where=file, fix="pass a text file with one id per line") from None
    else:
        raw = [v.strip() for v in values.split(",") if v.strip()]
    series = pl.Series("id", raw)
    try:
        return series.cast(dtype) if dtype != pl.String else series
    except Exception:  # noqa: BLE001 - polars raises several types
        raise RecsysError(f"ids {raw[:5]} are not of the run's id type {dtype}", where="--users/--items",
                          fix="pass ids as they appear in the training data") from None


def _write_frame(frame: pl.DataFrame, out: str | None, limit: int = 20) -> None:
    if out is None:
        ids = [c for c in ("user", "item", "similar") if c in frame.columns]  # ids print as they are, not as 2,571
        print(format_table(frame.head(limit).with_columns(pl.col(ids).cast(pl.String)).to_dicts()))
        if frame.height > limit:
            print(f"... {frame.height - limit:,} more rows (write them all with --out FILE.parquet|.csv)")
        return
    path = Path(out)
    if path.suffix not in (".csv", ".parquet"):
        raise RecsysError(f"cannot write {path.suffix or 'a file without extension'}", where=str(path),
                          fix="name the output FILE.parquet or FILE.csv")
    if path.suffix == ".csv":
        atomic_write(path, lambda file: frame.write_csv(file))
    else:
        atomic_write(path, lambda file: frame.write_parquet(file))
    print(f"wrote {frame.height:,} rows to {path}")


def recommend(args: argparse.Namespace) -> None:
    run = _catalogue_run(args.run_dir, device=args.device)
    users = _ids(args.users, args.users_file, run.users.ids.dtype)
    users = run.users.ids if users is None else users
    frame = run.recommend(users, N=args.k, filter_already_liked_items=not args.keep_seen, batch_size=args.batch_size,
                          progress=sys.stderr.isatty(), item_columns=_columns(args.item_columns))
    _write_frame(frame, args.out)


def similar(args: argparse.Namespace) -> None:
    run = _catalogue_run(args.run_dir, device=args.device)
    items = _ids(args.items, args.items_file, run.items.ids.dtype)
    items = run.items.ids if items is None else items
    _write_frame(run.similar_items(items, N=args.k, item_columns=_columns(args.item_columns)), args.out)


def _columns(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def export(args: argparse.Namespace) -> None:
    run = _catalogue_run(args.run_dir, device="cpu")
    vectors = run.user_embeddings() if args.which == "users" else run.item_embeddings()
    out = Path(args.out or Path(args.run_dir) / f"{args.which[:-1]}_embeddings.{ {'parquet': 'parquet', 'npy': 'npy', 'word2vec': 'txt'}[args.format]}")
    if args.format == "parquet":
        vectors.to_parquet(out)
    elif args.format == "npy":
        atomic_write(out, lambda file: np.save(file, vectors.table.numpy(), allow_pickle=False))
        keys = out.with_suffix(".keys.txt")
        atomic_write_text(keys, "\n".join(map(str, vectors.index_to_key)) + "\n")
        print(f"wrote keys to {keys}")
    else:
        vectors.save_word2vec_format(out)
    print(f"wrote {len(vectors.index_to_key):,} x {vectors.table.shape[1]} {args.which[:-1]} vectors to {out}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="recsys", description="Use a saved run directory (written by recsys-train).")
    commands = top.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("recommend", help="top-k items for users (every user of the run when no --users/--users-file)")
    rec.add_argument("run_dir")
    rec.add_argument("--users", help="comma-separated original user ids (default: every user of the run)")
    rec.add_argument("--users-file", help="a file with one user id per line")
    rec.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    rec.add_argument("--keep-seen", action="store_true", help="do not filter items the user already interacted with")
    rec.add_argument("--batch-size", type=int, default=1024, help="users scored at once (bounds memory)")
    rec.add_argument("--device", default="auto")
    rec.add_argument("--out", help="write all rows to FILE.parquet or FILE.csv (default: print the first rows)")
    rec.add_argument("--item-columns", help="comma-separated item side-feature columns to add, e.g. title")
    rec.set_defaults(run=recommend)
    sim = commands.add_parser("similar", help="most similar items (all items by default)")
    sim.add_argument("run_dir")
    sim.add_argument("--items", help="comma-separated original item ids")
    sim.add_argument("--items-file", help="a file with one item id per line")
    sim.add_argument("--k", type=int, default=10)
    sim.add_argument("--device", default="auto")
    sim.add_argument("--out")
    sim.add_argument("--item-columns", help="comma-separated side-feature columns of the similar item, e.g. title")
    sim.set_defaults(run=similar)
    exp = commands.add_parser("export", help="write item (or user) embeddings keyed by original id")
    exp.add_argument("run_dir")
    exp.add_argument("--format", choices=EXPORT_FORMATS, default="parquet")
    exp.add_argument("--which", choices=("items", "users"), default="items")
    exp.add_argument("--out", help="output file (default: RUN_DIR/item_embeddings.<ext>)")
    exp.set_defaults(run=export)
    return top


def _catalogue_run(path: str, device: str) -> LoadedRun:
    """The run at ``path``; a ConfigError for a run on CTR rows, which has no users or items."""
    run = load_run(path, device=device)
    if "ctr_table" in run.info:
        raise ConfigError("this run scores CTR rows of libsvm / libFM files: it has no users or items to recommend, "
                          "relate or export", where=str(path), fix=f"score rows with: recsys evaluate {path} --data FILE")
    return run


def main(argv: list[str]) -> int:
    """``argv`` starts with the command: ``recommend``, ``similar`` or ``export``."""
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0
