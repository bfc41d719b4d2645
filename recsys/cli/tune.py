"""``recsys tune SPACE [overrides ...]``: hyperparameter search on the validation split (Optuna TPE + pruning).

A trial is ``recsys-train`` composed from the space's overrides, the user's and the sampled values (``fit_on=train``:
the objective is ``trainer.monitor`` on validation, ``split.test`` is never read), run in this process so each
evaluation reaches the pruner. The study lives in ``OUT/study.db`` (SQLite): the same command resumes a search
that stopped. Every trial appends a row to ``STORE/results.parquet``. Afterwards the best trial becomes the
overlay ``OUT/experiment/<name>.yaml``, rerun once with test metrics (``--compare-defaults``: the shipped defaults
too), and ``OUT/tune_report.md`` shows both with the optimization history and parameter importances.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import math
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from recsys.benchmarks.grid import LIBRARIES, append_row, code_version, machine_facts
from recsys.benchmarks.tuning import (
    INTERRUPTED,
    PRUNERS,
    PruningCallback,
    SearchSpace,
    TrialRecord,
    counted_trials,
    format_override,
    load_space,
    make_pruner,
    open_study,
    optuna_module,
    storage_url,
    study_lock,
    trial_row,
)
from recsys.cli.config_dir import config_dir
from recsys.cli.experiment import build, config_differences, run_experiment
from recsys.cli.tune_config import check_params, compose_config, overlay_text, split_machine
from recsys.cli.train import dataset_slug
from recsys.errors import ConfigError, RecsysError
from recsys.runtime import atomic_write_text

USAGE_ERROR = 2
TRIAL_OVERRIDES = ("fit_on=train", "trainer.progress=false", "trainer.tensorboard=false", "compare_to_popularity=false")
RERUN_OVERRIDES = ("trainer.progress=false", "compare_to_popularity=false")
FAILED_IN_A_ROW = 3  # the first trials of a search all failing means the setup is broken: stop, do not burn the budget


def parser() -> argparse.ArgumentParser:
    spaces = sorted(p.stem for p in (config_dir() / "tune").glob("*.yaml"))
    out = argparse.ArgumentParser(prog="recsys tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog=f"spaces in conf/tune: {', '.join(spaces)}")
    out.add_argument("space", metavar="SPACE", help="a search space of conf/tune/ or a YAML file")
    out.add_argument("overrides", nargs="*", help="recsys-train overrides of every trial (dataset=..., dataset.root=...)")
    out.add_argument("--trials", type=int, default=None, help="trials in the study in all (default 30 without --minutes)")
    out.add_argument("--minutes", type=float, default=None, help="stop starting trials after this many minutes")
    out.add_argument("--study-name", default=None, help="default <space>-<dataset>")
    out.add_argument("--out", default=None, help="output folder (default outputs/tune/<study-name>)")
    out.add_argument("--storage", default=None, help="SQLite file or RDB URL of the study (default OUT/study.db)")
    out.add_argument("--store", default=None, help="results store receiving a row per trial (default OUT)")
    out.add_argument("--pruner", choices=PRUNERS, default="median", help="median (default), hyperband or none")
    out.add_argument("--seed", type=int, default=0, help="TPE sampler seed (each trial's training seed is the config's)")
    out.add_argument("--name", default=None, help="overlay name, for experiment=NAME (default tuned_<study-name>)")
    out.add_argument("--compare-defaults", action="store_true", help="also rerun the shipped defaults with test metrics")
    out.add_argument("--no-rerun", action="store_true", help="write the overlay, skip the rerun with test metrics")
    out.add_argument("--dry-run", action="store_true", help="print the trial config and the space, run nothing")
    return out


@dataclass
class Search:
    """What one ``recsys tune`` composes before its first trial."""

    space: SearchSpace
    learn: list[str]  # the space's overrides, then the user's (what the run learns from)
    machine: list[str]  # where it runs (kept out of the overlay)
    monitor: str
    direction: str
    study_name: str
    out: Path
    store: Path
    dataset: str
    seed: int
    epochs: int | None  # the trainer's epoch budget (Hyperband's largest resource; None: until patience stops it)
    defaults: dict[str, Any]

    def trial_overrides(self, params: dict[str, Any]) -> list[str]:
        return [*self.learn, *self.machine, *TRIAL_OVERRIDES, *(format_override(p, v) for p, v in params.items())]

    def fingerprint(self) -> dict[str, Any]:
        return {**self.space.fingerprint(), "learn": self.learn, "monitor": self.monitor, "direction": self.direction}


def prepare(args: argparse.Namespace) -> Search:
    """Parse the space, compose the trial config once and check it: nothing is loaded or trained."""
    if args.trials is not None and args.trials <= 0:
        raise ConfigError(f"--trials must be positive, got {args.trials}", where="--trials", fix="e.g. --trials 30")
    if args.minutes is not None and not args.minutes > 0:
        raise ConfigError(f"--minutes must be positive, got {args.minutes}", where="--minutes", fix="e.g. --minutes 10")
    space = load_space(args.space, config_dir())
    learn, machine = split_machine([*space.overrides, *args.overrides])
    cfg = compose_config([*learn, *machine, *TRIAL_OVERRIDES])
    defaults = check_params(cfg, space, args.overrides)
    mode = cfg.trainer.get("mode", "max")
    dataset = dataset_slug(cfg.dataset.get("name", "dataset"))
    study_name = args.study_name or f"{space.name}-{dataset}"
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", study_name):
        raise ConfigError(f"study name {study_name!r} has characters a file name should not", where="--study-name",
                          fix="use letters, digits and . _ + -")
    out = Path(args.out or Path("outputs") / "tune" / study_name)
    return Search(space=space, learn=learn, machine=machine, monitor=str(cfg.trainer.monitor),
                  direction="maximize" if mode == "max" else "minimize", study_name=study_name, out=out,
                  store=Path(args.store) if args.store else out, dataset=dataset, seed=int(cfg.seed),
                  epochs=cfg.trainer.get("epochs"), defaults=defaults)


class Objective:
    """One trial: compose, fit on train, select on validation (pruned through the Trainer's callbacks), record."""

    def __init__(self, search: Search, echo: Callable[[str], None], budget: int | None) -> None:
        self.search, self.echo, self.budget = search, echo, budget
        self._data: tuple[str, Any] | None = None  # (dataset config, the loaded data) of the last trial
        self.libraries = {n: v for n in LIBRARIES if (v := _version(n))}
        self.code_version = code_version()
        self.statuses: list[str] = []  # of this run's trials, in order
        self.errors: list[str] = []

    def data(self, cfg: DictConfig) -> Any:
        key = OmegaConf.to_yaml(cfg.dataset, resolve=True)
        if self._data is None or self._data[0] != key:
            self._data = (key, build(cfg.dataset, "dataset"))
        return self._data[1]

    def __call__(self, trial: Any) -> float:
        optuna = optuna_module()
        search = self.search
        params = search.space.sample(trial)
        overrides = search.trial_overrides(params)
        record = TrialRecord(study=search.study_name, number=trial.number, space=search.space.name, dataset=search.dataset,
                             seed=search.seed, overrides=overrides, params=params, status="ok", wall_seconds=0.0)
        callback = PruningCallback(trial, search.monitor)
        started = time.perf_counter()
        try:
            cfg = compose_config(overrides)
            result = run_experiment(cfg, None, data=self.data(cfg), callbacks=[callback], evaluate_test=False)
            value = result.valid.get(search.monitor)
            if value is None or not math.isfinite(value):
                raise ConfigError(f"the trial reported no finite {search.monitor!r} on validation ({value!r})",
                                  where="trainer.monitor", fix="check that the split has a validation part")
        except KeyboardInterrupt:
            trial.set_user_attr(INTERRUPTED, True)  # not counted: a resumed search runs these params again
            raise
        except Exception as error:
            message = f"{type(error).__name__}: {str(error).strip()}"
            record.status, record.error, record.wall_seconds = "failed", message, time.perf_counter() - started
            trial.set_user_attr("error", message[:2000])
            self._record(record)
            raise
        record.wall_seconds, record.train_seconds = time.perf_counter() - started, result.train_seconds
        record.best_epoch, record.valid = result.best_epoch, dict(result.valid)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("train_seconds", round(result.train_seconds, 3))
        if callback.pruned_at is not None:
            record.status, record.pruned_at = "pruned", callback.pruned_at
            self._record(record)
            raise optuna.TrialPruned(f"pruned after epoch {callback.pruned_at}")
        self._record(record)
        return float(value)

    def _record(self, record: TrialRecord) -> None:
        append_row(self.search.store, trial_row(record, code_version=self.code_version, libraries=self.libraries,
                                                machine=machine_facts(None), threads=None))
        shown = record.valid.get(self.search.monitor)
        detail = f"valid {self.search.monitor} {shown:.5f}" if shown is not None else ""
        if record.status == "pruned":
            detail += f" (pruned after epoch {record.pruned_at})"
        if record.error:
            detail = record.error.splitlines()[0][:160]
            self.errors.append(record.error)
        self.statuses.append(record.status)
        params = " ".join(format_override(p, v) for p, v in record.params.items())
        of = f"/{self.budget}" if self.budget else ""
        self.echo(f"trial {record.number + 1}{of} {record.status:<7} {detail}  {record.wall_seconds:.1f} s  {params}")

    def stop_if_broken(self, study: Any, _trial: Any) -> None:
        """Optuna callback: stop when the first :data:`FAILED_IN_A_ROW` trials of this run all failed."""
        if self.statuses == ["failed"] * FAILED_IN_A_ROW:
            study.stop()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def search_loop(search: Search, args: argparse.Namespace, echo: Callable[[str], None]) -> Any:
    """Open (or resume) the study and run trials until the budget is spent; returns the study."""
    optuna = optuna_module()
    storage = storage_url(args.storage or search.out / "study.db")
    trials = args.trials if args.trials is not None else (None if args.minutes else 30)
    startup = min(10, max(2, trials // 3)) if trials else 10
    study, existed = open_study(storage, search.study_name, search.direction, search.fingerprint(), seed=args.seed,
                                pruner=make_pruner(args.pruner, search.epochs, startup), startup_trials=startup)
    done = counted_trials(study)
    if existed:
        echo(f"resuming study {search.study_name} ({done} trials done) from {storage}")
    else:
        defaults = {p: search.space.params[p].encode(v) for p, v in search.defaults.items()}
        if all(search.space.params[p].contains(v) for p, v in search.defaults.items()):
            study.enqueue_trial(defaults, user_attrs={"defaults": True})  # trial 1 = the shipped defaults
        else:
            outside = [p for p, v in search.defaults.items() if not search.space.params[p].contains(v)]
            echo(f"note: the shipped defaults of {outside} lie outside the space; no trial runs them")
    remaining = None if trials is None else max(0, trials - done)
    if remaining == 0:
        echo(f"the study has its {trials} trials; raise --trials to search further")
        return study
    objective = Objective(search, echo, trials)
    study.optimize(objective, n_trials=remaining, timeout=args.minutes * 60 if args.minutes else None,
                   catch=(Exception,), callbacks=[objective.stop_if_broken])
    if objective.statuses and set(objective.statuses) == {"failed"}:
        raise ConfigError(f"all {len(objective.statuses)} trials of this run failed; the first: {objective.errors[0]}",
                          where=f"recsys tune {search.space.name}", fix="fix the error above (the study keeps the trials)")
    return study


def best_params(search: Search, study: Any) -> tuple[Any, dict[str, Any]]:
    """The best finished trial and its config values."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ConfigError(f"study {search.study_name} has no finished trial (all pruned or failed)",
                          where=f"recsys tune {search.space.name}", fix="see the trials' errors in the results store")
    best = study.best_trial
    return best, {p: search.space.params[p].decode(best.params[p]) for p in search.space.params}


def plain_command(search: Search, params: dict[str, Any]) -> list[str]:
    """The overrides of ``recsys-train`` that run ``params`` without the overlay."""
    return [*search.learn, *(format_override(p, v) for p, v in params.items()), *search.machine]


def write_overlay(search: Search, name: str, trial: Any, params: dict[str, Any]) -> tuple[Path, str]:
    """``OUT/experiment/<name>.yaml`` and the command that reruns it."""
    folder = search.out.resolve()
    command = " ".join(["recsys-train", f"experiment={name}", f"'hydra.searchpath=[file://{folder}]'", *search.machine])
    header = [f"Tuned by `recsys tune {search.space.name}` (study {search.study_name}): trial {trial.number + 1}, "
              f"valid {search.monitor} {trial.value:.5f}.", f"Rerun: {command}",
              f"Ship it: copy this file to conf/experiment/{name}.yaml (then experiment={name} needs no searchpath)."]
    path = folder / "experiment" / f"{name}.yaml"
    atomic_write_text(path, overlay_text(search.learn, params, header) + "\n")
    return path, command


def rerun(search: Search, label: str, overrides: list[str], expected: list[str] | None,
          echo: Callable[[str], None]) -> dict[str, Any]:
    """Run ``overrides`` once with test metrics into ``OUT/cells/<id>``; its store row (kind rerun) is returned.

    ``expected``: the plain overrides the run must equal (the overlay is checked against the trial it came from)."""
    cfg = compose_config([*overrides, *RERUN_OVERRIDES])
    if expected is not None:
        plain = compose_config([*expected, *RERUN_OVERRIDES])
        differing = config_differences(OmegaConf.to_container(plain, resolve=True), OmegaConf.to_container(cfg, resolve=True))
        if differing:
            raise ConfigError(f"the overlay composes to another config than its trial: {sorted(differing)}",
                              where=" ".join(overrides), fix=f"rerun with plain overrides: recsys-train {' '.join(expected)}")
    cell_id = hashlib.sha256(json.dumps(["tune", search.study_name, label, overrides]).encode()).hexdigest()[:16]
    run_dir = search.store / "cells" / cell_id
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    echo(f"{label}: fitting with test metrics into {run_dir}")
    started = time.perf_counter()
    result = run_experiment(cfg, run_dir)
    row = {"cell_id": cell_id, "grid": f"tune:{search.study_name}", "dataset": search.dataset,
           "model": f"{search.space.name} ({label})", "peer": False, "library": "recsys", "seed": search.seed,
           "settings": json.dumps(overrides), "status": "ok", "error": None,
           "code_version": code_version(), "run_dir": str(run_dir.relative_to(search.store)),
           "wall_seconds": time.perf_counter() - started, "train_seconds": result.train_seconds, "peak_rss_mib": None,
           "throughput": None, "machine": json.dumps(machine_facts(None)), "kind": "rerun", "best_epoch": result.best_epoch}
    for part, metrics in (("valid", result.valid), ("test", result.test)):
        row.update({f"{part}/{k}": float(v) for k, v in metrics.items()
                    if k not in ("epoch", "loss", "seconds", "num_users") and isinstance(v, (int, float))})
    append_row(search.store, row)
    return row


def main(argv: list[str] | None = None, echo: Callable[[str], None] = print) -> int:
    args = parser().parse_intermixed_args(argv)
    try:
        search = prepare(args)
        if args.dry_run:
            echo("trial overrides: " + " ".join(search.trial_overrides({})))
            echo(f"objective: valid {search.monitor} ({search.direction}); study {search.study_name} in {search.out}")
            for path, param in search.space.params.items():
                echo(f"  {path}: {param.type} {param.choices or (param.low, param.high)}{' log' if param.log else ''}"
                     f"  (default {search.defaults[path]!r})")
            return 0
        optuna_module()
        search.out.mkdir(parents=True, exist_ok=True)
        with study_lock(search.out / f"{search.study_name}.lock"):
            started = time.perf_counter()
            study = search_loop(search, args, echo)
            best, params = best_params(search, study)
            name = args.name or f"tuned_{search.study_name}"
            path, command = write_overlay(search, name, best, params)
            echo(f"best: trial {best.number + 1}, valid {search.monitor} {best.value:.5f}: "
                 + " ".join(format_override(p, v) for p, v in params.items()))
            echo(f"overlay: {path}\nrerun: {command}")
            reruns = []
            if not args.no_rerun:
                plain = plain_command(search, params)
                overlay = [f"experiment={name}", f"hydra.searchpath=[file://{search.out.resolve()}]", *search.machine]
                reruns.append(rerun(search, "tuned", overlay, plain, echo))
            if args.compare_defaults:
                reruns.append(rerun(search, "defaults", [*search.learn, *search.machine], None, echo))
            from recsys.benchmarks.tuning_report import write_tune_report

            report = write_tune_report(study, search.out, space=search.space, monitor=search.monitor,
                                       defaults=search.defaults, best_params=params, overlay=path, command=command,
                                       plain_command=" ".join(["recsys-train", *plain_command(search, params)]),
                                       reruns=reruns, search_seconds=time.perf_counter() - started)
            for row in reruns:
                tests = {k: v for k, v in row.items() if k.startswith("test/") and "@10" in k and "coverage" not in k}
                shown = tests or {k: v for k, v in row.items() if k.startswith("test/")}
                echo(f"{row['model']}: " + ", ".join(f"{k} {v:.5f}" for k, v in shown.items()))
            echo(f"report: {report}\nresults store: {search.store / 'results.parquet'}")
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted: the study keeps its finished trials; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
