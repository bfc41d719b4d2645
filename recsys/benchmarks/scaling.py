"""Scaling bench: time and peak memory of loading, training steps, evaluation and batch recommendation
at three sizes per axis (users, items, interactions, embedding dim), with a power-law exponent per axis.

Each task is run with one axis scaled by ``--factors`` (default 1, 2, 4) and the others at the base sizes;
``t ~ size ** b`` is fitted by least squares on log-log (``b`` the "time exponent"; likewise for memory).
Time is CPU time of the process (all threads; one torch thread by default), which stays meaningful on a
machine shared with other jobs, where wall time does not.
Peak memory is the rise of the process's peak RSS (``VmHWM``, reset before each run through
``/proc/self/clear_refs``; freed heap returned with ``malloc_trim`` first) over its RSS before the run, in MiB:
Linux only, rough below a few MiB. Times are the best of ``--repeats`` runs or more (keep 2 or more: the
first run of a task pays one-off costs). Synthetic data: users uniform,
items Zipf-distributed. Only the public API is used.

Tasks: ``load`` (``from_frame`` of a Parquet file), ``bpr_step`` / ``sasrec_step`` (one optimizer step:
batch, loss, backward, Adam; the fastest of several), ``bpr_sparse_step`` (sparse tables, SparseSGD), ``als_fit`` (2 ALS iterations), ``ease_fit`` (the closed form),
``evaluate`` (full-ranking :class:`RankingEvaluator` over every user), ``recommend`` (top 10 for every user,
already-liked items filtered). Axes a task does not depend on by construction are skipped.

``python -m recsys.benchmarks.scaling`` (minutes on 2 busy cores).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.evaluation.table import format_table

AXES = ("users", "items", "interactions", "dim")
BASE = {"users": 4000, "items": 2000, "interactions": 100_000, "dim": 32}
# EASE inverts an (N, N) matrix: its items axis starts lower to stay within the bench's minutes
TASK_BASE = {"ease_fit": {"items": 500}}
# the axes each task's cost can depend on (the others are fixed by construction: a step sees one batch)
TASK_AXES = {
    "load": ("users", "items", "interactions"),
    "bpr_step": ("users", "items", "dim"),
    "bpr_sparse_step": ("users", "items", "dim"),
    "sasrec_step": ("items", "dim"),
    "als_fit": ("users", "items", "interactions", "dim"),
    "ease_fit": ("users", "items"),
    "evaluate": ("users", "items", "dim"),
    "recommend": ("users", "items", "dim"),
}
BPR_BATCH, SASREC_BATCH, SASREC_LEN, STEPS = 1024, 64, 50, 8


def synthetic_rows(users: int, items: int, interactions: int, seed: int = 0) -> pl.DataFrame:
    """``interactions`` rows: users uniform, items with popularity ~ rank^-1, increasing timestamps."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, items + 1)
    cdf = np.cumsum(weights / weights.sum())
    item = np.minimum(np.searchsorted(cdf, rng.random(interactions)), items - 1)
    user = np.concatenate([np.arange(users), rng.integers(0, users, max(interactions - users, 0))])[:interactions]
    return pl.DataFrame({"user": user * 3 + 1, "item": item * 7 + 2, "rating": np.ones(interactions, np.float32),
                         "timestamp": np.arange(interactions, dtype=np.int64)})


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(run: Callable[[], float], repeats: int, min_seconds: float = 0.3, max_runs: int = 6) -> tuple[float, float | None]:
    """(best seconds that ``run`` reports, peak RSS rise in MiB or None where it cannot be read) over at least
    ``repeats`` runs, more (up to ``max_runs``) while they took under ``min_seconds`` of CPU in all."""
    best, peak, spent, runs = math.inf, None, 0.0, 0
    while runs < repeats or (spent < min_seconds and runs < max_runs):
        runs += 1
        started = time.process_time()
        _trim()
        before = _status_kib("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            resettable = True
        except OSError:
            resettable = False
        best = min(best, run())
        high = _status_kib("VmHWM")
        if resettable and before is not None and high is not None:
            rise = max(high - before, 0) / 1024
            peak = rise if peak is None else min(peak, rise)
        spent += time.process_time() - started
    return best, peak


def _timed(fn: Callable[[], Any]) -> float:
    """CPU seconds of this process (all its threads) while ``fn`` runs: unlike wall time, not inflated while
    other processes hold the cores."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def _split(size: dict[str, int]):
    from recsys import from_frame, leave_one_out

    return leave_one_out(from_frame(synthetic_rows(size["users"], size["items"], size["interactions"])))


def _steps(model: torch.nn.Module, batches: Any, sparse: bool = False) -> float:
    """Seconds of the fastest of ``STEPS`` optimizer steps (after one warm-up step) of ``model`` on ``batches``:
    Adam, or for sparse tables :class:`SparseSGD` (touches only the batch's rows)."""
    from recsys.embeddings.sparse_optim import SparseSGD

    optimizer = SparseSGD(model.parameters(), lr=0.05) if sparse else torch.optim.Adam(model.parameters(), lr=1e-3)
    iterator = iter(batches)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.loss(next(iterator)).backward()
        optimizer.step()

    step()
    return min(_timed(step) for _ in range(STEPS))


def task(name: str, size: dict[str, int], workdir: Path) -> Callable[[], float]:
    """The measured closure of task ``name`` at ``size`` (data prepared beforehand, outside the measurement)."""
    import recsys
    from recsys.inference import FittedRecommender

    if name == "load":
        path = workdir / f"rows-{size['users']}-{size['items']}-{size['interactions']}.parquet"
        synthetic_rows(size["users"], size["items"], size["interactions"]).write_parquet(path)
        return lambda: _timed(lambda: recsys.from_frame(path))
    split = _split(size)
    train, dim = split.train, size["dim"]
    if name == "bpr_step":
        batches = recsys.PairwiseBatches(train, batch_size=BPR_BATCH, seed=0)
        return lambda: _steps(recsys.BPRMF(train.num_users, train.num_items, embedding_dim=dim), batches)
    if name == "bpr_sparse_step":
        batches = recsys.PairwiseBatches(train, batch_size=BPR_BATCH, seed=0)
        return lambda: _steps(recsys.BPRMF(train.num_users, train.num_items, embedding_dim=dim, sparse=True, reduction="sum"),
                              batches, sparse=True)
    if name == "sasrec_step":
        batches = recsys.NextItemBatches(train, max_len=SASREC_LEN, batch_size=SASREC_BATCH, seed=0)
        return lambda: _steps(recsys.SASRec(train.num_items, max_len=SASREC_LEN, embedding_dim=dim, dropout=0.0), batches)
    if name == "als_fit":
        return lambda: _timed(lambda: recsys.ALS(train.num_users, train.num_items, factors=dim, iterations=2).prepare(train))
    if name == "ease_fit":
        return lambda: _timed(lambda: recsys.EASE(train.num_items, reg=100.0).prepare(train))
    torch.manual_seed(0)
    model = recsys.BPRMF(train.num_users, train.num_items, embedding_dim=dim).eval()
    if name == "evaluate":
        evaluator = recsys.RankingEvaluator(ks=(10,), metrics=("hr", "ndcg"))
        return lambda: _timed(lambda: evaluator.evaluate_model(model, train, split.test))
    if name == "recommend":
        fitted = FittedRecommender(model, train)
        users = train.users.ids
        return lambda: _timed(lambda: fitted.recommend(users, N=10))
    raise ValueError(f"unknown task {name!r}; choose from {sorted(TASK_AXES)}")


def exponent(sizes: Sequence[float], values: Sequence[float | None]) -> float | None:
    """Least-squares slope of log(value) on log(size): ``value ~ size ** slope``.

    >>> round(exponent([1, 2, 4], [3.0, 12.0, 48.0]), 3)
    2.0
    """
    points = [(math.log(s), math.log(v)) for s, v in zip(sizes, values) if v is not None and v > 0]
    if len(points) < 2:
        return None
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


def run(tasks: Sequence[str], factors: Sequence[float], repeats: int, scale: float, workdir: Path) -> list[dict[str, Any]]:
    """One row per (task, axis): the three sizes, seconds and MiB at each, and both fitted exponents."""
    base = {axis: max(1, int(round(v * scale))) if axis != "dim" else v for axis, v in BASE.items()}
    rows = []
    for name in tasks:
        mine = {**base, **{k: max(1, int(round(v * scale))) for k, v in TASK_BASE.get(name, {}).items()}}
        for axis in TASK_AXES[name]:
            sizes, seconds, mib = [], [], []
            for factor in factors:
                size = {**mine, axis: int(round(mine[axis] * factor))}
                t, m = measure(task(name, size, workdir), repeats)
                sizes.append(size[axis])
                seconds.append(t)
                mib.append(m)
            rows.append({
                "task": name, "axis": axis, "sizes": " / ".join(f"{s:,}" for s in sizes),
                "cpu seconds": " / ".join(f"{t:.3g}" for t in seconds),
                "peak MiB": " / ".join("-" if m is None else f"{m:.1f}" for m in mib),
                "time exp": exponent(sizes, seconds), "mem exp": exponent(sizes, mib),
                "_base": mine,
            })
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="recsys bench scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASK_AXES), choices=list(TASK_AXES))
    parser.add_argument("--factors", nargs="+", type=float, default=[1.0, 2.0, 4.0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the base users/items/interactions")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU seconds add up over threads)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        rows = run(args.tasks, args.factors, args.repeats, args.scale, Path(workdir))
    print(format_table([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], floatfmt=".2f"))
    base = rows[0]["_base"] if rows else BASE
    print(f"\nbase: {base}; factors {args.factors}; {torch.get_num_threads()} torch threads; "
          f"{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
