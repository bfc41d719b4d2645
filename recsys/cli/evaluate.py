"""``recsys evaluate RUN_DIR [--split valid|test] [--data FILE]``: score a saved run with its own evaluator.

Without ``--data`` it scores the part of the split the run kept (``test`` by default) with the history and
the evaluator of the run: the numbers printed at the end of training (``valid``: those of the best epoch).
``--data`` scores new rows instead: an interaction file (CSV/TSV/Parquet, read with the ``--*-col`` options,
or a .txt sequence file) in the run's original ids, or, for a run on libsvm / libFM files, another file of
that dataset. Bad input exits with code 2 and one message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from recsys.errors import RecsysError
from recsys.runtime import atomic_write_text

USAGE_ERROR = 2


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="recsys evaluate", description=__doc__.split("\n\n")[0])
    out.add_argument("run_dir", help="a run directory written by recsys-train or recsys.run_pipeline")
    out.add_argument("--split", choices=("valid", "test"), default="test", help="the part of the run's split to score (default test)")
    out.add_argument("--data", help="score this file instead (original ids; a libsvm/libFM file for a run on such files)")
    out.add_argument("--user-col", default="user", help="--data: column of user ids (default user)")
    out.add_argument("--item-col", default="item", help="--data: column of item ids (default item)")
    out.add_argument("--rating-col", default="rating", help="--data: column of ratings, 'none' for none (default rating, if present)")
    out.add_argument("--time-col", default="timestamp", help="--data: column of timestamps, 'none' for none (default timestamp, if present)")
    out.add_argument("--separator", default=None, help="--data: CSV separator (default ',' or tab for .tsv)")
    out.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    out.add_argument("--out", help="also write the metrics as JSON to this file")
    return out


def _config_evaluator(run_dir: Path) -> Any:
    """The evaluator of the run's ``config.yaml`` (runs whose ``run.json`` does not record one), or None."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    from recsys.cli.experiment import build

    cfg = OmegaConf.load(path)
    return build(cfg.eval, "eval") if cfg.get("eval") else None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from recsys.runs import evaluate_run, load_run

    try:
        run = load_run(args.run_dir, device=args.device)
        evaluator = None if run.info.get("evaluator") else _config_evaluator(Path(args.run_dir))
        columns = {"user_col": args.user_col, "item_col": args.item_col,
                   "rating_col": None if args.rating_col.lower() == "none" else args.rating_col,
                   "time_col": None if args.time_col.lower() == "none" else args.time_col, "separator": args.separator}
        result = evaluate_run(run, args.split, data=args.data, columns=columns, evaluator=evaluator)
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    dropped = f", {result.dropped:,} left out (user or item unknown to the run)" if result.dropped else ""
    print(f"{type(run.model).__name__} on {run.history.name}: {result.part}, {result.rows:,} rows{dropped}")
    print(result.table())
    if args.out:
        atomic_write_text(args.out, json.dumps({"part": result.part, "rows": result.rows, "dropped": result.dropped,
                                                "metrics": result.metrics}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
