"""Benchmark: how long the README's quickstart takes, from the shell prompt to the results table.

Two parts, each in fresh subprocesses (best and range of ``--repeats``):

* imports: ``import torch`` alone (the floor every run pays), ``import recsys`` (the front door) and the
  modules a default ``recsys-train`` loads before it trains (:data:`DEFAULT_RUN_MODULES`), timed inside
  the child so interpreter start-up is not counted;
* the default ``recsys-train`` (BPR-MF on the embedded ``ml-latest-small``, the run directory in a
  temporary folder; run as ``python -c "from recsys.cli.train import main; main()"``, which is what the
  console script does): wall time of the whole command, and the training time it records
  (``metrics.json``'s ``train_seconds``: epochs and their validations).

Beside wall seconds it reports the CPU seconds (user + system) of the same processes: on a busy machine
wall time grows with the load, CPU time much less.

Goals (issue 17): the default run within 5 s of wall time, its imports within 1 s.

    recsys bench startup --repeats 5
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

from recsys.benchmarks.table import format_table

#: What ``recsys-train`` imports before its first epoch: the entry point (which loads the data, models,
#: training and evaluation packages) and the optimizer its default config builds.
DEFAULT_RUN_MODULES = ("recsys.cli.train", "recsys.training.optim")
IMPORTS = {"torch (floor)": ("torch",), "recsys": ("recsys",), "default-run modules": DEFAULT_RUN_MODULES}
WALL_GOAL, IMPORT_GOAL = 5.0, 1.0

_TIMER = """import importlib, sys, time
start, cpu = time.perf_counter(), time.process_time()
for name in sys.argv[1:]:
    importlib.import_module(name)
print(time.perf_counter() - start, time.process_time() - cpu)
"""
TRAIN = [sys.executable, "-c", "from recsys.cli.train import main; main()"]  # what the recsys-train script runs


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def import_seconds(modules: tuple[str, ...]) -> tuple[float, float]:
    """(wall, CPU) seconds to import ``modules`` in a fresh interpreter, its start-up not counted."""
    done = subprocess.run([sys.executable, "-c", _TIMER, *modules], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"importing {modules} failed:\n{done.stderr[-4000:]}")
    wall, cpu = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def train_seconds(run_dir: Path, overrides: list[str]) -> tuple[float, float, float]:
    """(wall, CPU, recorded training) seconds of ``recsys-train hydra.run.dir=run_dir [overrides]``."""
    command = [*TRAIN, f"hydra.run.dir={run_dir}", *overrides]
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"recsys-train {' '.join(command[3:])} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return wall, cpu, float(metrics["train_seconds"])


def _row(what: str, walls: list[float], cpus: list[float] | None, goal: float | None) -> dict[str, object]:
    best = min(walls)
    return {"what": what, "best s": best, "range s": f"{min(walls):.2f}-{max(walls):.2f}",
            "cpu s (best)": "" if cpus is None else f"{min(cpus):.2f}",
            "goal s": "" if goal is None else f"<= {goal:g}",
            "meets": "" if goal is None else ("yes" if best <= goal else "no")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement (best and range)")
    parser.add_argument("--no-train", action="store_true", help="time the imports only")
    parser.add_argument("--record", default=None, help="merge the default run's wall time (best and range) into this "
                        "speed file (docs/results/speed.json)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the timed recsys-train (default: none)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    rows, imports = [], {}
    for what, modules in IMPORTS.items():
        walls, cpus = zip(*(import_seconds(modules) for _ in range(args.repeats)))
        imports[what] = list(walls)
        rows.append(_row(f"import {what}", list(walls), list(cpus), IMPORT_GOAL if modules == DEFAULT_RUN_MODULES else None))
    runs = []
    if not args.no_train:
        with tempfile.TemporaryDirectory(prefix="recsys-startup-") as tmp:
            runs = [train_seconds(Path(tmp) / f"run-{i}", args.overrides) for i in range(args.repeats)]
        rows.append(_row("recsys-train wall", [r[0] for r in runs], [r[1] for r in runs], WALL_GOAL))
        rows.append(_row("recsys-train training", [r[2] for r in runs], None, None))
    command = " ".join(["recsys-train", *args.overrides])
    print(f"start-up of the default run ({command}), fresh processes, best and range of {args.repeats}")
    print(format_table(rows, floatfmt=".2f"))
    if args.record and runs:
        from recsys.benchmarks.readme import record

        print(f"recorded in {record(args.record, [speed_claim(runs, imports, args)])}")
    return 0


def speed_claim(runs: list[tuple[float, float, float]], imports: dict[str, list[float]],
                args: argparse.Namespace) -> dict[str, object]:
    """The README row: the default run's wall seconds (best, range), its training seconds and import times beside it."""
    from recsys.benchmarks.readme import claim

    command = " ".join(["recsys-train", *args.overrides])
    detail = (f"training {min(r[2] for r in runs):.2f} s, imports of the default-run modules "
              f"{min(imports['default-run modules']):.2f} s (`import torch` alone {min(imports['torch (floor)']):.2f} s); "
              f"goals {WALL_GOAL:g} s wall, {IMPORT_GOAL:g} s imports")
    overrides = f" {' '.join(args.overrides)}" if args.overrides else ""
    return claim(f"`{command}` wall time, fresh processes", [r[0] for r in runs],
                 f"recsys bench startup --repeats {len(runs)}{overrides}", None, higher_is_better=False, unit=" s", detail=detail)


if __name__ == "__main__":
    raise SystemExit(main())
