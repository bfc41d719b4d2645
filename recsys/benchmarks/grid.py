"""The benchmark grid runner: models x datasets x seeds, each cell one ``recsys-train`` run in its own process.

A grid is one YAML of the ``compare`` config group (``conf/compare/<name>.yaml``) or any YAML file::

    description: CF models and implicit on ml-100k
    seeds: [0, 1, 2]
    threads: 2                      # trainer.threads of every cell (peers use it too)
    overrides: [fit_on=train+valid] # Hydra overrides of every cell
    datasets:                       # label -> overrides; "{root}" is the --root datasets folder
      ml-100k: [dataset=ml-100k, "dataset.root={root}/ml-100k"]
    models:                         # label -> overrides (+ peer: the library a peer needs, seeds: 1 if deterministic)
      als: {overrides: [model=als]}
      implicit-als: {overrides: [model=peer/implicit_als], peer: implicit}
    per_dataset:                    # dataset label -> model label -> extra overrides (settings tuned per dataset)
      ml-100k: {als: [model.module.alpha=5.0]}

Every cell runs ``python -m recsys.cli.train <overrides> seed=<seed>`` with its run directory under
``STORE/cells/<cell_id>/`` (the id hashes the cell's overrides), so each cell is the same pipeline as
``recsys-train``, under the same split and evaluator as its neighbours, and nothing leaks between cells. The
parent measures wall time and the peak RSS of the cell's process tree (``wait4``) and appends one row to
``STORE/results.parquet`` (rewritten atomically: an interrupted grid leaves the rows of its finished cells).
A re-run skips the cells already ``ok``; a failed cell is recorded with its error and the grid goes on.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from recsys.errors import ConfigError, DataError
from recsys.runtime import atomic_write

__all__ = ["Cell", "Grid", "append_row", "load_grid", "machine_facts", "read_store", "run_grid"]

RESULTS = "results.parquet"
#: distributions whose versions every row records (those installed)
LIBRARIES = ("torch", "polars", "numpy", "scipy", "scikit-learn", "implicit", "gensim", "faiss-cpu", "deepctr-torch", "recbole")
_GRID_KEYS = {"description", "seeds", "threads", "overrides", "datasets", "models", "per_dataset", "timeout_s"}
_MODEL_KEYS = {"overrides", "peer", "seeds"}


@dataclass(frozen=True)
class Cell:
    """One (dataset, model, seed) of a grid and the ``recsys-train`` overrides that run it."""

    grid: str
    dataset: str
    model: str
    seed: int
    overrides: tuple[str, ...]
    peer: str | None = None

    @property
    def cell_id(self) -> str:
        """16 hex digits of the sha256 of the cell's overrides (the same cell in any grid has the same id)."""
        return hashlib.sha256(json.dumps(list(self.overrides)).encode()).hexdigest()[:16]

    def command(self, run_dir: Path) -> list[str]:
        return [sys.executable, "-m", "recsys.cli.train", *self.overrides, f"hydra.run.dir={run_dir}"]


@dataclass
class Grid:
    """A parsed grid YAML (see the module docstring)."""

    name: str
    datasets: dict[str, list[str]]
    models: dict[str, dict[str, Any]]
    seeds: list[int] = field(default_factory=lambda: [0])
    threads: int | None = None
    overrides: list[str] = field(default_factory=list)
    per_dataset: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    description: str = ""
    timeout_s: float | None = None

    def cells(self, root: str = "../shared/datasets", datasets: Iterable[str] | None = None,
              models: Iterable[str] | None = None, seeds: Iterable[int] | None = None) -> list[Cell]:
        """Every cell, optionally restricted to some dataset/model labels, dataset-major.

        ``seeds`` replaces the grid's seeds (more seeds than the grid file names, or fewer); a deterministic model
        (``seeds: n`` in the grid) runs the first ``n`` of them."""
        chosen = {"dataset": datasets, "model": models}
        for kind, names in chosen.items():
            known = self.datasets if kind == "dataset" else self.models
            unknown = sorted(set(names or ()) - set(known))
            if unknown:
                raise ConfigError(f"unknown {kind} label(s) {unknown} in grid {self.name!r}", where=f"--{kind}s",
                                  fix=f"choose from {sorted(known)}")
        out = []
        for dataset, data_overrides in self.datasets.items():
            if datasets is not None and dataset not in set(datasets):
                continue
            for model, spec in self.models.items():
                if models is not None and model not in set(models):
                    continue
                own_seeds = self.seeds if seeds is None else list(dict.fromkeys(seeds))
                own_seeds = own_seeds[: int(spec["seeds"])] if spec.get("seeds") else own_seeds
                for seed in own_seeds:
                    overrides = [*self.overrides, *data_overrides, *spec.get("overrides", []),
                                 *self.per_dataset.get(dataset, {}).get(model, []), f"seed={seed}",
                                 "trainer.progress=false", "compare_to_popularity=false"]
                    if self.threads is not None:
                        overrides.append(f"trainer.threads={self.threads}")
                    overrides = [o.replace("{root}", root) for o in overrides]
                    out.append(Cell(self.name, dataset, model, seed, tuple(overrides), spec.get("peer")))
        return out


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of override strings, got {value!r}", where=where,
                          fix='write e.g. [model=als, "model.module.alpha=5.0"]')
    return list(value)


def read_group_yaml(name_or_path: str | Path, config_dir: Path | None, group: str, what: str, where: str) -> tuple[Path, Any]:
    """``(path, parsed YAML)`` of ``conf/<group>/<name>.yaml`` (``config_dir`` is ``conf/``) or of a YAML file path;
    a missing file names the group's files, a malformed one the YAML error."""
    path = Path(name_or_path)
    if not path.suffix and config_dir is not None:
        path = config_dir / group / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir / group).glob("*.yaml")) if config_dir else []
        raise ConfigError(f"{what} {str(name_or_path)!r} not found ({path})", where=where,
                          fix=f"name one of {known} or a YAML file" if known else "pass a YAML file")
    try:
        return path, yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}", where=str(path)) from None


def load_grid(name_or_path: str | Path, config_dir: Path | None = None) -> Grid:
    """A grid from ``conf/compare/<name>.yaml`` (``config_dir`` is ``conf/``) or a YAML file path."""
    path, raw = read_group_yaml(name_or_path, config_dir, "compare", "grid", "recsys compare GRID")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping", where=str(path), fix="see recsys.benchmarks.grid's docstring")
    unknown = sorted(set(raw) - _GRID_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {path}", where=str(path), fix=f"use {sorted(_GRID_KEYS)}")
    for key in ("datasets", "models"):
        if not isinstance(raw.get(key), dict) or not raw[key]:
            raise ConfigError(f"{path} needs a non-empty '{key}' mapping", where=f"{path}:{key}")
    datasets = {str(k): _strings(v, f"{path}:datasets.{k}") for k, v in raw["datasets"].items()}
    models: dict[str, dict[str, Any]] = {}
    for label, spec in raw["models"].items():
        spec = {"overrides": spec} if isinstance(spec, list) else spec
        if not isinstance(spec, dict) or set(spec) - _MODEL_KEYS:
            raise ConfigError(f"model {label!r} in {path}: expected a list of overrides or a mapping of {sorted(_MODEL_KEYS)}",
                              where=f"{path}:models.{label}")
        models[str(label)] = {**spec, "overrides": _strings(spec.get("overrides", []), f"{path}:models.{label}.overrides")}
    per_dataset = {}
    for dataset, table in (raw.get("per_dataset") or {}).items():
        if dataset not in datasets or not isinstance(table, dict) or set(table) - set(models):
            raise ConfigError(f"per_dataset.{dataset} must map model labels of this grid to overrides", where=f"{path}:per_dataset",
                              fix=f"datasets: {sorted(datasets)}; models: {sorted(models)}")
        per_dataset[str(dataset)] = {str(m): _strings(v, f"{path}:per_dataset.{dataset}.{m}") for m, v in table.items()}
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"seeds must be a non-empty list of ints, got {seeds!r}", where=f"{path}:seeds")
    return Grid(name=path.stem, datasets=datasets, models=models, seeds=seeds, threads=raw.get("threads"),
                overrides=_strings(raw.get("overrides", []), f"{path}:overrides"), per_dataset=per_dataset,
                description=str(raw.get("description", "")), timeout_s=raw.get("timeout_s"))


# --- the store ---------------------------------------------------------------------------------------------
def read_store(store: str | Path) -> pl.DataFrame:
    """The rows of ``STORE/results.parquet`` (an empty frame when the grid has not finished a cell yet)."""
    path = Path(store) / RESULTS
    if not path.exists():
        return pl.DataFrame()
    try:
        return pl.read_parquet(path)
    except Exception as error:  # polars raises several kinds on a damaged file
        raise DataError(f"{path} is not a readable results store ({type(error).__name__})", where=str(path),
                        fix="restore it from a copy or delete it to start the grid again") from None


def append_row(store: Path, row: dict[str, Any]) -> None:
    """Replace the row of ``row['cell_id']`` (if any) and rewrite the store atomically."""
    old = read_store(store)
    new = pl.DataFrame([row], infer_schema_length=None)
    if len(old):
        old = old.filter(pl.col("cell_id") != row["cell_id"])
        new = pl.concat([old, new], how="diagonal_relaxed")
    atomic_write(store / RESULTS, new.write_parquet)


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def code_version() -> str:
    """``git describe --always --dirty`` of the checkout the package runs from, else the package version."""
    here = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"recsys {_version('recsys') or 'unknown'}"


def machine_facts(threads: int | None) -> dict[str, Any]:
    """CPU model, cores, the cells' thread count, GPU (``nvidia-smi``'s name, or None) and the load average."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    if shutil.which("nvidia-smi"):
        try:
            gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            gpu = None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "gpu": gpu, "load_1min": load}


def _metrics(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / "metrics.json").read_text())
    out: dict[str, Any] = {"train_seconds": float(summary.get("train_seconds") or 0.0),
                           "fit_interactions": int(summary.get("fit_interactions") or 0)}
    for part in ("valid", "test"):
        for key, value in (summary.get(part) or {}).items():
            if key not in ("num_users", "epoch", "seconds", "loss") and isinstance(value, (int, float)):
                out[f"{part}/{key}"] = float(value)
    return out


def _last_error(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.exists() else []
    errors = [i for i, line in enumerate(lines) if line.startswith(("error:", "Error", "Traceback"))]
    return "\n".join(lines[errors[-1]:][-6:] if errors else lines[-6:]) or "no output"


def run_cell(cell: Cell, store: Path, *, env: dict[str, str] | None = None, timeout_s: float | None = None) -> dict[str, Any]:
    """Run one cell in its own process and return its store row (``status`` ok, failed or skipped)."""
    run_dir = store / "cells" / cell.cell_id
    log = store / "logs" / f"{cell.cell_id}.log"
    shutil.rmtree(run_dir, ignore_errors=True)  # a cell killed earlier starts again from nothing
    log.parent.mkdir(parents=True, exist_ok=True)
    libraries = {name: v for name in LIBRARIES if (v := _version(name))}
    row: dict[str, Any] = {
        "cell_id": cell.cell_id, "grid": cell.grid, "dataset": cell.dataset, "model": cell.model, "peer": cell.peer is not None,
        "library": f"{cell.peer} {_version(cell.peer) or ''}".strip() if cell.peer else f"recsys {_version('recsys') or ''}".strip(),
        "seed": cell.seed, "settings": json.dumps(list(cell.overrides)), "status": "ok", "error": None,
        "code_version": code_version(), "library_versions": json.dumps(libraries),
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run_dir": str(run_dir.relative_to(store)), "wall_seconds": None, "train_seconds": None, "peak_rss_mib": None,
        "throughput": None,
    }
    threads = next((int(o.split("=", 1)[1]) for o in reversed(cell.overrides) if o.startswith("trainer.threads=")
                    and o.split("=", 1)[1].isdigit()), None)
    row["threads"] = threads
    row["machine"] = json.dumps(machine_facts(threads))
    if cell.peer and importlib.util.find_spec(cell.peer.replace("-", "_")) is None:
        row.update(status="skipped", error=f"{cell.peer} is not installed (pip install {cell.peer})")
    else:
        started = time.perf_counter()
        with log.open("wb") as out:
            process = subprocess.Popen(cell.command(run_dir), stdout=out, stderr=subprocess.STDOUT, env=env)
            try:
                _, status, usage = _wait(process, timeout_s)
            except BaseException:
                process.kill()
                process.wait()
                raise
        row["wall_seconds"] = time.perf_counter() - started
        row["peak_rss_mib"] = usage.ru_maxrss / 1024 if usage is not None else None  # KiB on Linux
        if status is None:
            row.update(status="failed", error=f"timed out after {timeout_s} s")
        elif os.waitstatus_to_exitcode(status) != 0 or not (run_dir / "metrics.json").is_file():
            row.update(status="failed", error=f"exit {os.waitstatus_to_exitcode(status)}: {_last_error(log)}")
        else:
            metrics = _metrics(run_dir)
            fitted = metrics.pop("fit_interactions")
            row.update(metrics)
            row["throughput"] = fitted / row["train_seconds"] if row["train_seconds"] else None
    row["finished_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return row


def _wait(process: subprocess.Popen, timeout_s: float | None) -> tuple[int, int | None, Any]:
    """``os.wait4`` the child (its resource usage, peak RSS included); kill it past ``timeout_s``."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG if deadline else 0)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return pid, status, usage
        if time.monotonic() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            process.returncode = -9
            return pid, None, usage
        time.sleep(0.2)


def run_grid(cells: list[Cell], store: str | Path, *, rerun: bool = False, env: dict[str, str] | None = None,
             timeout_s: float | None = None, echo: Callable[[str], None] = print) -> pl.DataFrame:
    """Run every cell not yet ``ok`` in ``store`` (all with ``rerun``), one process each; returns the store."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    done = read_store(store)
    finished = set(done.filter(pl.col("status") == "ok")["cell_id"].to_list()) if len(done) else set()
    for number, cell in enumerate(cells, 1):
        label = f"[{number}/{len(cells)}] {cell.dataset} {cell.model} seed {cell.seed}"
        if cell.cell_id in finished and not rerun:
            echo(f"{label}: done before, skipped")
            continue
        echo(f"{label}: running")
        row = run_cell(cell, store, env=env, timeout_s=timeout_s)
        append_row(store, row)
        detail = f"{row['wall_seconds']:.1f} s" if row["wall_seconds"] is not None else ""
        echo(f"{label}: {row['status']} {detail}" + (f"\n    {row['error']}" if row["error"] else ""))
    return read_store(store)
