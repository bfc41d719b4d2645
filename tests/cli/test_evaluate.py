"""``recsys evaluate``: a saved run scored again gives the numbers of the end of training, exactly."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import polars as pl
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from recsys.cli.main import main
from recsys.data import PairwiseBatches, from_frame, random_split
from recsys.data.load import embedded_folder
from recsys.errors import CheckpointError
from recsys.evaluation import RankingEvaluator
from recsys.models import BPRMF
from recsys.pipeline import run_pipeline
from recsys.runs import evaluate_run
from recsys.training import Trainer


@pytest.fixture(autouse=True)
def clear_hydra():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def evaluate(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        main(["evaluate", *args])
    return info.value.code


def ratings(n: int = 8_000) -> pl.DataFrame:
    return pl.read_parquet(embedded_folder() / "ratings.parquet").head(n).rename({"userId": "user", "movieId": "item"})


@pytest.fixture(scope="module")
def bpr_run(tmp_path_factory) -> Path:
    """A BPR-MF run of recsys-train on a small interaction file (leave-one-out, 3 epochs, full ranking)."""
    folder = tmp_path_factory.mktemp("bpr")
    ratings().write_parquet(folder / "head.parquet")
    run_dir = folder / "run"
    GlobalHydra.instance().clear()
    main(["train", "dataset=file", f"dataset.name={folder / 'head.parquet'}", f"dataset.cache_dir={folder / 'cache'}",
          "trainer.epochs=3", "trainer.progress=false", "trainer.tensorboard=false", "compare_to_popularity=false",
          f"hydra.run.dir={run_dir}"])
    GlobalHydra.instance().clear()
    return run_dir


def test_evaluate_reproduces_the_test_metrics_exactly(bpr_run: Path, capsys, tmp_path: Path) -> None:
    saved = json.loads((bpr_run / "metrics.json").read_text())
    assert evaluate(str(bpr_run), "--out", str(tmp_path / "m.json")) == 0
    out = capsys.readouterr().out
    assert "BPRMF on head: test" in out and "ndcg@10" in out
    again = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert again == saved["test"]  # every metric, bit for bit


def test_evaluate_valid_gives_the_best_epochs_validation_metrics(bpr_run: Path, tmp_path: Path) -> None:
    saved = json.loads((bpr_run / "metrics.json").read_text())["valid"]
    assert evaluate(str(bpr_run), "--split", "valid", "--out", str(tmp_path / "m.json")) == 0
    again = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert again == {k: v for k, v in saved.items() if k not in ("epoch", "loss", "seconds")}


def test_evaluate_scores_new_data_in_original_ids(bpr_run: Path, capsys, tmp_path: Path) -> None:
    new = pl.DataFrame({"uid": [1, 1, 2, 999_999], "movie": [50, 110, 318, 1], "rating": [5.0, 4.0, 5.0, 3.0]})
    new.write_csv(tmp_path / "new.csv")
    assert evaluate(str(bpr_run), "--data", str(tmp_path / "new.csv"), "--user-col", "uid", "--item-col", "movie") == 0
    out = capsys.readouterr().out
    assert "new.csv, 3 rows, 1 left out (user or item unknown to the run)" in out and "hr@10" in out


def test_evaluate_run_in_python_matches_run_pipeline(tmp_path: Path) -> None:
    data = from_frame(ratings(5_000), name="head")
    result = run_pipeline(data, functools.partial(BPRMF, embedding_dim=8), split=functools.partial(random_split, seed=1),
                          batches=functools.partial(PairwiseBatches, batch_size=1024, seed=0),
                          optimizer=functools.partial(torch.optim.Adam, lr=0.01), evaluator=RankingEvaluator(ks=(5, 10)),
                          trainer=Trainer(epochs=2, monitor="ndcg@10", progress=False, tensorboard=False), run_dir=tmp_path)
    assert evaluate_run(tmp_path).metrics == result.test
    valid = evaluate_run(tmp_path, "valid").metrics
    assert valid == {k: v for k, v in result.valid.items() if k in valid}


def test_evaluate_a_run_on_ctr_files(tmp_path: Path, capsys) -> None:
    rows = "".join(f"{int(i % 3 == 0)} 0:{i % 17}:1 1:{100 + i % 11}:1\n" for i in range(600))
    for name in ("train", "valid", "test"):
        (tmp_path / f"toy.{name}.libfm").write_text(rows)
    run_dir = tmp_path / "run"
    main(["train", "experiment=ctr_files", "model=fm", "dataset=libfm", f"dataset.train={tmp_path / 'toy.train.libfm'}",
          f"dataset.valid={tmp_path / 'toy.valid.libfm'}", f"dataset.test={tmp_path / 'toy.test.libfm'}", "trainer.epochs=2",
          "trainer.progress=false", "trainer.tensorboard=false", f"hydra.run.dir={run_dir}"])
    GlobalHydra.instance().clear()
    saved = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert evaluate(str(run_dir), "--out", str(tmp_path / "a.json")) == 0
    assert evaluate(str(run_dir), "--data", str(tmp_path / "toy.test.libfm"), "--out", str(tmp_path / "b.json")) == 0
    assert json.loads((tmp_path / "a.json").read_text())["metrics"] == saved
    assert json.loads((tmp_path / "b.json").read_text())["metrics"] == saved  # the same file, read as the run read its own
    (tmp_path / "other.libfm").write_text("1 0:3:1 1:100:1 2:5:1\n")
    assert evaluate(str(run_dir), "--data", str(tmp_path / "other.libfm")) == 2
    assert "field id(s) out of range [0, 2)" in capsys.readouterr().err  # a file of another dataset
    with pytest.raises(SystemExit) as info:
        main(["recommend", str(run_dir), "--users", "1"])
    assert info.value.code == 2 and f"recsys evaluate {run_dir} --data FILE" in capsys.readouterr().err


def test_evaluate_bad_input_exits_2(tmp_path: Path, capsys) -> None:
    assert evaluate(str(tmp_path / "nowhere")) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_a_run_json_without_its_evaluator_uses_the_config(bpr_run: Path, tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(bpr_run, old)
    info = json.loads((old / "run.json").read_text())
    del info["evaluator"]  # as runs written before run.json recorded it
    (old / "run.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="does not record its evaluator"):
        evaluate_run(old)
    assert evaluate(str(old), "--out", str(tmp_path / "m.json")) == 0  # conf's eval from config.yaml
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] == json.loads((bpr_run / "metrics.json").read_text())["test"]


def test_an_evaluator_outside_recsys_is_never_imported(bpr_run: Path, tmp_path: Path) -> None:
    import shutil

    forged = tmp_path / "forged"
    shutil.copytree(bpr_run, forged)
    info = json.loads((forged / "run.json").read_text())
    info["evaluator"] = {"target": "os.system", "kwargs": {"command": "echo hi"}}
    (forged / "run.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        evaluate_run(forged)
