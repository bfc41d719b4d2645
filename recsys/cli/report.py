"""``recsys report STORE`` (Markdown + self-contained HTML report of a results store) and ``recsys plot RUN_DIR``.

Bad input (a missing or damaged store or run directory, an unknown metric or baseline) prints one message and
exits 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recsys.benchmarks.plots import plot_run
from recsys.benchmarks.report import DEFAULT_METRICS, export_store, write_report
from recsys.errors import ConfigError, RecsysError

USAGE_ERROR = 2


def report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys report", description="Tables and plots from a benchmark results store.")
    parser.add_argument("store", help="the STORE directory written by the grid runner (holds results.parquet)")
    parser.add_argument("--out", help="where report.md, report.html and the PNG plots go (default: STORE/report)")
    parser.add_argument("--metric", action="append", dest="metrics", metavar="METRIC",
                        help=f"a metric to tabulate, repeatable (default: those of {' '.join(DEFAULT_METRICS)} the "
                             "store holds); bare names are test metrics, valid/NAME the validation ones")
    parser.add_argument("--baseline", help="model to test every other model against (paired t-test, Wilcoxon)")
    parser.add_argument("--no-references", action="store_true", help="leave out the published numbers")
    parser.add_argument("--export", metavar="DIR", help="also write a compact copy of the store the report can be rebuilt "
                        "from (results.parquet, each cell's metrics.csv and per-user values), small enough to commit")
    return parser


def plot_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys plot", description="Training curves (loss, validation metrics) of one run.")
    parser.add_argument("run_dir", help="a run directory with metrics.csv")
    parser.add_argument("--out", help="the PNG file to write (default: RUN_DIR/training_curves.png)")
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its message (or --help)
        return int(exit_.code or 0)


def report_main(argv: list[str]) -> int:
    """``recsys report STORE [--out DIR] [--metric M ...] [--baseline MODEL]``: print the Markdown and the paths."""
    args = _parse(report_parser(), argv)
    if isinstance(args, int):
        return args
    out = Path(args.out) if args.out else Path(args.store) / "report"
    try:
        paths = write_report(args.store, out, metrics=tuple(args.metrics) if args.metrics else None, baseline=args.baseline,
                             references=not args.no_references)
        if args.export:
            exported = export_store(args.store, args.export, metrics=tuple(args.metrics) if args.metrics else None)
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    print(paths["markdown"].read_text())
    print(f"wrote {paths['markdown']}")
    print(f"wrote {paths['html']} (self-contained)")
    print(f"wrote {len(paths) - 2} plots to {out}")
    if args.export:
        print(f"wrote the compact store {exported} (`recsys report {exported}` rebuilds this report)")
    return 0


def plot_main(argv: list[str]) -> int:
    """``recsys plot RUN_DIR [--out FILE.png]``: write one run's training curves and print the path."""
    args = _parse(plot_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        if args.out is not None and Path(args.out).suffix.lower() != ".png":
            raise ConfigError(f"cannot write {Path(args.out).suffix or 'a file without extension'}", where=args.out,
                              fix="name the output FILE.png")
        path = plot_run(args.run_dir, args.out)
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    print(f"wrote {path}")
    return 0
