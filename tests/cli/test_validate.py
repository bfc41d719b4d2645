"""Config mistakes fail before any data is loaded: one message naming the key, exit 2, no run directory.

The cases are those the reliability review found ending in tracebacks or after compute was spent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

import recsys.cli.experiment as experiment
from recsys.cli.main import main


@pytest.fixture(autouse=True)
def clear_hydra():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def no_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading data is a failure here: every mistake must be caught before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("data was loaded before the config was checked")

    monkeypatch.setattr(experiment, "seed_everything", refuse)


CASES = [
    (["model.optimizer.lr=-1"], "Invalid learning rate"),
    (["model.optimizer.lr=abc"], "model.optimizer"),
    (["model.batches.batch_size=1.5"], "model.batches.batch_size=1.5 is not a valid int"),
    (["seed=abc"], "seed='abc' is not a valid int"),
    (["model=pop", "eval=rating", "trainer.monitor=rmse"], "Popularity has no predict(), which RatingEvaluator needs"),
    (["trainer.epochs=abc"], "trainer.epochs='abc' is not a valid int"),
    (["+trainer.epohcs=3"], "did you mean trainer.epochs?"),
    (["model=als", "+trainer.epohcs=3"], "did you mean trainer.epochs?"),
    (["trainer.monitor=ndgc@10"], "trainer.monitor 'ndgc@10' is not a metric of RankingEvaluator"),
    (["+model.module.embeding_dim=8"], "did you mean model.module.embedding_dim?"),
    (["+fit_onn=train"], "did you mean fit_on?"),
]


@pytest.mark.parametrize("overrides,message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_config_mistakes_exit_2_before_data(overrides: list[str], message: str, tmp_path: Path, capsys, no_data) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["train", *overrides, f"hydra.run.dir={run_dir}", "trainer.progress=false"])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert message in err, err
    assert "Traceback" not in err
    assert not run_dir.exists()
