"""Data the project has never seen, through recsys-train: a libFM triple for LR / FM / DeepFM (the same AUC as
the Python API on the same rows), a generic interaction file named after itself, and one clear error per bad file."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import polars as pl
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from recsys.cli.main import main
from recsys.data import CategoricalFeature, CTRBatches, FeaturePipeline, Split, from_frame, random_split
from recsys.data.load import embedded_folder
from recsys.embeddings import CombinedOptimizer, RowWiseAdagrad
from recsys.evaluation import CTREvaluator
from recsys.models import FM, DeepFM, LogisticRegression
from recsys.pipeline import run_pipeline
from recsys.training import Trainer

ITEM_OFFSET = 100_000  # libFM feature ids of items: their index + this (users keep their index)


@pytest.fixture(autouse=True)
def clear_hydra():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def movielens_split() -> Split:
    """12,000 MovieLens rows as interactions, split 80/10/10 at random."""
    ratings = pl.read_parquet(embedded_folder() / "ratings.parquet").head(12_000)
    data = from_frame(ratings.rename({"userId": "user", "movieId": "item"}), name="ml-head")
    return random_split(data, (0.8, 0.1, 0.1), seed=0)


def write_libfm(split: Split, folder: Path) -> list[Path]:
    """The split's rows as libFM files, in the split's row order: ``click 0:user:1 1:item:1``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, part in zip(("train", "valid", "test"), split):
        path = folder / f"ml-head.{name}.libfm"
        rows = part.frame.select(pl.format("{} 0:{}:1 1:{}:1", (pl.col("rating") >= 4).cast(pl.Int8), pl.col("user"),
                                           pl.col("item") + ITEM_OFFSET))
        rows.write_csv(path, include_header=False, quote_style="never")
        paths.append(path)
    return paths


def train(*overrides: str) -> None:
    main(["train", *overrides])


def exit_code(*overrides: str) -> int:
    with pytest.raises(SystemExit) as info:
        train(*overrides)
    return info.value.code


MODELS = {  # each model as conf/model/<name>.yaml builds it, written out with the Python API
    "lr": (functools.partial(LogisticRegression, sparse=True, init_std=0.01), {"lr": 0.001}),
    "fm": (functools.partial(FM, embedding_dim=16, sparse=True, init_std=0.01), {"lr": 0.001}),
    "deepfm": (functools.partial(DeepFM, embedding_dim=32, hidden_dims=[256, 128], dropout=0.3, batch_norm=False,
                                 activation="relu", sparse=True, init_std=0.01), {"lr": 0.00075, "fused": True}),
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_libfm_triple_trains_from_the_cli_as_the_python_api(tmp_path: Path, movielens_split: Split, model: str, capsys) -> None:
    train_file, valid_file, test_file = write_libfm(movielens_split, tmp_path / "files")
    run_dir = tmp_path / "run"
    train("experiment=ctr_files", f"model={model}", "dataset=libfm", f"dataset.train={train_file}",
          f"dataset.valid={valid_file}", f"dataset.test={test_file}", "dataset.fields=[user,item]", "trainer.epochs=2",
          "trainer.threads=1", "trainer.progress=false", "trainer.tensorboard=false", f"hydra.run.dir={run_dir}")
    out = capsys.readouterr().out
    assert "on ml-head (9,600 training rows)" in out and "trainer.monitor=auc-logloss" in out
    cli = json.loads((run_dir / "metrics.json").read_text())
    assert (run_dir / "features.json").is_file() and json.loads((run_dir / "run.json").read_text())["ctr_table"]["fields"] == {
        "user": "categorical", "item": "categorical"}

    module, dense = MODELS[model]
    optimizer = functools.partial(CombinedOptimizer, dense=functools.partial(torch.optim.Adam, **dense),
                                  sparse=functools.partial(RowWiseAdagrad, lr=0.05, weight_decay=0.0))
    api = run_pipeline(
        movielens_split.train.concat(movielens_split.valid).concat(movielens_split.test), module,
        split=movielens_split,  # the same rows: MovieLens interactions, user and item features, click = rating >= 4
        features=FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("item")], label_threshold=4.0),
        batches=functools.partial(CTRBatches, batch_size=4096, shuffle=True, drop_last=False, seed=0),
        optimizer=optimizer, evaluator=CTREvaluator(),
        trainer=Trainer(epochs=2, monitor="auc-logloss", mode="max", threads=1, progress=False, tensorboard=False))
    assert cli["test"]["auc"] == api.test["auc"]  # exactly: the same encoded rows, batches, weights
    assert cli["valid"]["auc"] == api.valid["auc"]
    assert cli["test"]["logloss"] == api.test["logloss"]


def test_a_generic_files_run_directory_and_tables_carry_its_name(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "MyShop clicks.csv"
    pl.DataFrame({"customer": [1, 1, 1, 2, 2, 2, 3, 3, 3], "sku": ["a", "b", "c", "a", "c", "d", "b", "d", "a"],
                  "when": list(range(9))}).write_csv(path)
    monkeypatch.chdir(tmp_path)
    train("dataset=file", f"dataset.name={path}", "dataset.user_col=customer", "dataset.item_col=sku",
          "dataset.time_col=when", "model=pop", f"dataset.cache_dir={tmp_path / 'cache'}", "trainer.progress=false")
    (run_dir,) = (tmp_path / "outputs" / "MyShop_clicks" / "pop").iterdir()
    assert "Popularity on MyShop clicks (3 users, 4 items)" in capsys.readouterr().out
    assert json.loads((run_dir / "metrics.json").read_text())["dataset"] == "MyShop clicks"


def test_ctr_files_run_directory_is_named_after_the_files(tmp_path: Path, movielens_split: Split, monkeypatch) -> None:
    train_file, valid_file, test_file = write_libfm(movielens_split, tmp_path / "files")
    monkeypatch.chdir(tmp_path)
    train("experiment=ctr_files", "model=lr", "dataset=libfm", f"dataset.train={train_file}", f"dataset.valid={valid_file}",
          f"dataset.test={test_file}", "trainer.epochs=1", "trainer.progress=false", "trainer.tensorboard=false")
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["ml-head"]


@pytest.mark.parametrize(
    ("train_text", "extra", "message"),
    [
        ("1 0:1:1\n0 0:2:1 1:x:1\n", [], "line 2: '1:x:1'"),  # wrong field syntax
        ("1 0:1:1 1:5:1\n0 0:2:1 1:9:1\n", ["dataset.num_features=8"], "feature id(s) out of range [0, 8)"),
        ("1 0:1:1\n", ["dataset.test=EMPTY"], "no data lines"),  # an empty test split
    ],
)
def test_bad_ctr_files_exit_2_with_one_message(tmp_path: Path, capsys, train_text: str, extra: list[str], message: str) -> None:
    (tmp_path / "train.libfm").write_text(train_text)
    (tmp_path / "test.libfm").write_text("1 0:1:1\n")
    (tmp_path / "empty.libfm").write_text("# no rows\n")
    extra = [e.replace("EMPTY", str(tmp_path / "empty.libfm")) for e in extra]
    run_dir = tmp_path / "run"
    code = exit_code("experiment=ctr_files", "model=lr", "dataset=libfm", f"dataset.train={tmp_path / 'train.libfm'}",
                     f"dataset.test={tmp_path / 'test.libfm'}", *extra, "trainer.progress=false", f"hydra.run.dir={run_dir}")
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("error:") == 1 and "Traceback" not in err
    assert not run_dir.exists()


def test_features_fields_on_movielens_says_what_to_use(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    assert exit_code("experiment=lr_ctr", "features=fields", f"dataset.cache_dir={tmp_path}", f"hydra.run.dir={run_dir}") == 2
    assert "features=movielens" in capsys.readouterr().err and not run_dir.exists()
