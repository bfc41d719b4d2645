"""``recsys compare GRID``: run a benchmark grid (``conf/compare/GRID.yaml`` or a YAML file) into a results store."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import polars as pl

from recsys.benchmarks.grid import load_grid, run_grid
from recsys.cli.config_dir import config_dir
from recsys.errors import ConfigError, RecsysError

USAGE_ERROR = 2


def _list(text: str | None, kind: type = str) -> list | None:
    return None if text is None else [kind(part.strip()) for part in text.split(",") if part.strip()]


def _restrict(names: list | None, known: dict) -> list | None:
    """The labels of ``names`` this grid has (None: all of them)."""
    return None if names is None else [n for n in names if n in known]


def parser() -> argparse.ArgumentParser:
    grids = sorted(p.stem for p in (config_dir() / "compare").glob("*.yaml"))
    out = argparse.ArgumentParser(prog="recsys compare", description=__doc__,
                                  epilog=f"grids in conf/compare: {', '.join(grids)}")
    out.add_argument("grids", nargs="+", metavar="GRID", help="grids of conf/compare/ or YAML files (several share one store)")
    out.add_argument("--store", default=None, help="results store folder (default outputs/compare/<grid>)")
    out.add_argument("--root", default=os.environ.get("RECSYS_SHARED_DATASETS", "../shared/datasets"),
                     help="datasets folder substituted for {root} in the grid (default $RECSYS_SHARED_DATASETS or ../shared/datasets)")
    out.add_argument("--datasets", default=None, help="comma-separated dataset labels (default: all)")
    out.add_argument("--models", default=None, help="comma-separated model labels (default: all)")
    out.add_argument("--seeds", default=None, help="comma-separated seeds to run instead of the grid's (deterministic models run the first)")
    out.add_argument("--rerun", action="store_true", help="run cells again even if the store has them")
    out.add_argument("--dry-run", action="store_true", help="list the cells and their overrides, run nothing")
    out.add_argument("--timeout", type=float, default=None, help="seconds per cell before it is killed and recorded as failed")
    out.add_argument("--report", action="store_true", help="write the report (report.md, report.html, plots) into the store")
    out.add_argument("--baseline", default=None, help="model label the report's significance tests compare against")
    return out


def summary(frame: pl.DataFrame, metrics: list[str]) -> pl.DataFrame:
    """Mean over seeds of each ``test/<metric>`` per dataset and model, with the number of ok seeds."""
    ok = frame.filter(pl.col("status") == "ok")
    columns = [c for c in (f"test/{m}" for m in metrics) if c in ok.columns]
    return (ok.group_by("dataset", "model", maintain_order=True)
              .agg(pl.len().alias("seeds"), *(pl.col(c).mean() for c in columns), pl.col("train_seconds").mean())
              .sort("dataset", "model"))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        grids = [load_grid(name, config_dir()) for name in args.grids]
        cells = [cell for grid in grids for cell in grid.cells(
            root=args.root, datasets=_restrict(_list(args.datasets), grid.datasets),
            models=_restrict(_list(args.models), grid.models), seeds=_list(args.seeds, int))]
        unknown = sorted(set(_list(args.models) or ()) - {m for g in grids for m in g.models})
        unknown += sorted(set(_list(args.datasets) or ()) - {d for g in grids for d in g.datasets})
        if unknown:
            raise ConfigError(f"unknown label(s) {unknown} in {args.grids}", where="--models / --datasets",
                              fix=f"models: {sorted({m for g in grids for m in g.models})}; "
                                  f"datasets: {sorted({d for g in grids for d in g.datasets})}")
        if args.dry_run:
            for cell in cells:
                print(f"{cell.cell_id}  {cell.dataset:<16} {cell.model:<16} seed {cell.seed}  {' '.join(cell.overrides)}")
            return 0
        store = Path(args.store or Path("outputs") / "compare" / "+".join(g.name for g in grids))
        timeout = args.timeout or max((g.timeout_s or 0 for g in grids), default=0) or None
        frame = run_grid(cells, store, rerun=args.rerun, timeout_s=timeout)
        if not len(frame):
            print("no cells ran", file=sys.stderr)
            return 0
        from recsys.benchmarks.report import DEFAULT_METRICS  # matplotlib and scipy load only when a grid ran

        metrics = [m for m in DEFAULT_METRICS if f"test/{m}" in frame.columns]  # ranking, CTR or rating metrics
        with pl.Config(tbl_rows=200, tbl_cols=20, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
            print(summary(frame, metrics or sorted(c.split("/", 1)[1] for c in frame.columns if c.startswith("test/ndcg@"))))
        failed = frame.filter(pl.col("status") != "ok")
        if len(failed):
            print(f"{len(failed)} cell(s) not ok: see {store / 'logs'}", file=sys.stderr)
        if args.report:
            from recsys.benchmarks.report import write_report

            paths = write_report(store, store, baseline=args.baseline)
            print("\n".join(f"{name}: {path}" for name, path in paths.items()))
        print(f"results store: {store / 'results.parquet'}")
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted: the store keeps every finished cell; run the same command again to go on", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
