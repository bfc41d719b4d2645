"""Every config in conf/ composes, and its objects instantiate (data-derived sizes filled in)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recsys.cli.config_dir import config_dir
from recsys.cli.experiment import factory
from recsys.cli.validate import check_keys
from recsys.data import from_frame
from recsys.models import Recommender

CONF = config_dir()


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def compose_with(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(config_name="train", overrides=list(overrides))


def test_config_dir_is_the_checkout_conf() -> None:
    assert (CONF / "train.yaml").is_file()
    assert {"dataset", "model", "trainer", "eval", "split"} <= {p.name for p in CONF.iterdir() if p.is_dir()}


@pytest.mark.parametrize("model", options("model"))
def test_every_model_config_instantiates(model: str) -> None:
    cfg = compose_with(f"model={model}")
    extra = {}
    if "features" in cfg.model.module:  # CTR models take the one fitted pipeline of the features group
        data = from_frame(pl.DataFrame({"user": [1, 2, 3], "item": [5, 6, 5], "rating": [4.0, 2.0, 5.0]}))
        extra["features"] = instantiate(cfg.features).fit(data)
    module = factory(cfg.model.module, "model.module", {"num_users": 7, "num_items": 11})(**extra)
    assert isinstance(module, Recommender)
    assert {"module", "batches", "optimizer"} <= set(cfg.model) <= {"module", "batches", "optimizer", "engine"}
    if cfg.model.get("engine") is not None:
        engine = instantiate(cfg.model.engine)
        assert callable(getattr(engine, "fit", None))
    if cfg.model.optimizer is not None:
        optimizer = instantiate(cfg.model.optimizer)(module.parameters())
        assert optimizer.param_groups


@pytest.mark.parametrize("group", ["trainer", "eval"])
def test_trainer_and_eval_configs_instantiate(group: str) -> None:
    for option in options(group):
        cfg = compose_with(f"{group}={option}")
        obj = instantiate(cfg[group])
        assert type(obj).__name__ == cfg[group]._target_.rsplit(".", 1)[1]


@pytest.mark.parametrize("dataset", options("dataset"))
def test_dataset_configs_target_a_loader(dataset: str) -> None:
    cfg = compose_with(f"dataset={dataset}")
    check_keys(cfg.dataset, "dataset")  # every key is an argument of the loader, of its type
    if cfg.dataset._target_ == "recsys.data.load_ctr_files":  # libsvm / libFM files: the paths are the user's
        assert cfg.dataset.format == dataset and OmegaConf.is_missing(cfg.dataset, "train")
    elif dataset == "file":  # any interaction file: its path is the user's
        assert cfg.dataset._target_ == "recsys.data.load_dataset" and OmegaConf.is_missing(cfg.dataset, "name")
    else:
        assert cfg.dataset._target_ == "recsys.data.load_dataset" and cfg.dataset.name == dataset


def test_ctr_files_experiment_builds_features_from_the_fields() -> None:
    cfg = compose_with("experiment=ctr_files", "model=fm")
    assert cfg.split._target_ == "recsys.data.file_split" and cfg.trainer.epochs is None
    assert OmegaConf.is_missing(cfg.features, "fields")  # filled from the dataset by the entry point
    node = cfg.features.copy()
    node.fields = {"user": "categorical", "tags": "multi", "age": "numeric"}
    features = instantiate(node, _convert_="all")
    assert [type(f).__name__ for f in features.features] == ["CategoricalFeature", "MultiCategoricalFeature", "NumericFeature"]


@pytest.mark.parametrize("split", options("split"))
def test_split_configs_resolve_to_callables(split: str) -> None:
    cfg = compose_with(f"split={split}")
    target = instantiate({"_target_": cfg.split._target_, "_partial_": True})
    assert callable(target)


def test_packaged_configs_match_checkout(tmp_path: Path) -> None:
    """The wheel ships conf/ as recsys/conf and the embedded dataset as recsys/datasets."""
    import subprocess
    import sys
    import zipfile

    root = CONF.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(root)],
        check=True,
    )
    (wheel,) = tmp_path.glob("recsys-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in CONF.rglob("*.yaml"):
        assert f"recsys/conf/{path.relative_to(CONF).as_posix()}" in names
    assert "recsys/datasets/ml-latest-small/README.txt" in names
    assert "recsys/py.typed" in names
