"""A composed Hydra config -> the typed pipeline (:func:`recsys.pipeline.run_pipeline`); nothing else.

The config is turned into the pipeline's arguments (objects and factories) and checked before any data
is loaded: unknown keys, a monitor the evaluator does not report, an impossible device.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recsys.cli.validate import check_keys, validate_config
from recsys.errors import ConfigError, RecsysError
from recsys.pipeline import DATA_ARGUMENTS, RunResult, check_compatible, check_monitor, open_arguments, run_pipeline
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
    optimizer = build(model_cfg.optimizer, "model.optimizer") if model_cfg.optimizer else None
    validate_config(cfg, optimizer)
    trainer = build(cfg.trainer, "trainer")
    resolve_device(trainer.device, where="trainer.device")
    evaluator = factory(cfg.eval, "eval")
    features = build(cfg.features, "features") if cfg.get("features") else None
    if features is None or "features" not in open_arguments(evaluator):  # else built once the features are fitted
        evaluator = evaluator()
        check_monitor(trainer, evaluator)
        model_class = factory(model_cfg.module, "model.module").func
        if isinstance(model_class, type):
            check_compatible(model_class, evaluator)
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
        optimizer=optimizer,
        engine=build(model_cfg.engine, "model.engine") if model_cfg.get("engine") else None,
        features=features,
        trainer=trainer,
        evaluator=evaluator,
        seed=cfg.seed,
        run_dir=run_dir,
        resume_from=cfg.resume_from,
        compare_to_popularity=cfg.compare_to_popularity,
        item_text_init=cfg.get("item_text_init"),
        fit_on=cfg.get("fit_on", "train"),
    )
