"""A composed Hydra config -> the typed pipeline (:func:`recsys.pipeline.run_pipeline`); nothing else.

The config is turned into the pipeline's arguments (objects and factories) and checked before any data
is loaded: unknown keys, a monitor the evaluator does not report, an impossible device.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object as _locate
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recsys.errors import ConfigError, RecsysError
from recsys.pipeline import DATA_ARGUMENTS, RunResult, check_monitor, open_arguments, run_pipeline
from recsys.runtime import atomic_write_text, resolve_device
from recsys.training import is_main_process, seed_everything

log = logging.getLogger(__name__)

MODEL_KEYS = ("module", "batches", "optimizer", "engine")


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


def check_keys(node: DictConfig, where: str) -> None:
    """Every key of ``node`` is an argument of its ``_target_`` (else one error with a "did you mean")."""
    target = node.get("_target_")
    if not isinstance(target, str):
        return
    try:
        params = inspect.signature(_locate(target)).parameters
    except Exception:  # not importable or no signature: instantiate reports it
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in node.keys():
        if str(key).startswith("_") or key in params:
            continue
        close = difflib.get_close_matches(str(key), list(params), n=1)
        hint = f"did you mean {where}.{close[0]}? " if close else ""
        raise ConfigError(f"unknown key {where}.{key} for {target}", where=where,
                          fix=f"{hint}valid keys: {', '.join(p for p in params if p != 'self')}")


def factory(node: DictConfig, where: str, sizes: dict[str, int] | None = None) -> Any:
    """A ``functools.partial`` of ``node``'s target; ``???`` keys the pipeline fills from the data are left open."""
    check_keys(node, where)
    node = fill_data_sizes(node, sizes or {})
    open_keys = [k for k in node.keys() if OmegaConf.is_missing(node, k) and (k in DATA_ARGUMENTS or k == "data")]
    if open_keys:
        node = OmegaConf.create({k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in open_keys})
    return build(node, where, _partial_=True, _convert_="all")  # plain lists and dicts: the run spec is JSON


def run_experiment(cfg: DictConfig, run_dir: Path) -> RunResult:
    """Validate ``cfg``, then train and evaluate through the pipeline; the run is saved in ``run_dir``."""
    model_cfg = cfg.model
    unknown = [key for key in model_cfg.keys() if key not in MODEL_KEYS]
    missing = [key for key in ("module", "batches", "optimizer") if key not in model_cfg]
    if missing or unknown:
        raise ConfigError(f"model config has {'no ' + str(missing) if missing else 'unknown keys ' + str(unknown)}",
                          where="model", fix=f"model configs define {', '.join(MODEL_KEYS)} (engine optional)")
    trainer = build(cfg.trainer, "trainer")
    resolve_device(trainer.device, where="trainer.device")
    evaluator = factory(cfg.eval, "eval")
    features = build(cfg.features, "features") if cfg.get("features") else None
    if features is None or "features" not in open_arguments(evaluator):  # else built once the features are fitted
        evaluator = evaluator()
        check_monitor(trainer, evaluator)
    seed_everything(cfg.seed)
    data = build(cfg.dataset, "dataset")
    split = build(cfg.split, "split", data=data)
    sizes = {"num_users": data.num_users, "num_items": data.num_items}
    if is_main_process():
        resolved = OmegaConf.to_container(cfg, resolve=True)
        module = resolved["model"]["module"]
        module.update({k: v for k, v in sizes.items() if k in module})
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
    return run_pipeline(
        data,
        factory(model_cfg.module, "model.module", sizes),
        split=split,
        batches=factory(model_cfg.batches, "model.batches") if model_cfg.batches else None,
        optimizer=build(model_cfg.optimizer, "model.optimizer") if model_cfg.optimizer else None,
        engine=build(model_cfg.engine, "model.engine") if model_cfg.get("engine") else None,
        features=features,
        trainer=trainer,
        evaluator=evaluator,
        seed=cfg.seed,
        run_dir=run_dir,
        resume_from=cfg.resume_from,
        compare_to_popularity=cfg.compare_to_popularity,
        item_text_init=cfg.get("item_text_init"),
    )
