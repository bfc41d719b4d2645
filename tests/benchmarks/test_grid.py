"""The benchmark grid runner: grid files, cells, the results store, resumability, failures and kills."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.benchmarks.grid import Cell, append_row, load_grid, read_store, run_grid
from recsys.cli import compare
from recsys.cli.config_dir import config_dir
from recsys.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]


def toy_csv(path: Path, users: int = 40, items: int = 30, seed: int = 0) -> Path:
    """Each user walks a cycle of items (planted order), timestamps increasing: learnable and tiny."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        start = int(rng.integers(items))
        rows += [(user, (start + step) % items, step) for step in range(8)]
    pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row").write_csv(path)
    return path


def toy_grid(tmp: Path, models: dict | None = None, seeds: tuple[int, ...] = (0, 1)) -> Path:
    data = toy_csv(tmp / "toy.csv")
    confs = tmp / "conf" / "model"
    confs.mkdir(parents=True)
    (confs / "stub_peer.yaml").write_text(
        "module:\n  _target_: recsys.models.BPRMF\n  num_users: ???\n  num_items: ???\n  embedding_dim: 4\n"
        "engine: {_target_: tests.benchmarks.peer_stub.LowestIndexFirst, offset: 0.0}\n"
        "batches: null\noptimizer: null\n")
    models = models or {
        "bpr": {"overrides": ["model=bpr", "trainer.epochs=2", "model.module.embedding_dim=8", "model.batches.batch_size=64"]},
        "als": {"overrides": ["model=als", "model.module.iterations=2", "model.module.factors=8"]},
        "stub": {"overrides": ["model=stub_peer"], "peer": "tests"},
    }
    grid = {"description": "toy", "seeds": list(seeds), "threads": 1,
            "overrides": [f"hydra.searchpath=[file://{tmp / 'conf'}]", "trainer.tensorboard=false", "eval.ks=[5]",
                          "trainer.monitor=ndcg@5"],
            "datasets": {"toy": [f"dataset.name={data}", f"dataset.cache_dir={tmp / 'cache'}"]}, "models": models}
    path = tmp / "toy_grid.yaml"
    path.write_text(json.dumps(grid))  # JSON is YAML
    return path


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


# --- fast: grid files, cells and the store -----------------------------------------------------------------
def test_shipped_grids_expand_into_cells() -> None:
    for name in ("cf", "sequential", "ctr"):
        grid = load_grid(name, config_dir())
        cells = grid.cells(root="/data")
        assert cells and all(f"seed={c.seed}" in c.overrides for c in cells)
        assert all(any(o.startswith("dataset.root=/data/") for o in c.overrides) for c in cells)
        assert len({c.cell_id for c in cells}) == len(cells)  # every cell its own id
    cf = load_grid("cf", config_dir())
    pops = [c for c in cf.cells() if c.model == "pop"]
    assert [c.seed for c in pops] == [0, 0]  # deterministic: one seed per dataset
    more = cf.cells(datasets=["ml-100k"], models=["pop", "bpr"], seeds=[3, 4, 3])  # seeds beyond the file's
    assert [(c.model, c.seed) for c in more] == [("pop", 3), ("bpr", 3), ("bpr", 4)]
    assert [c.seed for c in cf.cells(datasets=["ml-100k"], models=["bpr"], seeds=[1])] == [1]
    beauty_bpr = next(c for c in cf.cells(datasets=["amazon-beauty"], models=["bpr"]))
    assert "model.engine.iterations=300" in beauty_bpr.overrides  # per-dataset settings
    ctr = load_grid("ctr", config_dir()).cells()
    assert {c.peer for c in ctr if c.model == "deepctr-deepfm"} == {"deepctr-torch"} and len(ctr) == 12
    assert all("split.seed=42" in c.overrides for c in ctr)  # one split for every model and seed


def test_cell_id_is_the_hash_of_its_overrides() -> None:
    a = Cell("g", "d", "m", 0, ("model=als", "seed=0"))
    assert a.cell_id == Cell("other grid", "d2", "m2", 0, ("model=als", "seed=0")).cell_id
    assert a.cell_id != Cell("g", "d", "m", 1, ("model=als", "seed=1")).cell_id


@pytest.mark.parametrize("text, message", [
    ("models: {a: [model=als]}", "needs a non-empty 'datasets'"),
    ("datasets: {d: [dataset=ml-100k]}\nmodels: {a: [model=als]}\nseed: [0]", "unknown key(s) ['seed']"),
    ("datasets: {d: dataset=ml-100k}\nmodels: {a: [model=als]}", "must be a list of override strings"),
    ("datasets: {d: []}\nmodels: {a: {overrides: [], tuned: 1}}", "expected a list of overrides or a mapping"),
    ("datasets: {d: []}\nmodels: {a: []}\nper_dataset: {d: {b: [x=1]}}", "must map model labels"),
    ("datasets: {d: [}", "not valid YAML"),
])
def test_bad_grid_files_say_what_and_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as error:
        load_grid(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_unknown_grid_and_labels_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert compare.main(["no-such-grid", "--dry-run"]) == 2
    assert "not found" in capsys.readouterr().err
    assert compare.main(["cf", "--models", "bpr,svd", "--dry-run"]) == 2
    assert "svd" in capsys.readouterr().err


def test_store_append_replaces_a_cells_row_and_a_damaged_store_says_so(tmp_path: Path) -> None:
    append_row(tmp_path, {"cell_id": "a", "status": "failed", "test/ndcg@10": None})
    append_row(tmp_path, {"cell_id": "b", "status": "ok", "test/ndcg@10": 0.5})
    append_row(tmp_path, {"cell_id": "a", "status": "ok", "test/ndcg@10": 0.25, "test/hr@10": 0.5})
    frame = read_store(tmp_path).sort("cell_id")
    assert frame["cell_id"].to_list() == ["a", "b"] and frame["status"].to_list() == ["ok", "ok"]
    assert frame["test/ndcg@10"].to_list() == [0.25, 0.5] and frame["test/hr@10"].to_list() == [0.5, None]
    assert not [p for p in tmp_path.iterdir() if p.name != "results.parquet"]  # no temp file left behind
    (tmp_path / "results.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable results store"):
        read_store(tmp_path)


def test_a_missing_peer_library_is_recorded_as_skipped(tmp_path: Path) -> None:
    cell = Cell("g", "toy", "ghost", 0, ("model=pop",), peer="no_such_peer_library")
    frame = run_grid([cell], tmp_path, echo=lambda _: None)
    row = frame.row(0, named=True)
    assert row["status"] == "skipped" and "no_such_peer_library is not installed" in row["error"]


# --- end to end: a tiny grid through recsys-train, one process per cell ------------------------------------
@pytest.mark.slow
def test_tiny_grid_end_to_end_resumable_and_failures_recorded(tmp_path: Path) -> None:
    grid = load_grid(toy_grid(tmp_path))
    cells = grid.cells()
    assert len(cells) == 6  # 3 models (one a peer) x 2 seeds
    store = tmp_path / "store"
    lines: list[str] = []
    frame = run_grid(cells, store, env=child_env(), echo=lines.append)
    assert len(frame) == 6 and set(frame["status"]) == {"ok"}, frame.select("model", "error").rows()
    assert frame["cell_id"].n_unique() == 6
    for row in frame.iter_rows(named=True):
        assert row["wall_seconds"] > 0 and row["peak_rss_mib"] > 50 and row["train_seconds"] >= 0
        assert 0.0 <= row["test/ndcg@5"] <= 1.0 and row["threads"] == 1
        assert json.loads(row["machine"])["cores"] == os.cpu_count()
        assert "torch" in json.loads(row["library_versions"]) and row["code_version"]
        per_user = pl.read_parquet(store / row["run_dir"] / "per_user_test.parquet")
        assert per_user["ndcg@5"].mean() == pytest.approx(row["test/ndcg@5"])  # the store's mean is the users' mean
    stub = frame.filter(pl.col("model") == "stub")
    assert stub["peer"].all() and stub["test/ndcg@5"].n_unique() == 1  # fixed behaviour: the same for both seeds
    assert frame.filter(pl.col("model") == "bpr")["test/ndcg@5"].n_unique() == 2  # seeds differ

    # a re-run skips every finished cell
    again: list[str] = []
    assert run_grid(cells, store, env=child_env(), echo=again.append).equals(frame)
    assert sum("skipped" in line for line in again) == 6

    # a failing cell and a killed (timed-out) cell are recorded; the rows already there stay readable
    broken = Cell(grid.name, "toy", "broken", 0, (*cells[0].overrides, "model.module.embedding_dim=-3"))
    out = run_grid([broken], store, env=child_env(), echo=lines.append)
    failed = out.filter(pl.col("model") == "broken").row(0, named=True)
    assert failed["status"] == "failed" and "exit 2" in failed["error"] and "embedding_dim" in failed["error"]
    slow_cell = Cell(grid.name, "toy", "killed", 0,  # no early stopping: it outlasts the 3 s timeout
                     (*cells[0].overrides, "trainer.epochs=100000", "trainer.patience=null"))
    out = run_grid([slow_cell], store, env=child_env(), timeout_s=3, echo=lines.append)
    killed = out.filter(pl.col("model") == "killed").row(0, named=True)
    assert killed["status"] == "failed" and "timed out" in killed["error"]
    assert len(read_store(store)) == 8 and read_store(store).filter(pl.col("status") == "ok").height == 6


@pytest.mark.slow
def test_compare_cli_runs_a_grid_file_and_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    models = {"pop": {"overrides": ["model=pop"], "seeds": 1}}
    path = toy_grid(tmp_path, models=models, seeds=(0,))
    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])
    assert compare.main([str(path), "--store", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    table = out.split("results store")[0]
    assert "pop" in table and "test/ndcg@5" in table  # the metrics the grid's evaluator reports
    assert read_store(tmp_path / "s")["status"].to_list() == ["ok"]


def test_the_front_door_names_the_grid_and_report_api() -> None:
    import recsys
    from recsys.benchmarks import grid, plots, report

    assert recsys.load_grid is grid.load_grid and recsys.run_grid is grid.run_grid and recsys.read_store is grid.read_store
    assert recsys.write_report is report.write_report and recsys.significance is report.significance
    assert recsys.summarize is report.summarize and recsys.plot_run is plots.plot_run
