"""recsys-train end to end on the embedded dataset, and every bad-input case: exit 2, clear message, no run dir."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hydra.core.global_hydra import GlobalHydra

from recsys.cli.main import main


@pytest.fixture(autouse=True)
def clear_hydra():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def train(*overrides: str) -> None:
    main(["train", *overrides])


def exit_code(*overrides: str) -> int:
    with pytest.raises(SystemExit) as info:
        train(*overrides)
    return info.value.code


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_bpr_run_writes_run_directory(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    train("trainer.epochs=2", "trainer.progress=false", f"hydra.run.dir={run_dir}", f"dataset.cache_dir={tmp_path / 'cache'}")
    out = capsys.readouterr().out
    assert "| metric" in out and "ndcg@10" in out and "Popularity test" in out
    for name in ("config.yaml", "metrics.csv", "checkpoint.pt", "metrics.json"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["model"] == "BPRMF" and summary["num_users"] == 610
    assert 0.0 <= summary["test"]["ndcg@10"] <= summary["test"]["hr@10"] <= 1.0
    assert pl.read_csv(run_dir / "metrics.csv").height == 2
    assert "num_items: 9724" in (run_dir / "config.yaml").read_text()


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_multirun_runs_each_model(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    train("-m", "model=pop,bpr", "trainer.epochs=1", "trainer.progress=false", f"hydra.sweep.dir={sweep}",
          f"dataset.cache_dir={tmp_path / 'cache'}")
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert [s["model"] for s in summaries] == ["Popularity", "BPRMF"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=nope"], "nope"),
        (["trainer.no_such_key=1"], "no_such_key"),
        (["dataset=nope"], "nope"),
    ],
)
def test_config_errors_exit_2(tmp_path: Path, capsys, overrides: list[str], message: str) -> None:
    run_dir = tmp_path / "run"
    assert exit_code(*overrides, f"hydra.run.dir={run_dir}") == 2
    assert message in capsys.readouterr().err
    assert not run_dir.exists()


def test_unknown_constructor_argument_exits_2(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    assert exit_code("+model.module.no_such_arg=3", f"hydra.run.dir={run_dir}", f"dataset.cache_dir={tmp_path}") == 2
    err = capsys.readouterr().err
    assert "no_such_arg" in err and "model.module" in err and "Traceback" not in err
    assert not run_dir.exists()


def write_ratings(path: Path, ratings: list) -> Path:
    pl.DataFrame({"user": [1, 1, 2, 2, 3, 3], "item": [1, 2, 1, 3, 2, 3], "rating": ratings,
                  "timestamp": [1, 2, 3, 4, 5, 6]}).write_csv(path)
    return path


@pytest.mark.parametrize(
    ("make_overrides", "message"),
    [
        (lambda tmp: ["dataset=ml-100k", f"dataset.root={tmp / 'missing'}"], "missing"),
        (lambda tmp: [f"dataset.name={write_ratings(tmp / 'nan.csv', [1.0, None, 3.0, 4.0, float('nan'), 2.0])}"], "rating"),
        (lambda tmp: ["dataset.min_rating=99"], "no interactions left"),
        (lambda tmp: [f"resume_from={tmp / 'corrupt.pt'}"], "corrupt.pt"),
    ],
    ids=["missing-files", "nan-ratings", "empty-after-filter", "corrupt-checkpoint"],
)
def test_bad_input_exits_2_without_run_dir(tmp_path: Path, capsys, make_overrides, message: str) -> None:
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    run_dir = tmp_path / "run"
    overrides = [*make_overrides(tmp_path), f"hydra.run.dir={run_dir}", f"dataset.cache_dir={tmp_path / 'cache'}",
                 "trainer.progress=false", "trainer.epochs=1"]
    assert exit_code(*overrides) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err.lower() and "Traceback" not in err
    assert not run_dir.exists()


def test_bench_unknown_name_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", "nope"])
    assert info.value.code == 2 and "nope" in capsys.readouterr().err


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_a_single_run_composes_its_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra._internal.hydra import Hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    import recsys.cli.train as train_module

    composed, modes = [], []
    real_compose, real_run = Hydra.compose_config, train_module._run
    monkeypatch.setattr(Hydra, "compose_config", lambda self, *a, **k: composed.append(1) or real_compose(self, *a, **k))
    monkeypatch.setattr(train_module, "_run", lambda cfg: modes.append(HydraConfig.get().mode) or real_run(cfg))
    get_mode = Hydra.get_mode
    train("model=pop", "trainer.progress=false", f"hydra.run.dir={tmp_path / 'run'}", f"dataset.cache_dir={tmp_path / 'cache'}")
    assert len(composed) == 1 and modes == [RunMode.RUN]
    assert Hydra.get_mode is get_mode  # restored
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_multirun_command_lines_keep_hydras_mode_check() -> None:
    from recsys.cli.train import _multirun

    assert _multirun(["-m", "model=pop,bpr"]) and _multirun(["--multirun"]) and _multirun(["hydra.mode=MULTIRUN"])
    assert not _multirun(["model=pop", "hydra.run.dir=x", "trainer.epochs=2"])
