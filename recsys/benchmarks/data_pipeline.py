"""Benchmark: load + remap ids + leave-one-out split, recsys (polars) vs plain pandas.

Writes a synthetic table (Zipf-distributed items, uniform users, timestamps) to parquet once,
then runs each pipeline in a fresh subprocess so that its time and peak RSS are its own
(best of ``--repeat`` runs, alternating pipelines, against noise from other processes).
Imports are not timed; peak RSS includes them.

    python -m recsys.benchmarks.data_pipeline --rows 20000000
    python -m recsys.benchmarks.data_pipeline --rows 100000000 --scale --repeat 1  # ours only: time, peak RSS
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recsys.benchmarks.table import format_table

PIPELINES = ("recsys", "pandas")
CHUNK_ROWS = 20_000_000  # rows generated at a time


def make_table(
    path: Path, rows: int, users: int, items: int, zipf: float, years: float, seed: int, chunk: int = CHUNK_ROWS
) -> None:
    """Synthetic interactions: item popularity ~ rank^-zipf; sparse, shuffled original ids.

    Written ``chunk`` rows at a time (one rng stream: a table of at most ``chunk`` rows is the same
    for every ``chunk``), so that 100M rows never sit in memory at once.
    """
    import polars as pl
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, items + 1, dtype=np.float64) ** zipf
    cdf = np.cumsum(weights / weights.sum())
    start = 1_500_000_000
    item_ids, writer = None, None
    for begin in range(0, rows, chunk):
        n = min(chunk, rows - begin)
        rank = np.minimum(np.searchsorted(cdf, rng.random(n)), items - 1)
        if item_ids is None:
            item_ids = rng.permutation(items).astype(np.int64) * 7 + 3  # popularity unrelated to id
        table = pl.DataFrame(
            {
                "user": rng.integers(0, users, n, dtype=np.int64) * 13 + 5,
                "item": item_ids[rank],
                "rating": (rng.integers(1, 11, n) / 2).astype(np.float32),
                "timestamp": rng.integers(start, start + int(years * 365 * 86_400), n, dtype=np.int64),
            }
        )
        del rank
        if n == rows:  # one chunk: polars' own writer, as the 20M tables always were
            table.write_parquet(path)
            return
        arrow = table.to_arrow()
        del table
        if writer is None:
            writer = pq.ParquetWriter(path, arrow.schema, compression="zstd")
        writer.write_table(arrow, row_group_size=1 << 17)
        del arrow
    if writer is not None:
        writer.close()


def run_recsys(path: Path) -> dict[str, int]:
    from recsys.data.frame import from_frame
    from recsys.data.splits import leave_one_out

    split = leave_one_out(from_frame(path))
    return {"train": split.train.num_interactions, "valid": split.valid.num_interactions, "test": split.test.num_interactions}


def run_pandas(path: Path) -> dict[str, int]:
    import pandas as pd

    frame = pd.read_parquet(path)
    frame["user"], _ = pd.factorize(frame["user"], sort=True)
    frame["item"], _ = pd.factorize(frame["item"], sort=True)
    frame = frame.sort_values(["user", "timestamp", "item"], kind="stable", ignore_index=True)
    groups = frame.groupby("user", sort=False)
    from_end = groups.cumcount(ascending=False)
    long_enough = groups["item"].transform("size") >= 3
    test = frame[long_enough & (from_end == 0)]
    valid = frame[long_enough & (from_end == 1)]
    train = frame[~long_enough | (from_end >= 2)]
    return {"train": len(train), "valid": len(valid), "test": len(test)}


def _worker(pipeline: str, path: Path) -> None:
    """Run one pipeline (imports first, untimed) and print one JSON line."""
    if pipeline == "recsys":
        import recsys.data.frame  # noqa: F401
        import recsys.data.splits  # noqa: F401
    else:
        import pandas  # noqa: F401
    run = run_recsys if pipeline == "recsys" else run_pandas
    start, cpu = time.perf_counter(), time.process_time()
    sizes = run(path)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu  # CPU time: less sensitive to other load
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": peak_mib, **sizes}))


def _measure(pipeline: str, path: Path) -> dict:
    command = [sys.executable, "-m", "recsys.benchmarks.data_pipeline", "--worker", pipeline, "--path", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{pipeline} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--zipf", type=float, default=1.0, help="item popularity exponent")
    parser.add_argument("--years", type=float, default=5.0, help="time span of the timestamps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per pipeline; the fastest is reported")
    parser.add_argument("--scale", action="store_true",
                        help="recsys only (pandas needs about 6x the memory at 1e8 rows): time and peak RSS")
    parser.add_argument("--worker", choices=PIPELINES, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.path)
        return 0
    pipelines = PIPELINES[:1] if args.scale else PIPELINES
    with tempfile.TemporaryDirectory(prefix="recsys-bench-") as tmp:
        path = Path(tmp) / "interactions.parquet"
        start = time.perf_counter()
        make_table(path, args.rows, args.users, args.items, args.zipf, args.years, args.seed)
        made = time.perf_counter() - start
        runs = [[_measure(p, path) for p in pipelines] for _ in range(args.repeat)]
        results = {p: min((r[i] for r in runs), key=lambda m: m["seconds"]) for i, p in enumerate(pipelines)}
        ranges = {p: (min(r[i]["seconds"] for r in runs), max(r[i]["seconds"] for r in runs)) for i, p in enumerate(pipelines)}
        file_mib = path.stat().st_size / 2**20
    names = {"recsys": "recsys (polars)", "pandas": "pandas"}
    rows = [
        {"pipeline": names[p], "seconds": r["seconds"], "range s": f"{ranges[p][0]:.2f}-{ranges[p][1]:.2f}",
         "CPU s": r["cpu_seconds"],
         "peak RSS MiB": round(r["peak_rss_mib"]), "train": r["train"], "valid": r["valid"], "test": r["test"]}
        for p, r in results.items()
    ]
    print(
        f"load + remap ids + leave-one-out, {args.rows:,} rows, {args.users:,} users, {args.items:,} items, "
        f"zipf {args.zipf}, best of {args.repeat}"
    )
    print(format_table(rows, floatfmt=".2f"))
    generator_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"table: {file_mib:,.0f} MiB parquet, written in {made:.1f} s (generator peak RSS {generator_mib:,.0f} MiB)")
    ours = results["recsys"]
    expected = {"test": ours["test"], "valid": ours["valid"], "train": args.rows - ours["test"] - ours["valid"]}
    if args.scale:
        print(f"peak RSS of the recsys pipeline: {ours['peak_rss_mib'] / 1024:.2f} GiB")
        return 0 if all(ours[k] == v for k, v in expected.items()) else 1
    theirs = results["pandas"]
    same = all(ours[k] == theirs[k] for k in ("train", "valid", "test"))
    print(f"speed-up: {theirs['seconds'] / ours['seconds']:.1f}x (CPU time {theirs['cpu_seconds'] / ours['cpu_seconds']:.1f}x); "
          f"splits agree: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
