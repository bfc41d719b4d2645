"""Each recsys-train run owns its directory: two runs started together with one ``hydra.run.dir`` end in two."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.cli.train import LOCK, claim_run_dir

ROOT = Path(__file__).resolve().parents[2]


def test_a_fresh_directory_is_claimed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".hydra").mkdir()  # what Hydra makes before the task starts
    assert claim_run_dir(run_dir) == run_dir
    assert (run_dir / LOCK).read_text().split()[1] == str(os.getpid())


def test_a_locked_directory_moves_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (run_dir / LOCK).write_text("elsewhere 1\n")
    (tmp_path / "run-2").mkdir()  # taken too, by a third run
    claimed = claim_run_dir(run_dir)
    assert claimed == tmp_path / "run-3"
    assert (claimed / LOCK).is_file() and (claimed / ".hydra" / "config.yaml").read_text() == "seed: 0\n"
    assert (run_dir / LOCK).read_text() == "elsewhere 1\n"  # the owner's files are left alone


def test_an_old_run_without_a_lock_is_not_overwritten(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "last.pt").write_bytes(b"an old run")
    assert claim_run_dir(run_dir) == tmp_path / "run-2"
    assert not (run_dir / LOCK).exists()


def test_the_log_file_follows_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK).write_text("elsewhere 1\n")
    handler = logging.FileHandler(run_dir / "train.log")
    logging.getLogger().addHandler(handler)
    try:
        claimed = claim_run_dir(run_dir)
        logging.getLogger().warning("written by the second run")
        handler.flush()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert "second run" in (claimed / "train.log").read_text()
    assert "second run" not in (run_dir / "train.log").read_text()


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_two_runs_started_together_get_two_directories(tmp_path: Path) -> None:
    run_dir = tmp_path / "outputs" / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(i: int) -> subprocess.Popen:
        overrides = [f"hydra.run.dir={run_dir}", f"dataset.cache_dir={tmp_path / f'cache{i}'}", "dataset.k_core=50",
                     "trainer.epochs=1", "trainer.progress=false", "trainer.tensorboard=false",
                     "compare_to_popularity=false", f"seed={i}"]
        return subprocess.Popen([sys.executable, "-m", "recsys", "train", *overrides], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    runs = [start(0), start(1)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    dirs = sorted(p for p in run_dir.parent.iterdir() if p.is_dir())
    assert dirs == [run_dir, run_dir.with_name("run-2")]
    seeds = set()
    for directory in dirs:
        for name in ("config.yaml", "checkpoint.pt", "last.pt", "model.safetensors", "metrics.json", LOCK):
            assert (directory / name).is_file(), (directory, name)
        seeds.add(next(line for line in (directory / "config.yaml").read_text().splitlines() if line.startswith("seed:")))
        assert str(directory) in "".join(outputs)  # each run reports where it wrote
    assert seeds == {"seed: 0", "seed: 1"}  # each directory holds its own run's config


def test_cli_moves_a_second_run_in_process(tmp_path: Path, capsys) -> None:
    from hydra.core.global_hydra import GlobalHydra

    from recsys.cli.main import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK).write_text("elsewhere 1\n")
    GlobalHydra.instance().clear()
    try:
        main(["train", "model=pop", f"hydra.run.dir={run_dir}", f"dataset.cache_dir={tmp_path / 'cache'}",
              "dataset.k_core=50", "trainer.progress=false"])
    finally:
        GlobalHydra.instance().clear()
    assert f"run directory: {tmp_path / 'run-2'}" in capsys.readouterr().out
    assert (tmp_path / "run-2" / "config.yaml").is_file() and "recsys.pipeline" in (tmp_path / "run-2" / "train.log").read_text()
    assert {p.name for p in run_dir.iterdir()} <= {".hydra", LOCK, "train.log"}  # Hydra opened the log before the task
    assert (run_dir / LOCK).read_text() == "elsewhere 1\n" and "recsys.pipeline" not in (run_dir / "train.log").read_text()


def test_a_run_on_a_custom_file_is_filed_under_the_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Runs on `dataset.name=/path/file.csv` go to outputs/<file stem>/..., not outputs/ml-latest-small/."""
    import polars as pl
    from hydra.core.global_hydra import GlobalHydra

    from recsys.cli.main import main

    rows = [(u, i, t) for u in range(30) for t, i in enumerate(range(u % 5, u % 5 + 6))]
    pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row").write_csv(tmp_path / "my clicks.csv")
    monkeypatch.chdir(tmp_path)
    GlobalHydra.instance().clear()
    main(["train", "model=pop", f"dataset.name={tmp_path / 'my clicks.csv'}", f"dataset.cache_dir={tmp_path / 'cache'}",
          "trainer.progress=false", "compare_to_popularity=false"])
    GlobalHydra.instance().clear()
    runs = list((tmp_path / "outputs").glob("*/pop/*"))
    assert [r.parent.parent.name for r in runs] == ["my_clicks"], runs
    assert (runs[0] / "run.json").is_file()
