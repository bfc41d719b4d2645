"""RecBole's SASRec as a peer: its weights land in a container that scores exactly as RecBole's full_sort_predict."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from recsys.benchmarks.grid import load_grid, run_grid
from recsys.benchmarks.peers_recbole import RecBoleSASRec, RecBoleSASRecModel, write_atomic_files
from recsys.cli.config_dir import config_dir
from recsys.cli.experiment import factory
from recsys.data import from_frame
from recsys.data.ids import PADDING_INDEX
from recsys.data.splits import leave_one_out
from recsys.errors import ConfigError

SKIP = "recbole is optional (the bench extra): pip install --no-deps recbole==1.2.1 colorlog colorama texttable"


def toy(users: int = 40, items: int = 25, seed: int = 0):
    """Users walk runs of consecutive items (1 to 14 each, some longer than max_len 6); item 124 only as a test item."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        start = int(rng.integers(0, items - 1))
        rows += [(user, 100 + (start + step) % (items - 1), step) for step in range(int(rng.integers(1, 15)))]
    rows += [(users, 100, 0), (users, 101, 1), (users, 100 + items - 1, 2)]  # leave-last-out: 124 is test only
    frame = pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row")
    return from_frame(frame.unique(["user", "item"], keep="first", maintain_order=True))


def full_sort_predict(engine: RecBoleSASRec, sequences: torch.Tensor, num_items: int) -> torch.Tensor:
    """RecBole's own scores ``(B, N)`` in our item index for left-padded histories (index + 1), -inf where it has no row."""
    to_recbole = torch.zeros(num_items, dtype=torch.long)
    to_recbole[engine.peer_items_[1:]] = torch.arange(1, engine.peer_items_.numel())
    lengths = (sequences != PADDING_INDEX).sum(1)
    right = torch.zeros_like(sequences)  # RecBole's item_id_list: right-padded, RecBole's ids
    for row, sequence in enumerate(sequences):
        real = sequence[sequence != PADDING_INDEX] - 1
        right[row, : real.numel()] = to_recbole[real]
    with torch.no_grad():
        theirs = engine.peer_.full_sort_predict({"item_id_list": right, "item_length": lengths})  # (B, V)
    out = torch.full((sequences.shape[0], to_recbole.numel()), float("-inf"))
    out[:, engine.peer_items_[1:]] = theirs[:, 1:]
    return out


def test_the_container_reads_left_padding_as_recbole_reads_right_padding() -> None:
    torch.manual_seed(0)
    model = RecBoleSASRecModel(num_items=6, max_len=5, embedding_dim=8, num_heads=2, hidden_dim=16).eval()
    model.known.fill_(True)
    padded = model.score_sequences(torch.tensor([[0, 0, 3, 1, 4], [2, 5, 6, 1, 3]]))
    short = model.score_sequences(torch.tensor([[3, 1, 4]]))  # same history, no padding
    torch.testing.assert_close(padded[0], short[0], rtol=0, atol=1e-6)
    model.known[2] = False
    assert model.score_sequences(torch.tensor([[1]]))[0, 2] == float("-inf")  # an item RecBole never saw
    with pytest.raises(ConfigError, match="multiple of num_heads"):
        RecBoleSASRecModel(num_items=6, embedding_dim=8, num_heads=3)


def test_the_config_builds_without_recbole_and_maps_onto_recbole_keys() -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        cfg = compose(config_name="train", overrides=["model=peer/recbole_sasrec"])
    module = factory(cfg.model.module, "model.module", {"num_users": 7, "num_items": 11})()
    engine = instantiate(cfg.model.engine)
    assert isinstance(module, RecBoleSASRecModel) and isinstance(engine, RecBoleSASRec)
    assert module.recbole_config() == {  # RecBole 1.2.1's SASRec.yaml and overall.yaml defaults
        "MAX_ITEM_LIST_LENGTH": 50, "hidden_size": 64, "n_layers": 2, "n_heads": 2, "inner_size": 256,
        "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "initializer_range": 0.02}
    assert (engine.batch_size, engine.learning_rate, engine.weight_decay) == (2048, 0.001, 0.0)


def test_atomic_files_keep_our_order(tmp_path: Path) -> None:
    data = toy()
    path = write_atomic_files(data, tmp_path)
    table = np.loadtxt(path, dtype=np.int64, skiprows=1)
    offsets, items = data.sequences()
    assert path.read_text().splitlines()[0] == "user_id:token\titem_id:token\ttimestamp:float"
    assert (table[:, 1] == items.numpy()).all() and (np.diff(offsets.numpy()) == np.bincount(table[:, 0])).all()
    assert (table[:, 2] == np.arange(len(table)) - offsets.numpy()[table[:, 0]]).all()  # position in the user's sequence


def test_the_recbole_sasrec_cell_is_skipped_without_recbole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (cell,) = load_grid("sequential", config_dir()).cells(datasets=["ml-100k"], models=["recbole-sasrec"], seeds=[0])
    assert cell.peer == "recbole" and "model=peer/recbole_sasrec" in cell.overrides
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):  # the row matches sasrec_ce's shape
        row = compose(config_name="train", overrides=[o for o in cell.overrides if o.startswith("model")])
        ours = compose(config_name="train", overrides=["model=sasrec_ce"]).model.module
    peer = row.model.module
    assert (peer.max_len, peer.embedding_dim, peer.num_layers, peer.num_heads, peer.hidden_dim, peer.dropout) == (
        ours.max_len, ours.embedding_dim, ours.num_layers, ours.num_heads, ours.hidden_dim or ours.embedding_dim, ours.dropout)
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "recbole" else find_spec(name, *a))
    row = run_grid([cell], tmp_path, echo=lambda _: None).row(0, named=True)
    assert row["status"] == "skipped" and "recbole is not installed" in row["error"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    """One RecBole fit (1 epoch) through the pipeline, saved to a run directory, from an empty working directory."""
    pytest.importorskip("recbole", reason=SKIP)
    from recsys.pipeline import run_pipeline
    from recsys.training import Trainer

    data = toy()
    workdir, run_dir = tmp_path_factory.mktemp("cwd"), tmp_path_factory.mktemp("runs") / "run"
    engine = RecBoleSASRec(epochs=1, batch_size=64, threads=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        result = run_pipeline(data, functools.partial(RecBoleSASRecModel, max_len=6, embedding_dim=16, num_heads=2,
                                                      hidden_dim=32), engine=engine, seed=3, run_dir=run_dir,
                              trainer=Trainer(device="cpu", progress=False, tensorboard=False))
    return data, engine, result, workdir, run_dir


def test_recbole_weights_score_as_full_sort_predict(fitted) -> None:
    data, engine, result, workdir, _ = fitted
    model = result.model.eval()
    history = result.history  # what the evaluator reads at test time: train + valid
    sequences = history.padded_sequences(model.history_len)
    with torch.no_grad():
        ours = model.score_users(torch.arange(history.num_users), history)
    theirs = full_sort_predict(engine, sequences, data.num_items)
    assert torch.equal(ours.isinf(), theirs.isinf()) and bool(ours[:, data.items.to_index([124])].isinf().all())
    assert float((ours - theirs)[theirs.isfinite()].abs().max()) < 1e-5
    lengths = (history.padded_sequences(10**6) != PADDING_INDEX).sum(1)
    assert bool((lengths > model.max_len).any())  # some histories are cut to the last max_len items, as RecBole's
    train = leave_one_out(data).train
    assert engine.prefixes_ == int((train.user_counts() - 1).clamp(min=0).sum())  # every prefix of every training sequence
    assert not hasattr(np, "float") and not hasattr(np, "float_")  # the numpy aliases are gone again
    assert list(workdir.iterdir()) == []  # no log/, saved/ or log_tensorboard/ in the working directory


def test_the_run_directory_reloads_and_ranks_the_same(fitted) -> None:
    from recsys.runs import load_run

    _, _, result, _, run_dir = fitted
    run = load_run(run_dir)
    assert type(run.model) is RecBoleSASRecModel
    users = torch.arange(result.history.num_users)
    with torch.no_grad():
        before = result.model.eval().score_users(users, result.history)
        after = run.model.score_users(users, run.history)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    top, _ = result.model.recommend_users(result.history, k=5)
    assert torch.equal(run.model.recommend_users(run.history, k=5)[0], top)
    assert run.metrics["test"] == pytest.approx(result.test)
