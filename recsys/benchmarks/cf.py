"""Collaborative-filtering bench, a preset of the grid runner: the ``cf`` grid (``conf/compare/cf.yaml``) on one dataset.

Pop, BPR-MF, NeuMF, ALS, EASE and ``implicit``'s ALS/BPR on one split, each cell a ``recsys-train`` run in its
own process (:mod:`recsys.benchmarks.grid`), under the protocol of ``../shared/BASELINES.md``: leave-last-out by
time, fitted on train + valid, the test item ranked against every item with known items masked. Hyperparameters
live in the grid file. Prints (1) quality, mean over seeds, (2) ours vs ``implicit`` side by side with fit time
and peak-memory ratios, (3) with ``--cv``, the 5-fold RMSE of biased MF (``recsys.benchmarks.cross_validation``).
The rows stay in the results store (``--store``), so a re-run only runs what is missing and
``recsys report STORE`` draws the report.

``python -m recsys.benchmarks.cf --dataset ml-100k --root ../shared/datasets``; on your own file (the grid's
untuned defaults, tables headed by the file's name):
``recsys bench cf --file ratings.csv --file-option user_col=userId --file-option item_col=movieId --models pop,als``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import polars as pl

from recsys.benchmarks.grid import load_grid, run_grid
from recsys.evaluation.table import format_table

GRID = Path(__file__).resolve().parents[1] / "conf" / "compare" / "cf.yaml"


def _grid_file() -> Path:
    """``conf/compare/cf.yaml`` of the installed package, else of the checkout."""
    return GRID if GRID.is_file() else Path(__file__).resolve().parents[2] / "conf" / "compare" / "cf.yaml"


def _add_file(grid: Any, file: str, options: list[str], parser: argparse.ArgumentParser) -> str:
    """Add the user's file to ``grid`` as a dataset named after the file (no per-dataset tuning); returns its name."""
    path = Path(file).expanduser()
    if not path.is_file():
        parser.error(f"--file {file}: no such file (pass the path of a CSV, TSV, Parquet or .txt sequence file)")
    bad = [o for o in options if "=" not in o or o.startswith("=")]
    if bad:
        parser.error(f"--file-option {bad[0]!r}: expected KEY=VALUE, e.g. user_col=userId")
    name = path.name.split(".")[0] or path.stem
    if name in grid.datasets:
        name = f"{name} ({path.parent.name})"  # never mistaken for the tuned dataset of the same name
    grid.datasets[name] = ["dataset=file", f"dataset.name={path.resolve()}", *(f"dataset.{o}" for o in options)]
    return name


def tables(frame: pl.DataFrame, dataset: str) -> tuple[list[dict], list[dict]]:
    """Quality rows (mean over seeds) and ours-vs-implicit rows of ``dataset`` from a results store frame."""
    ok = frame.filter((pl.col("status") == "ok") & (pl.col("dataset") == dataset))
    means = {row["model"]: row for row in ok.group_by("model", maintain_order=True).agg(
        pl.len().alias("seeds"), pl.col("test/hr@10", "test/ndcg@10", "train_seconds", "peak_rss_mib").mean()).iter_rows(named=True)}
    quality = [{"model": m, "seeds": r["seeds"], "HR@10": r["test/hr@10"], "NDCG@10": r["test/ndcg@10"],
                "fit s": r["train_seconds"], "peak RSS MiB": r["peak_rss_mib"]} for m, r in means.items()]
    pairs = [(ours, f"implicit-{ours}") for ours in ("als", "bpr") if ours in means and f"implicit-{ours}" in means]
    versus = [{"model": ours, "ours s": means[ours]["train_seconds"], "implicit s": means[peer]["train_seconds"],
               "time ratio (ours/implicit)": means[ours]["train_seconds"] / means[peer]["train_seconds"],
               "ours MiB": means[ours]["peak_rss_mib"], "implicit MiB": means[peer]["peak_rss_mib"],
               "memory ratio": means[ours]["peak_rss_mib"] / means[peer]["peak_rss_mib"],
               "ours NDCG@10": means[ours]["test/ndcg@10"], "implicit NDCG@10": means[peer]["test/ndcg@10"],
               "NDCG ratio": means[ours]["test/ndcg@10"] / max(means[peer]["test/ndcg@10"], 1e-12)} for ours, peer in pairs]
    return quality, versus


def main(argv: list[str] | None = None) -> int:
    grid = load_grid(_grid_file())
    parser = argparse.ArgumentParser(prog="recsys bench cf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k", choices=sorted(grid.datasets))
    parser.add_argument("--file", default=None, help="your own interaction file (CSV/TSV/Parquet table or a 'user item1 "
                        "item2 ...' .txt) instead of --dataset: the grid's untuned defaults, tables headed by its name")
    parser.add_argument("--file-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a dataset option for --file, repeatable: user_col=userId, item_col=movieId, rating_col=null, ...")
    parser.add_argument("--root", default="../shared/datasets", help="folder holding ml-100k/ and amazon-beauty/")
    parser.add_argument("--models", default=",".join(grid.models), help=f"comma-separated subset of {','.join(grid.models)}")
    parser.add_argument("--seeds", type=int, default=len(grid.seeds))
    parser.add_argument("--threads", type=int, default=grid.threads or 2, help="threads for ours (torch) and implicit alike")
    parser.add_argument("--device", default="cpu", help="cpu or cuda for our models")
    parser.add_argument("--store", default="outputs/compare/cf", help="results store (re-runs skip finished cells)")
    parser.add_argument("--cv", action="store_true", help="also print the 5-fold RMSE of biased MF (ml-100k)")
    parser.add_argument("--cv-root", default=None, help="root for the CV dataset (default: --root/..)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(grid.models))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(grid.models)}")
    grid.threads = args.threads
    grid.overrides = [*grid.overrides, f"trainer.device={args.device}"]
    if args.file is not None:
        args.dataset = _add_file(grid, args.file, args.file_option, parser)
    cells = grid.cells(root=str(Path(args.root)), datasets=[args.dataset], models=models, seeds=range(args.seeds))
    frame = run_grid(cells, args.store, echo=lambda line: print(line, file=sys.stderr, flush=True))
    frame = frame.filter(pl.col("cell_id").is_in([c.cell_id for c in cells]))
    quality, versus = tables(frame, args.dataset)
    print(f"## {args.dataset}: leave-last-out, fit on train+valid, test item ranked against all items; mean of "
          f"{args.seeds} seeds (Pop, EASE deterministic: 1); {args.threads} threads\n")
    print(format_table(quality))
    if versus:
        print(f"\n## ours vs implicit, same split, same evaluator, {args.threads} threads each\n")
        print(format_table(versus))
    failed = frame.filter(pl.col("status") != "ok")
    for row in failed.iter_rows(named=True):
        print(f"{row['model']} seed {row['seed']}: {row['status']}: {row['error']}", file=sys.stderr)
    if args.cv:
        from recsys.benchmarks import cross_validation

        print()
        cv_root = args.cv_root or args.root
        cross_validation.main(["--dataset", "ml-100k", "--root", cv_root])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
