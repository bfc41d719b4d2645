"""One training run from a composed config: data -> split -> model -> trainer -> evaluation -> run dir."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recsys.benchmarks.table import format_table
from recsys.errors import ConfigError, RecsysError
from recsys.evaluation import RankingEvaluator
from recsys.models import Popularity, Recommender
from recsys.training import is_main_process, seed_everything

log = logging.getLogger(__name__)


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


def fill_data_sizes(node: DictConfig, sizes: dict[str, int]) -> DictConfig:
    """Fill ``???`` keys such as ``num_users``/``num_items`` from the dataset."""
    node = node.copy()
    for key, value in sizes.items():
        if key in node.keys() and OmegaConf.is_missing(node, key):
            node[key] = value
    return node


def write_atomic(path: Path, text: str) -> None:
    """Write a text file through a temp file and a rename, so no half-written file is ever seen."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def init_item_table_from_text(model: Recommender, data: Any, checkpoint: str) -> None:
    """Initialize ``model.item_embedding`` from item text embeddings, PCA-projected to its width."""
    from recsys.text.checkpoint import load_pretrained
    from recsys.text.item_init import load_item_embeddings, text_item_init
    from recsys.text.item_text import item_text_embeddings, item_texts

    if not hasattr(model, "item_embedding"):
        raise ConfigError(
            f"{type(model).__name__} has no item_embedding table to initialize",
            where="item_text_init",
            fix="use it with bpr, sasrec, sasrec_ce or bert4rec, or set item_text_init=null",
        )
    encoder, tokenizer = load_pretrained(None if checkpoint == "minilm" else checkpoint)
    texts = item_texts(data.item_features, data.num_items)
    vectors = item_text_embeddings(texts, range(data.num_items), encoder, tokenizer).weight
    load_item_embeddings(model, text_item_init(vectors, model.item_embedding.weight.shape[1]))


def run_experiment(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train and evaluate the configured model; write config, metrics and checkpoint into ``run_dir``."""
    seed_everything(cfg.seed)
    started = time.perf_counter()
    data = build(cfg.dataset, "dataset")
    split = build(cfg.split, "split", data=data)
    log.info("%s | train %d, valid %d, test %d interactions", data, split.train.num_interactions,
             split.valid.num_interactions, split.test.num_interactions)
    sizes = {"num_users": data.num_users, "num_items": data.num_items}
    model_cfg = cfg.model
    for key in ("module", "batches", "optimizer"):
        if key not in model_cfg:
            raise ConfigError(f"model config has no '{key}' key", where="model", fix="model configs define module, batches and optimizer")
    model: Recommender = build(fill_data_sizes(model_cfg.module, sizes), "model.module")
    if cfg.get("item_text_init"):
        init_item_table_from_text(model, data, str(cfg.item_text_init))
    prepare_started = time.perf_counter()
    model.prepare(split.train)
    prepare_seconds = time.perf_counter() - prepare_started
    batches = build(model_cfg.batches, "model.batches", data=split.train) if model_cfg.batches else None
    optimizer = build(model_cfg.optimizer, "model.optimizer") if model_cfg.optimizer else None
    trainer = build(cfg.trainer, "trainer")
    evaluator = build(cfg.eval, "eval")

    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["model"]["module"].update({k: v for k, v in sizes.items() if k in resolved["model"]["module"]})
    if is_main_process():
        write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))

    result = trainer.fit(
        model, batches, optimizer,
        validate=lambda m: evaluator.evaluate_model(m, split.train, split.valid),
        run_dir=run_dir,
        resume_from=cfg.resume_from,
    )
    history = split.train.concat(split.valid)
    test = evaluator.evaluate_model(model, history, split.test)
    summary: dict[str, Any] = {
        "dataset": data.name,
        "model": type(model).__name__,
        "num_users": data.num_users,
        "num_items": data.num_items,
        "best_epoch": result.best_epoch,
        "train_seconds": round(prepare_seconds + result.train_seconds, 3),
        "total_seconds": None,
        "valid": result.best_metrics,
        "test": test,
    }
    if cfg.compare_to_popularity and isinstance(evaluator, RankingEvaluator) and not isinstance(model, Popularity):
        popularity = Popularity(data.num_items)
        popularity.prepare(history)
        summary["popularity_test"] = evaluator.evaluate_model(popularity, history, split.test)
    summary["total_seconds"] = round(time.perf_counter() - started, 3)
    if is_main_process():
        write_atomic(run_dir / "metrics.json", json.dumps(summary, indent=2))
    return summary


def results_table(summary: dict[str, Any]) -> str:
    """One row per metric: validation (best epoch), test, and the popularity baseline's test."""
    model = summary["model"]
    columns = {f"{model} valid": summary["valid"], f"{model} test": summary["test"]}
    if "popularity_test" in summary:
        columns["Popularity test"] = summary["popularity_test"]
    names = [k for k in summary["test"] if k != "num_users"]
    rows = [{"metric": name, **{col: values.get(name) for col, values in columns.items()}} for name in names]
    return format_table(rows)
