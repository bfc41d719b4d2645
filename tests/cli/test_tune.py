"""recsys tune: planted optimum found, median pruning, failures recorded, resume, test split never read, errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from omegaconf import OmegaConf

optuna = pytest.importorskip("optuna")  # the `tune` extra (CI installs it with `dev`)
from optuna.trial import TrialState  # noqa: E402

from recsys.benchmarks.report import load_store  # noqa: E402
from recsys.benchmarks.tuning import INTERRUPTED, Param, load_space, open_study, storage_url  # noqa: E402
from recsys.cli import tune  # noqa: E402
from recsys.cli.experiment import config_differences  # noqa: E402
from recsys.errors import ConfigError  # noqa: E402
from tests.cli.tune_stub import GuardedSplit, SplitReadError, write_communities  # noqa: E402


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Overrides reading 8 disjoint communities of 10 items (160 users) from a CSV, one thread."""
    folder = tmp_path_factory.mktemp("planted")
    csv = write_communities(folder / "communities.csv")
    return [f"dataset.name={csv}", f"dataset.cache_dir={folder / 'cache'}", "trainer.threads=1"]


def space(path: Path, overrides: list[str], params: dict) -> Path:
    path.write_text(json.dumps({"overrides": overrides, "params": params}))  # JSON is YAML
    return path


def load(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage_url(out / "study.db"))


@pytest.mark.slow  # a 6-trial search plus the overlay rerun (~10 s)
def test_search_finds_the_planted_number_of_factors_and_its_overlay_reruns_it(tmp_path: Path, planted: list[str],
                                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # rank 1 or 2 cannot separate 8 communities; 16 factors can: the planted best value
    path = space(tmp_path / "als.yaml", ["model=als", "model.module.iterations=5"],
                 {"model.module.factors": {"type": "categorical", "choices": [1, 2, 16]}})
    out = tmp_path / "out"
    assert tune.main([str(path), *planted, "--trials", "5", "--out", str(out), "--study-name", "als",
                      "--compare-defaults"]) == 0
    study = load(out, "als")
    assert len(study.trials) == 5 and study.best_params == {"model.module.factors": 16}
    assert min(t.value for t in study.trials) < study.best_value - 0.2  # the space holds clearly worse values
    overlay = out / "experiment" / "tuned_als.yaml"
    assert OmegaConf.load(overlay).model.module.factors == 16
    printed = capsys.readouterr().out
    assert f"'hydra.searchpath=[file://{out.resolve()}]'" in printed and "experiment=tuned_als" in printed
    rows = pl.read_parquet(out / "results.parquet")
    trials, reruns = rows.filter(pl.col("kind") == "trial"), rows.filter(pl.col("kind") == "rerun")
    assert trials.height == 5 and trials["test/ndcg@10"].null_count() == 5  # the search reads no test metric
    assert trials["valid/ndcg@10"].null_count() == 0 and set(trials["status"]) == {"ok"}
    assert all("model.module.factors=" in s for s in trials["settings"].to_list())  # each row holds its config
    tuned, defaults = reruns.iter_rows(named=True)
    assert tuned["model"] == "als (tuned)" and tuned["test/ndcg@10"] > 0.3
    assert defaults["model"] == "als (defaults)" and defaults["test/ndcg@10"] > 0  # the shipped 64 factors
    assert tuned["valid/ndcg@10"] == pytest.approx(study.best_value)  # the rerun is the best trial, seeded alike
    assert (out / tuned["run_dir"] / "metrics.json").is_file()
    assert load_store(out)["model"].to_list() == ["als (tuned)", "als (defaults)"]  # reports leave the trials out
    report = (out / "tune_report.md").read_text()
    assert "| als (defaults) |" in report and "5 finished, 0 pruned, 0 failed" in report
    assert "optimization_history.png" in report and (out / "optimization_history.png").stat().st_size > 0


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_median_pruner_stops_a_worse_trial_and_a_failing_trial_is_recorded(tmp_path: Path, planted: list[str]) -> None:
    path = space(tmp_path / "bpr.yaml", ["model=bpr", "model.batches.batch_size=64", "trainer.epochs=3",
                                         "trainer.patience=null"],
                 {"model.optimizer.lr": {"type": "float", "low": 1e-7, "high": 0.1, "log": True},
                  "model.batches.num_negatives": {"type": "int", "low": 0, "high": 2}})
    out = tmp_path / "out"
    args = [str(path), *planted, "--trials", "4", "--out", str(out), "--study-name", "bpr", "--no-rerun"]
    search = tune.prepare(tune.parser().parse_intermixed_args(args))
    study, existed = open_study(storage_url(out / "study.db"), "bpr", search.direction, search.fingerprint())
    assert not existed
    for lr, negatives in [(0.05, 1), (0.05, 2), (1e-7, 1), (0.05, 0)]:  # good, good, hopeless, broken
        study.enqueue_trial({"model.optimizer.lr": lr, "model.batches.num_negatives": negatives})
    assert tune.main(args) == 0
    trials = load(out, "bpr").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    assert list(trials[2].intermediate_values) == [1]  # stopped after its first epoch, below the median
    assert sorted(trials[0].intermediate_values) == [1, 2, 3]
    assert "num_negatives must be a positive int" in trials[3].user_attrs["error"]
    rows = pl.read_parquet(out / "results.parquet").sort("trial")
    assert rows["status"].to_list() == ["ok", "ok", "pruned", "failed"]
    assert rows["pruned_at"].to_list()[2] == 1 and "num_negatives" in rows["error"].to_list()[3]


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_an_interrupted_search_resumes_with_its_finished_trials_kept(tmp_path: Path, planted: list[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = space(tmp_path / "ease.yaml", ["model=ease"], {"model.module.reg": {"type": "float", "low": 1.0, "high": 1000.0,
                                                                             "log": True}})
    out = tmp_path / "out"
    args = [str(path), *planted, "--out", str(out), "--study-name", "ease", "--no-rerun"]
    calls = []
    real = tune.run_experiment

    def interrupt_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tune, "run_experiment", interrupt_third)
    assert tune.main([*args, "--trials", "4"]) == 130
    first = load(out, "ease").trials
    assert [t.state for t in first] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert first[0].params == {"model.module.reg": 170.0}  # trial 1 runs the shipped default
    assert first[2].user_attrs[INTERRUPTED]
    monkeypatch.setattr(tune, "run_experiment", real)
    assert tune.main([*args, "--trials", "4"]) == 0
    study = load(out, "ease")
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4  # two kept, the interrupted one again, one new: the budget counts no interruption
    assert [(t.number, t.params, t.value) for t in done[:2]] == [(t.number, t.params, t.value) for t in first[:2]]
    assert study.trials[3].params == first[2].params and study.trials[3].user_attrs["retry_of"] == 2
    assert tune.main([*args, "--trials", "4"]) == 0 and len(load(out, "ease").trials) == 5  # spent: nothing runs
    # the same study with another space is refused rather than mixed
    space(path, ["model=ease"], {"model.module.reg": {"type": "float", "low": 1.0, "high": 50.0, "log": True}})
    assert tune.main([*args, "--trials", "6"]) == 2


@pytest.mark.slow  # kills a process: seconds
def test_a_trial_left_running_by_a_killed_process_is_failed_and_queued_again(tmp_path: Path) -> None:
    url, fingerprint = storage_url(tmp_path / "study.db"), {"params": 1}
    study, _ = open_study(url, "s", "maximize", fingerprint)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)  # the process dies here: the trial stays RUNNING
    study, existed = open_study(url, "s", "maximize", fingerprint)
    assert existed
    (old, queued) = study.trials
    assert old.state == TrialState.FAIL and old.user_attrs[INTERRUPTED]
    assert queued.state == TrialState.WAITING and queued.system_attrs["fixed_params"] == old.params
    assert len(open_study(url, "s", "maximize", fingerprint)[0].trials) == 2  # queued once, not on every resume


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_the_test_split_is_never_read_during_the_search(tmp_path: Path, planted: list[str]) -> None:
    path = space(tmp_path / "ease.yaml", ["model=ease", "split._target_=tests.cli.tune_stub.guarded_split"],
                 {"model.module.reg": {"type": "float", "low": 1.0, "high": 1000.0, "log": True}})
    out = tmp_path / "out"
    args = [str(path), *planted, "--trials", "3", "--out", str(out), "--study-name", "guarded"]
    assert tune.main([*args, "--no-rerun"]) == 0
    assert [t.state for t in load(out, "guarded").trials] == [TrialState.COMPLETE] * 3
    with pytest.raises(SplitReadError):  # the guard does fire: the rerun after the search reads the test split
        tune.main(args)


def test_guarded_split_guards() -> None:
    from recsys.data import from_frame

    data = from_frame(pl.DataFrame({"user": [1, 1, 1], "item": [1, 2, 3], "timestamp": [1, 2, 3]}))
    with pytest.raises(SplitReadError):
        GuardedSplit(data).test


@pytest.mark.parametrize("params, message", [
    ({"model.module.reg": {"type": "float", "low": 10.0, "high": 1.0}}, "low < high"),
    ({"model.module.reg": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "log: true needs low > 0"),
    ({"model.module.reg": {"type": "float", "low": 1.0, "high": 2.0, "lo": 1}}, "unknown key(s) ['lo']"),
    ({"model.module.reg": {"type": "categorical"}}, "non-empty list of choices"),
    ({"model.module.reg": {"type": "normal", "low": 1.0, "high": 2.0}}, "type float, int or categorical"),
    ({"model.module.regg": {"type": "float", "low": 1.0, "high": 2.0}}, "did you mean model.module.reg"),
    ({"model.module.reg": [1, 2]}, "needs a mapping"),
])
def test_a_bad_space_exits_2_with_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str], params: dict,
                                              message: str) -> None:
    path = space(tmp_path / "bad.yaml", ["model=ease"], params)
    assert tune.main([str(path), "--dry-run"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["ease", "--trials", "0"], "--trials must be positive"),
    (["ease", "--minutes", "0"], "--minutes must be positive"),
    (["ease", "model.module.reg=5"], "the overrides fix ['model.module.reg']"),
    (["no-such-space"], "search space 'no-such-space' not found"),
    (["ease", "model.module.nope=1"], "cannot compose the config"),
])
def test_bad_budgets_and_overrides_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                          message: str) -> None:
    assert tune.main([*argv, "--out", str(tmp_path), "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_every_shipped_space_parses_and_its_defaults_lie_in_it() -> None:
    from recsys.cli.config_dir import config_dir

    names = sorted(p.stem for p in (config_dir() / "tune").glob("*.yaml"))
    assert {"als", "bpr", "deepfm", "ease", "sasrec_ce"} <= set(names)
    for name in names:
        args = tune.parser().parse_intermixed_args([name])
        search = tune.prepare(args)  # composes the trial config and checks every path
        outside = [p for p, v in search.defaults.items() if not search.space.params[p].contains(v)]
        assert not outside, (name, outside)  # trial 1 of every search is the shipped default


def test_the_overlay_composes_to_the_same_config_as_the_overrides(tmp_path: Path) -> None:
    learn = ["experiment=deepfm_ctr", "dataset=ml-100k", "seed=3", "trainer.patience=2"]
    params = {"model.module.hidden_dims": [128, 64], "model.optimizer.sparse.weight_decay": 1e-5,
              "model.module.activation": "relu"}
    text = tune.overlay_text(learn, params, ["a header"])
    assert text.startswith("# @package _global_\n# a header\n")
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "t.yaml").write_text(text)
    overlay = tune.compose_config(["experiment=t", f"hydra.searchpath=[file://{tmp_path}]"])
    plain = tune.compose_config([*learn, *(tune.format_override(p, v) for p, v in params.items())])
    assert config_differences(OmegaConf.to_container(plain, resolve=True), OmegaConf.to_container(overlay, resolve=True)) == {}
    assert overlay.model.module.hidden_dims == [128, 64] and overlay.eval._target_.endswith("CTREvaluator")


def test_categorical_lists_round_trip_through_optuna(tmp_path: Path) -> None:
    param = Param.parse("m.h", {"type": "categorical", "choices": [[256, 128], [64]]})
    study = optuna.create_study()
    study.enqueue_trial({"m.h": param.encode([64])})
    trial = study.ask()
    assert param.suggest(trial) == [64] and param.decode(trial.params["m.h"]) == [64]
    assert param.contains([64]) and not param.contains([32])
    with pytest.raises(ConfigError, match="choices repeat"):
        Param.parse("m.h", {"type": "categorical", "choices": [1, 1]})
    assert load_space("ease", Path(__file__).parents[2] / "conf").params["model.module.reg"].log
