"""Hyperparameter search on the validation split: search spaces, the Optuna study, pruning, store rows.

A search space is one YAML of ``conf/tune/`` (or any YAML file); its keys are Hydra override paths::

    description: EASE's L2 on the validation item
    overrides: [model=ease]               # what every trial runs (before the user's own overrides)
    params:                               # override path -> distribution
      model.module.reg: {type: float, low: 1.0, high: 5000.0, log: true}
      model.module.values: {type: categorical, choices: [ones, ratings]}
      model.batches.num_negatives: {type: int, low: 1, high: 8}

``float`` and ``int`` take ``low``, ``high``, ``log`` (default false) and ``step``; ``categorical`` takes
``choices`` (lists and mappings allowed: Optuna stores their JSON). The study lives in an Optuna storage (SQLite
by default), so a search that stops resumes; trials report each evaluation to the pruner through
:class:`PruningCallback`, a :class:`~recsys.training.Trainer` callback. Hydra stays in ``recsys.cli.tune``.
Optuna is the ``tune`` extra (``pip install 'recsys[tune]'``), imported when a study is opened.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.benchmarks.grid import read_group_yaml
from recsys.errors import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["Param", "PruningCallback", "SearchSpace", "counted_trials", "load_space", "open_study", "study_lock",
           "trial_row"]

_PARAM_KEYS = {"type": {"float", "int", "categorical"}, "low": None, "high": None, "log": None, "step": None,
               "choices": None}
_SPACE_KEYS = {"description", "overrides", "params"}
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
PRUNERS = ("median", "hyperband", "none")
INTERRUPTED = "interrupted"  # user attribute of a trial a Ctrl-C or a killed process cut short (not in the budget)


def optuna_module() -> Any:
    """``optuna``, or a :class:`ConfigError` saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("hyperparameter search needs Optuna, which is not installed", where="recsys tune",
                          fix="pip install 'recsys[tune]' (or: pip install optuna)") from None
    return optuna


def _yaml_number(value: Any) -> Any:
    """``1e-4`` as a float: YAML 1.1 (PyYAML) reads exponents without a dot as strings; OmegaConf does not.

    >>> _yaml_number("1e-4"), _yaml_number("x"), _yaml_number(3)
    (0.0001, 'x', 3)
    """
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


@dataclass(frozen=True)
class Param:
    """One searched value: its override ``path`` and distribution.

    >>> Param.parse("model.module.reg", {"type": "float", "low": 1.0, "high": 100.0, "log": True}).contains(50.0)
    True
    """

    path: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    @classmethod
    def parse(cls, path: str, spec: Any, where: str = "params") -> Param:
        """A :class:`Param` from its YAML mapping; :class:`ConfigError` on anything malformed."""
        def bad(what: str, fix: str) -> ConfigError:
            return ConfigError(f"search parameter {path!r}: {what}", where=f"{where}.{path}", fix=fix)

        if not isinstance(path, str) or not _PATH.match(path):
            raise bad("not a config path", "keys are dotted config paths such as model.module.reg")
        if not isinstance(spec, dict) or spec.get("type") not in _PARAM_KEYS["type"]:
            raise bad(f"needs a mapping with type float, int or categorical, got {spec!r}",
                      "e.g. {type: float, low: 1.0, high: 1000.0, log: true}")
        unknown = sorted(set(spec) - set(_PARAM_KEYS))
        if unknown:
            raise bad(f"unknown key(s) {unknown}", f"use {sorted(_PARAM_KEYS)}")
        kind = spec["type"]
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices or set(spec) - {"type", "choices"}:
                raise bad("a categorical takes only a non-empty list of choices", "e.g. {type: categorical, choices: [32, 64]}")
            encoded = [json.dumps(c, sort_keys=True) for c in choices]
            if len(set(encoded)) != len(encoded):
                raise bad("choices repeat", "list each choice once")
            return cls(path, kind, choices=tuple(choices))
        if "choices" in spec:
            raise bad(f"a {kind} takes low/high, not choices", "use type: categorical for a list of values")
        low, high, step = (_yaml_number(spec.get(k)) for k in ("low", "high", "step"))
        log = spec.get("log", False)
        number = int if kind == "int" else (int, float)
        if not all(isinstance(v, number) and not isinstance(v, bool) for v in (low, high)) or not low < high:
            raise bad(f"needs numbers low < high{' (integers)' if kind == 'int' else ''}, got low={low!r}, high={high!r}",
                      "e.g. low: 1, high: 8")
        if not isinstance(log, bool) or (log and low <= 0):
            raise bad(f"log={log!r} with low={low!r}", "log: true needs low > 0")
        if step is not None and (not isinstance(step, number) or isinstance(step, bool) or step <= 0 or log):
            raise bad(f"step={step!r}", "step is a positive number and cannot be combined with log: true")
        return cls(path, kind, float(low) if kind == "float" else low, float(high) if kind == "float" else high, log, step)

    def _encoded(self) -> list[Any]:
        return [c if _primitive(c) else json.dumps(c, sort_keys=True) for c in self.choices]

    def suggest(self, trial: optuna.Trial) -> Any:
        """The trial's value of this parameter (categorical lists and mappings decoded)."""
        if self.type == "float":
            return trial.suggest_float(self.path, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.path, self.low, self.high, log=self.log, step=self.step or 1)
        encoded = self._encoded()
        return self.choices[encoded.index(trial.suggest_categorical(self.path, encoded))]

    def encode(self, value: Any) -> Any:
        """``value`` as Optuna stores it (for :meth:`optuna.Study.enqueue_trial`)."""
        return value if self.type != "categorical" or _primitive(value) else json.dumps(value, sort_keys=True)

    def decode(self, stored: Any) -> Any:
        """The config value of a stored trial parameter."""
        if self.type == "categorical" and stored in self._encoded():
            return self.choices[self._encoded().index(stored)]
        return stored

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in this distribution (the shipped default can be the first trial)."""
        if self.type == "categorical":
            return json.dumps(value, sort_keys=True) in {json.dumps(c, sort_keys=True) for c in self.choices}
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        if self.type == "int" and value != int(value):
            return False
        return self.step is None or abs((value - self.low) / self.step - round((value - self.low) / self.step)) < 1e-9


@dataclass(frozen=True)
class SearchSpace:
    """A parsed search-space YAML (see the module docstring)."""

    name: str
    params: dict[str, Param]
    overrides: tuple[str, ...] = ()
    description: str = ""
    source: str = ""

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """``{path: value}`` for every parameter, suggested by ``trial``."""
        return {path: param.suggest(trial) for path, param in self.params.items()}

    def fingerprint(self) -> dict[str, Any]:
        """What a stored study must match to be resumed with this space."""
        spaces = {p: {k: v for k, v in vars(param).items() if k != "path"} for p, param in self.params.items()}
        return {"overrides": list(self.overrides), "params": json.loads(json.dumps(spaces, default=list))}


def load_space(name_or_path: str | Path, config_dir: Path | None = None) -> SearchSpace:
    """A space from ``conf/tune/<name>.yaml`` (``config_dir`` is ``conf/``) or a YAML file path."""
    path, raw = read_group_yaml(name_or_path, config_dir, "tune", "search space", "recsys tune SPACE")
    if not isinstance(raw, dict) or not isinstance(raw.get("params"), dict) or not raw["params"]:
        raise ConfigError(f"{path} needs a non-empty 'params' mapping", where=str(path),
                          fix="see recsys.benchmarks.tuning's docstring")
    unknown = sorted(set(raw) - _SPACE_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {path}", where=str(path), fix=f"use {sorted(_SPACE_KEYS)}")
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"overrides must be a list of override strings, got {overrides!r}", where=f"{path}:overrides",
                          fix='e.g. [model=ease, "trainer.eval_every=2"]')
    params = {str(k): Param.parse(k, v, where=f"{path}:params") for k, v in raw["params"].items()}
    return SearchSpace(name=path.stem, params=params, overrides=tuple(overrides),
                       description=str(raw.get("description", "")), source=str(path))


class PruningCallback:
    """A :class:`~recsys.training.Trainer` callback: reports ``monitor`` after each evaluation to the Optuna
    trial, and stops training when the pruner says the trial is hopeless (``pruned_at`` is then its epoch)."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor
        self.pruned_at: int | None = None

    def __call__(self, row: Mapping[str, float]) -> bool:
        value, step = row.get(self.monitor), int(row.get("epoch", 0))
        if value is None or not math.isfinite(value) or step < 1:  # step 0: a model without epochs, nothing to save
            return False
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            self.pruned_at = step
            return True
        return False


def make_pruner(name: str, max_epochs: int | None = None, startup_trials: int = 5) -> Any:
    """Optuna's median pruner (pruning once ``min(5, startup_trials)`` trials finished), Hyperband over the
    epochs, or none."""
    optuna = optuna_module()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=min(5, startup_trials), n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs or "auto")
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}", where="--pruner", fix=f"choose one of {', '.join(PRUNERS)}")


def storage_url(storage: str | Path) -> str:
    """An RDB URL: a URL as given, a file path as ``sqlite:///<absolute path>``.

    >>> storage_url("sqlite:///x.db"), storage_url("/tmp/s/study.db")
    ('sqlite:///x.db', 'sqlite:////tmp/s/study.db')
    """
    text = str(storage)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser().resolve()}"


@contextlib.contextmanager
def study_lock(path: Path) -> Iterator[None]:
    """Hold ``path`` (an exclusive ``flock``, released when the process dies) while one search runs a study."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError("another `recsys tune` is running this study", where=str(path),
                              fix="wait for it, or give this search another --study-name / --out") from None
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def open_study(storage: str, name: str, direction: str, fingerprint: dict[str, Any], *, seed: int = 0,
               pruner: Any = None, startup_trials: int = 10) -> tuple[optuna.Study, bool]:
    """Create study ``name`` in ``storage`` or load it to resume; returns it and whether it existed.

    A resumed study must have been created with the same space, overrides and objective (``fingerprint``);
    trials an earlier process left running (it was killed) are marked failed and ``interrupted``, and each
    trial interrupted so is queued again once. The TPE sampler is seeded with ``seed`` + the trials so far,
    so a resumed search does not replay the startup points it drew before.
    """
    optuna = optuna_module()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # recsys tune prints one line per trial itself
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    rdb = optuna.storages.RDBStorage(storage)
    existed = name in optuna.get_all_study_names(rdb)
    if existed:
        study = optuna.load_study(study_name=name, storage=rdb)
        stored = study.user_attrs.get("fingerprint")
        if stored != json.loads(json.dumps(fingerprint)):
            differing = sorted(k for k in {*(stored or {}), *fingerprint} if (stored or {}).get(k) != fingerprint.get(k))
            raise ConfigError(f"study {name!r} in {storage} was created with another search ({differing} differ)",
                              where="--study-name / --storage",
                              fix="resume with the same space and overrides, or start a new study (--study-name)")
        _fail_stale(study, rdb)
    sampler = optuna.samplers.TPESampler(seed=seed + (len(study.trials) if existed else 0),
                                         n_startup_trials=startup_trials)
    study = optuna.create_study(storage=rdb, study_name=name, direction=direction, sampler=sampler, pruner=pruner,
                                load_if_exists=True)
    if not existed:
        study.set_user_attr("fingerprint", json.loads(json.dumps(fingerprint)))
    return study, existed


def _fail_stale(study: optuna.Study, rdb: Any) -> None:
    """Mark trials left RUNNING by a dead process FAIL + interrupted; queue each interrupted trial once more."""
    from optuna.trial import TrialState

    study_id = rdb.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = rdb.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        rdb.set_trial_user_attr(trial_id, INTERRUPTED, True)
        rdb.set_trial_state_values(trial_id, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if trial.user_attrs.get(INTERRUPTED) and trial.number not in retried and trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def counted_trials(study: optuna.Study) -> int:
    """Trials that spent budget: finished, pruned, or failed (not those cut short by an interruption)."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(t.state in done and not t.user_attrs.get(INTERRUPTED) for t in study.get_trials(deepcopy=False))


@dataclass
class TrialRecord:
    """What one trial did, for its row in the results store."""

    study: str
    number: int
    space: str
    dataset: str
    seed: int
    overrides: list[str]
    params: dict[str, Any]
    status: str  # ok | pruned | failed
    wall_seconds: float
    train_seconds: float | None = None
    best_epoch: int | None = None
    valid: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    pruned_at: int | None = None


def trial_row(record: TrialRecord, *, code_version: str, libraries: dict[str, str], machine: dict[str, Any],
              threads: int | None) -> dict[str, Any]:
    """The results-store row of a trial (``kind`` trial; the grid's columns, validation metrics only)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    cell_id = hashlib.sha256(json.dumps(["tune", record.study, record.number]).encode()).hexdigest()[:16]
    row: dict[str, Any] = {
        "cell_id": cell_id, "grid": f"tune:{record.study}", "dataset": record.dataset, "model": record.space,
        "peer": False, "library": "recsys", "seed": record.seed, "settings": json.dumps(record.overrides),
        "status": record.status, "error": record.error, "code_version": code_version,
        "library_versions": json.dumps(libraries),
        "started_at": (now - datetime.timedelta(seconds=record.wall_seconds)).isoformat(timespec="seconds"),
        "run_dir": None, "wall_seconds": record.wall_seconds, "train_seconds": record.train_seconds,
        "peak_rss_mib": None, "throughput": None, "threads": threads, "machine": json.dumps(machine),
        "finished_at": now.isoformat(timespec="seconds"), "kind": "trial", "trial": record.number,
        "params": json.dumps(record.params, default=str), "best_epoch": record.best_epoch, "pruned_at": record.pruned_at,
    }
    row.update({f"valid/{k}": float(v) for k, v in record.valid.items()
                if k not in ("epoch", "loss", "seconds", "num_users") and isinstance(v, (int, float))})
    return row


def format_override(path: str, value: Any) -> str:
    """``path=value`` as Hydra reads it back (lists and mappings in Hydra's syntax, strings quoted when needed).

    >>> format_override("model.module.reg", 12.5), format_override("m.hidden_dims", [256, 128]), format_override("m.a", "ce")
    ('model.module.reg=12.5', 'm.hidden_dims=[256,128]', 'm.a=ce')
    """
    return f"{path}={_hydra_value(value)}"


def _hydra_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    return text if re.fullmatch(r"[A-Za-z0-9_./+-]+", text) else "'" + text.replace("'", "\\'") + "'"
