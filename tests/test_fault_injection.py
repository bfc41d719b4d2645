"""Fault injection through the CLI (in process): every bad input, conflicting resume and interrupted write
ends in one clear error (exit 2) or a clean recovery. A summary line is printed at the end of the module."""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from recsys.cli.main import main
from recsys.cli.train import LOCK
from recsys.runtime import atomic_write
from recsys.training import load_checkpoint

FAST = ["dataset.k_core=50", "trainer.progress=false", "trainer.tensorboard=false", "compare_to_popularity=false"]


@pytest.fixture(scope="module")
def outcomes(request):
    """(case, 'clear error' | 'recovery') of every test in the module; summarized when the module ends."""
    seen: list[tuple[str, str]] = []
    yield seen
    errors = sum(kind == "clear error" for _, kind in seen)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nfault injection: {len(seen)} cases, {errors} clear errors, {len(seen) - errors} recoveries")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def train(*overrides: str) -> int:
    """Run ``recsys train``; its exit code (0 when it returns)."""
    GlobalHydra.instance().clear()
    try:
        main(["train", *overrides])
    except SystemExit as exit_:
        return exit_.code
    finally:
        GlobalHydra.instance().clear()
    return 0


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache: Path) -> Path:
    """A finished 2-epoch BPR run to resume from."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert train(*FAST, "trainer.epochs=2", f"hydra.run.dir={run_dir}", f"dataset.cache_dir={cache}") == 0
    return run_dir


def expect_error(outcomes, case: str, capsys, overrides: list[str], *messages: str, run_dir: Path) -> str:
    assert train(*overrides, f"hydra.run.dir={run_dir}") == 2
    err = capsys.readouterr().err
    assert (err.startswith("error: ") or err.startswith("In 'train'")) and "Traceback" not in err, err  # ours or Hydra's
    for message in messages:
        assert message in err, err
    assert not run_dir.exists()
    outcomes.append((case, "clear error"))
    return err


def write_ratings(path: Path, ratings: list) -> Path:
    pl.DataFrame({"user": [1, 1, 2, 2, 3, 3], "item": [1, 2, 1, 3, 2, 3], "rating": ratings,
                  "timestamp": [1, 2, 3, 4, 5, 6]}).write_csv(path)
    return path


BAD_INPUT = {
    "unknown-model": (lambda tmp: ["model=nope"], "nope"),
    "unknown-key": (lambda tmp: ["+trainer.no_such_key=1"], "no_such_key"),
    "unknown-constructor-argument": (lambda tmp: ["+model.module.no_such_arg=3"], "no_such_arg"),
    "missing-files": (lambda tmp: ["dataset=ml-100k", f"dataset.root={tmp / 'missing'}"], "missing"),
    "nan-ratings": (lambda tmp: [f"dataset.name={write_ratings(tmp / 'nan.csv', [1.0, None, 3.0, 4.0, float('nan'), 2.0])}",
                                 "dataset.k_core=null"], "rating"),
    "empty-after-filter": (lambda tmp: ["dataset.min_rating=99"], "no interactions left"),
    "corrupt-checkpoint": (lambda tmp: [f"resume_from={tmp / 'corrupt.pt'}"], "corrupt"),
    "missing-checkpoint": (lambda tmp: [f"resume_from={tmp / 'nowhere.pt'}"], "not found"),
    "zero-threads": (lambda tmp: ["trainer.threads=0"], "trainer.threads"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input(outcomes, capsys, tmp_path: Path, cache: Path, case: str) -> None:
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    make, message = BAD_INPUT[case]
    overrides = [*FAST, "trainer.epochs=1", f"dataset.cache_dir={cache}", *make(tmp_path)]
    expect_error(outcomes, case, capsys, overrides, message, run_dir=tmp_path / "run")


def test_resume_with_another_lr_lists_the_key(outcomes, capsys, tmp_path: Path, cache: Path, finished: Path) -> None:
    overrides = [*FAST, "trainer.epochs=3", f"dataset.cache_dir={cache}", f"resume_from={finished / 'last.pt'}",
                 "model.optimizer.lr=0.1"]
    expect_error(outcomes, "resume-other-lr", capsys, overrides, "model.optimizer.lr", "0.007 -> 0.1",
                 "+resume_allow=[model.optimizer.lr]", run_dir=tmp_path / "run")


def test_resume_with_another_optimizer_lists_the_key(outcomes, capsys, tmp_path: Path, cache: Path,
                                                     finished: Path) -> None:
    overrides = [*FAST, "trainer.epochs=3", f"dataset.cache_dir={cache}", f"resume_from={finished / 'last.pt'}",
                 "model.optimizer._target_=torch.optim.SGD"]
    expect_error(outcomes, "resume-other-optimizer", capsys, overrides, "model.optimizer._target_",
                 run_dir=tmp_path / "run")


def test_resume_a_finished_run_says_nothing_to_resume(outcomes, capsys, tmp_path: Path, cache: Path,
                                                      finished: Path) -> None:
    overrides = [*FAST, "trainer.epochs=2", f"dataset.cache_dir={cache}", f"resume_from={finished / 'last.pt'}"]
    expect_error(outcomes, "resume-finished-run", capsys, overrides, "nothing to resume; raise trainer.epochs",
                 run_dir=tmp_path / "run")


def test_resume_without_the_run_config_refuses(outcomes, capsys, tmp_path: Path, cache: Path, finished: Path) -> None:
    moved = tmp_path / "moved.pt"
    moved.write_bytes((finished / "last.pt").read_bytes())
    overrides = [*FAST, "trainer.epochs=3", f"dataset.cache_dir={cache}", f"resume_from={moved}"]
    expect_error(outcomes, "resume-without-config", capsys, overrides, "no config.yaml", "resume_allow",
                 run_dir=tmp_path / "run")


def test_allowed_change_is_what_runs_and_what_is_recorded(outcomes, tmp_path: Path, cache: Path,
                                                          finished: Path) -> None:
    run_dir = tmp_path / "run"
    assert train(*FAST, "trainer.epochs=3", f"dataset.cache_dir={cache}", f"resume_from={finished / 'last.pt'}",
                 "model.optimizer.lr=0.1", "+resume_allow=[model.optimizer.lr]", f"hydra.run.dir={run_dir}") == 0
    assert "lr: 0.1\n" in (run_dir / "config.yaml").read_text()
    last = load_checkpoint(run_dir / "last.pt")
    assert last["epoch"] == 3 and [g["lr"] for g in last["optimizer"]["param_groups"]] == [0.1]
    assert (run_dir / "checkpoint.pt").is_file() and pl.read_csv(run_dir / "metrics.csv").height == 3
    assert load_checkpoint(finished / "last.pt")["epoch"] == 2  # the resumed run is left as it was
    outcomes.append(("resume-allowed-lr", "recovery"))


def test_killed_writes_are_cleaned_up_on_resume(outcomes, tmp_path: Path, cache: Path, finished: Path) -> None:
    old = time.time() - 3600
    stale = [finished / ".last.pt.killed01.tmp", tmp_path / "run" / ".checkpoint.pt.killed02.tmp"]
    for path in stale:  # what kill -9 during a checkpoint write leaves
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"PK\x03\x04 half a checkpoint")
        os.utime(path, (old, old))
    assert train(*FAST, "trainer.epochs=3", f"dataset.cache_dir={cache}", f"resume_from={finished / 'last.pt'}",
                 f"hydra.run.dir={tmp_path / 'run'}") == 0
    assert not any(path.exists() for path in stale)
    assert not list(finished.glob(".*.tmp")) and not list((tmp_path / "run").glob(".*.tmp"))
    outcomes.append(("stale-temp-files", "recovery"))


def test_ctrl_c_inside_a_write_leaves_no_temp_file(outcomes, tmp_path: Path) -> None:
    def interrupted(file) -> None:
        file.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "checkpoint.pt", interrupted)
    assert list(tmp_path.iterdir()) == []
    outcomes.append(("ctrl-c-in-atomic-write", "recovery"))


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_ctrl_c_during_a_checkpoint_write(outcomes, capsys, monkeypatch, tmp_path: Path, cache: Path) -> None:
    save, calls = torch.save, []

    def interrupted_save(obj, file, *args, **kwargs) -> None:
        calls.append(1)
        if len(calls) == 2:  # the write after epoch 1's checkpoint.pt (last.pt became a link to it)
            file.write(b"PK\x03\x04 half")
            raise KeyboardInterrupt
        save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", interrupted_save)
    run_dir = tmp_path / "run"
    assert train(*FAST, "trainer.epochs=3", f"dataset.cache_dir={cache}", f"hydra.run.dir={run_dir}") == 130
    assert "resume with" in capsys.readouterr().err
    assert not list(run_dir.glob(".*.tmp")) and load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    monkeypatch.undo()
    resumed = tmp_path / "resumed"
    assert train(*FAST, "trainer.epochs=3", f"dataset.cache_dir={cache}", f"resume_from={run_dir / 'last.pt'}",
                 f"hydra.run.dir={resumed}") == 0
    assert load_checkpoint(resumed / "last.pt")["epoch"] == 3
    outcomes.append(("ctrl-c-in-checkpoint-write", "recovery"))


def test_a_run_directory_owned_by_another_run(outcomes, tmp_path: Path, cache: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK).write_text("elsewhere 1\n")
    assert train(*FAST, "model=pop", f"dataset.cache_dir={cache}", f"hydra.run.dir={run_dir}") == 0
    assert (tmp_path / "run-2" / "config.yaml").is_file() and not (run_dir / "config.yaml").exists()
    outcomes.append(("shared-run-directory", "recovery"))


def test_fit_leaves_the_thread_count_as_it_was(outcomes, tmp_path: Path, cache: Path) -> None:
    before = torch.get_num_threads()
    assert train(*FAST, "trainer.epochs=1", "trainer.threads=1", f"dataset.cache_dir={cache}",
                 f"hydra.run.dir={tmp_path / 'run'}") == 0
    assert torch.get_num_threads() == before
    outcomes.append(("threads-restored", "recovery"))
