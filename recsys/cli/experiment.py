"""A composed Hydra config -> the typed pipeline (:func:`recsys.pipeline.run_pipeline`); nothing else.

The config is turned into the pipeline's arguments (objects and factories) and checked before any data
is loaded: unknown keys, a monitor the evaluator does not report, an impossible device, a ``resume_from``
whose run was configured otherwise (``+resume_allow=[key, ...]`` accepts listed changes) or has nothing left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from recsys.cli.validate import check_keys, validate_config
from recsys.data import Interactions
from recsys.errors import ConfigError, RecsysError
from recsys.pipeline import DATA_ARGUMENTS, RunResult, check_compatible, check_monitor, open_arguments, run_pipeline
from recsys.runtime import atomic_write_text, resolve_device
from recsys.training import is_main_process, load_checkpoint, seed_everything
from recsys.training.checkpoint import TRAINER_KEYS
from recsys.training.engine import warm_up_in_background

log = logging.getLogger(__name__)

MODEL_KEYS = ("module", "batches", "optimizer", "engine")
#: Keys a resumed run may change freely: where it runs and what it reports, not what it learns.
#: ``trainer.epochs`` may grow (a run that has done them all has nothing to resume).
RESUME_FREE = ("resume_from", "compare_to_popularity", "dataset.cache_dir", "dataset.root", "trainer.device",
               "trainer.progress", "trainer.tensorboard", "trainer.threads", "trainer.epochs")
_ABSENT = "<absent>"


def build(node: DictConfig, where: str, **kwargs: Any) -> Any:
    """``instantiate`` with errors a user can act on: the config key and the constructor's complaint."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, RecsysError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, RecsysError):
            raise cause from None
        raise ConfigError(
            f"could not build '{where}': {error}",
            where=f"config group '{where}' ({node.get('_target_', '?')})",
            fix=f"check the keys of '{where}' against the constructor's arguments (`--cfg job` prints the config)",
        ) from None
    except Exception as error:  # omegaconf: missing mandatory values, bad interpolations
        raise ConfigError(f"could not build '{where}': {error}", where=f"config group '{where}'",
                          fix="set the missing value (`--cfg job` prints the config)") from None


def fill_data_sizes(node: DictConfig, sizes: dict[str, int]) -> DictConfig:
    """Fill ``???`` keys such as ``num_users``/``num_items`` from the dataset."""
    node = node.copy()
    for key, value in sizes.items():
        if key in node.keys() and OmegaConf.is_missing(node, key):
            node[key] = value
    return node


def factory(node: DictConfig, where: str, sizes: dict[str, int] | None = None) -> Any:
    """A ``functools.partial`` of ``node``'s target; ``???`` keys the pipeline fills from the data are left open."""
    check_keys(node, where)
    node = fill_data_sizes(node, sizes or {})
    open_keys = [k for k in node.keys() if OmegaConf.is_missing(node, k) and (k in DATA_ARGUMENTS or k == "data")]
    if open_keys:
        node = OmegaConf.create({k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in open_keys})
    return build(node, where, _partial_=True, _convert_="all")  # plain lists and dicts: the run spec is JSON


def config_differences(old: Any, new: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for the leaves where two plain configs differ; ``???`` in ``new`` (a size
    the data fills in) matches anything.

    >>> config_differences({"a": {"lr": 0.003, "n": 5}, "b": 1}, {"a": {"lr": 0.1, "n": "???"}, "b": 1})
    {'a.lr': (0.003, 0.1)}
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, tuple[Any, Any]] = {}
        for key in sorted({*old, *new}, key=str):
            out.update(config_differences(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{prefix}{key}."))
        return out
    return {} if new == "???" or old == new else {prefix.rstrip("."): (old, new)}


def _allowed(key: str, allow: Iterable[str]) -> bool:
    return any(a == "*" or key == a or key.startswith(a + ".") for a in allow)


def resume_allow(cfg: DictConfig) -> list[str]:
    """Pop ``resume_allow`` (the keys a resumed run may change, ``'*'`` for any) from ``cfg``."""
    if "resume_allow" not in cfg:
        return []
    with open_dict(cfg):
        allow = cfg.pop("resume_allow")
    allow = list(allow) if isinstance(allow, (list, ListConfig)) else [allow]
    if not all(isinstance(key, str) for key in allow):
        raise ConfigError(f"resume_allow={allow!r} is not a list of config keys", where="resume_allow",
                          fix="e.g. +resume_allow=[model.optimizer.lr,trainer.patience]")
    return allow


def check_resume(cfg: DictConfig, allow: Iterable[str] = ()) -> None:
    """Before any data is loaded: ``cfg.resume_from`` is a trainer checkpoint with epochs left, and its run's
    ``config.yaml`` (beside it) equals ``cfg`` except for :data:`RESUME_FREE` and ``allow``."""
    path = Path(cfg.resume_from)
    state = load_checkpoint(path, required=TRAINER_KEYS, mmap=True)
    done, epochs, patience = state["epoch"], cfg.trainer.epochs, cfg.trainer.get("patience")
    if epochs is not None and done >= epochs:
        raise ConfigError(f"nothing to resume; raise trainer.epochs: the run completed {done} of "
                          f"trainer.epochs={epochs}", where=str(path), fix=f"resume with trainer.epochs > {done}")
    if patience is not None and state.get("evals_since_best", 0) >= patience:
        raise ConfigError(f"nothing to resume; the run stopped early after epoch {done} (trainer.patience="
                          f"{patience})", where=str(path),
                          fix="raise trainer.patience and allow it: +resume_allow=[trainer.patience]")
    saved = path.parent / "config.yaml"
    if not saved.is_file():
        if _allowed("", allow):
            return
        raise ConfigError(f"cannot check that this run matches the one it resumes: no config.yaml beside {path}",
                          where="resume_from", fix="resume from last.pt in its run directory, or accept any "
                          "config with +resume_allow=['*']")
    old = OmegaConf.to_container(OmegaConf.load(saved), resolve=False)
    new = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "hydra"}
    differing = {k: v for k, v in config_differences(old, new).items() if not _allowed(k, (*RESUME_FREE, *allow))}
    if differing:
        changes = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in differing.items())
        raise ConfigError(
            f"the config differs from the run it resumes in {sorted(differing)} ({changes})", where=str(saved),
            fix="resume with the same settings, or accept the change (the new value is used and recorded): "
            f"+resume_allow=[{','.join(sorted(differing))}]")


def _missing(node: DictConfig) -> list[str]:
    """The ``???`` keys of a config node."""
    return [str(k) for k in node.keys() if OmegaConf.is_missing(node, k)]


def _fill_from_data(node: DictConfig, data: Any) -> DictConfig:
    """Fill a features config's ``???`` keys from the dataset's attributes of the same name (``fields``)."""
    node = node.copy()
    for key in _missing(node):
        value = getattr(data, key, None)
        if value is None:
            raise ConfigError(f"features.{key} comes from the dataset, but {data!r} has no {key}", where="features",
                              fix="features=fields declares the fields of CTR files (dataset=libfm, dataset=libsvm); for "
                                  "MovieLens use features=movielens (the CTR models' default)")
        node[key] = value
    return node


def run_experiment(cfg: DictConfig, run_dir: Path | None, *, data: Interactions | None = None,
                   callbacks: Sequence[Callable[[dict[str, float]], bool | None]] = (),
                   evaluate_test: bool = True) -> RunResult:
    """Validate ``cfg``, then train and evaluate through the pipeline; the run is saved in ``run_dir`` (None: not saved).

    ``data``: the dataset ``cfg.dataset`` describes, when the caller loaded it already (a search reuses it across
    trials); ``callbacks`` and ``evaluate_test`` go to :func:`~recsys.pipeline.run_pipeline` (False: ``split.test``
    is never read).
    """
    allow = resume_allow(cfg)
    model_cfg = cfg.model
    unknown = [key for key in model_cfg.keys() if key not in MODEL_KEYS]
    missing = [key for key in ("module", "batches", "optimizer") if key not in model_cfg]
    if missing or unknown:
        raise ConfigError(f"model config has {'no ' + str(missing) if missing else 'unknown keys ' + str(unknown)}",
                          where="model", fix=f"model configs define {', '.join(MODEL_KEYS)} (engine optional)")
    optimizer = build(model_cfg.optimizer, "model.optimizer") if model_cfg.optimizer else None
    validate_config(cfg, optimizer)
    trainer = build(cfg.trainer, "trainer")
    device = resolve_device(trainer.device, where="trainer.device")
    engine = build(model_cfg.engine, "model.engine") if model_cfg.get("engine") else None
    warm_up_in_background(engine, device)  # compiled engine code loads while the data does
    evaluator = factory(cfg.eval, "eval")
    features_cfg = cfg.get("features") or None
    from_data = features_cfg is not None and bool(_missing(features_cfg))  # e.g. features=fields: the dataset's fields
    features = build(features_cfg, "features") if features_cfg is not None and not from_data else None
    if features is None or "features" not in open_arguments(evaluator):  # else built once the features are fitted
        evaluator = evaluator()
        check_monitor(trainer, evaluator)
        model_class = factory(model_cfg.module, "model.module").func
        if isinstance(model_class, type):
            check_compatible(model_class, evaluator)
    if cfg.resume_from is not None:
        check_resume(cfg, allow)
    seed_everything(cfg.seed)
    data = build(cfg.dataset, "dataset") if data is None else data
    if from_data:
        features_cfg = _fill_from_data(features_cfg, data)
        features = build(features_cfg, "features")
    split = build(cfg.split, "split", data=data)
    sizes = {"num_users": data.num_users, "num_items": data.num_items}
    if run_dir is not None and is_main_process():
        resolved = OmegaConf.to_container(cfg, resolve=True)
        module = resolved["model"]["module"]
        module.update({k: v for k, v in sizes.items() if k in module})
        if from_data:
            resolved["features"] = OmegaConf.to_container(features_cfg, resolve=True)
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
    return run_pipeline(
        data,
        factory(model_cfg.module, "model.module", sizes),
        split=split,
        batches=factory(model_cfg.batches, "model.batches") if model_cfg.batches else None,
        optimizer=optimizer,
        engine=engine,
        features=features,
        trainer=trainer,
        evaluator=evaluator,
        seed=cfg.seed,
        run_dir=run_dir,
        resume_from=cfg.resume_from,
        compare_to_popularity=cfg.compare_to_popularity,
        item_text_init=cfg.get("item_text_init"),
        fit_on=cfg.get("fit_on", "train"),
        callbacks=callbacks,
        evaluate_test=evaluate_test,
    )
