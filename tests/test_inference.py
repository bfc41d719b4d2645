"""Recommendations, similar items and embeddings in original ids, from a fitted pipeline run and a reloaded run."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import recsys
from recsys.cli.inference import main as cli
from recsys.errors import ConfigError, DataError


def planted(num_users: int = 40, num_items: int = 30) -> recsys.Interactions:
    """Users in two communities (even / odd ids) that like the even / odd items, as string user ids."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(num_users):
        liked = [i for i in range(num_items) if i % 2 == u % 2]
        for t, i in enumerate(rng.choice(liked, size=8, replace=False)):
            rows.append((f"u{u}", 100 + int(i), t))
    frame = pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row")
    return recsys.from_frame(frame)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[recsys.RunResult, Path]:
    run_dir = tmp_path_factory.mktemp("run")
    result = recsys.run_pipeline(
        planted(), functools.partial(recsys.BPRMF, embedding_dim=8),
        batches=functools.partial(recsys.PairwiseBatches, batch_size=64, seed=0),
        optimizer=functools.partial(torch.optim.Adam, lr=0.05),
        trainer=recsys.Trainer(epochs=40, progress=False, tensorboard=False, patience=None, monitor="ndcg@5"),
        evaluator=recsys.RankingEvaluator(ks=(5,)), run_dir=run_dir)
    return result, run_dir


def test_recommend_takes_and_returns_original_ids(fitted) -> None:
    result, run_dir = fitted
    run = recsys.load_run(run_dir)
    recs = run.recommend(["u0", "u1"], N=5)
    assert recs.columns == ["user", "item", "score", "rank"]
    assert recs["user"].to_list() == ["u0"] * 5 + ["u1"] * 5 and recs["rank"].to_list() == [1, 2, 3, 4, 5] * 2
    assert set(recs["item"].to_list()) <= set(range(100, 130))
    # the planted communities: u0 (even) gets even items, u1 odd ones
    assert all(i % 2 == 0 for i in recs.filter(pl.col("user") == "u0")["item"])
    assert all(i % 2 == 1 for i in recs.filter(pl.col("user") == "u1")["item"])
    # scores sorted and equal to the model's own scores
    with torch.no_grad():
        scores = run.model.score_users(run.users.to_index(["u0"]), run.history)[0]
    top = recs.filter(pl.col("user") == "u0")
    np.testing.assert_allclose(top["score"].to_numpy(), scores[run.items.to_index(top["item"])].numpy(), rtol=1e-6)
    # the reloaded run recommends exactly what the in-memory one does
    live = recsys.inference.FittedRecommender(result.model, result.history).recommend(["u0", "u1"], N=5)
    assert live.equals(recs)
    assert isinstance(run.recommend(["u0"], N=2, output="pandas").iloc[0]["item"], (int, np.integer))


def test_filtering_candidates_and_N(fitted) -> None:
    run = recsys.load_run(fitted[1])
    liked = set(run.history.frame.filter(pl.col("user") == 0)["item"].to_list())
    liked_ids = set(run.items.to_original(sorted(liked)))
    assert not liked_ids & set(run.recommend(["u0"], N=30)["item"].to_list())
    assert len(run.recommend(["u0"], N=1000)) == 30 - len(liked)  # N > catalogue: what is left
    assert len(run.recommend(["u0"], N=1000, filter_already_liked_items=False)) == 30
    assert 100 not in run.recommend(["u1"], N=30, filter_items=[100])["item"].to_list()
    cand = run.recommend(["u1"], N=10, items=[101, 103, 100], filter_already_liked_items=False)
    assert set(cand["item"]) <= {100, 101, 103} and len(cand) == 3


def test_bad_input_is_one_clear_error(fitted) -> None:
    run = recsys.load_run(fitted[1])
    with pytest.raises(DataError, match="unknown users without a history: \\['nobody'\\]"):
        run.recommend(["u0", "nobody"], histories={"other": [100]})
    with pytest.raises(DataError, match="unknown user ids: \\['nobody'\\]"):
        run.recommend(["nobody"])
    with pytest.raises(DataError, match="similar_items\\(items=...\\)"):
        run.similar_items([999])
    with pytest.raises(DataError, match="unknown item ids in items: \\[999\\]"):
        run.recommend(["u0"], items=[999])
    with pytest.raises(ConfigError, match="N must be a positive int"):
        run.recommend(["u0"], N=0)
    with pytest.raises(DataError, match="histories are empty"):
        run.recommend(["x"], histories={"x": []})


def test_similar_items_and_embeddings(fitted, tmp_path: Path) -> None:
    run = recsys.load_run(fitted[1])
    similar = run.similar_items([100, 101], N=4)
    assert similar.columns == ["item", "similar", "score", "rank"]
    assert 100 not in similar.filter(pl.col("item") == 100)["similar"].to_list()
    assert sum(i % 2 == 0 for i in similar.filter(pl.col("item") == 100)["similar"]) >= 3  # its community
    vectors = run.item_embeddings()
    assert list(vectors.index_to_key) == list(range(100, 130)) and vectors.table.shape == (30, 8)
    users = run.user_embeddings()
    assert users.index_to_key[0] == "u0"


def test_new_users_from_histories_with_models_that_read_them(tmp_path: Path) -> None:
    data = planted()
    for factory, engine in [
        (functools.partial(recsys.Item2Vec, vector_size=8, epochs=30, window=3, sample=0.0), "sgns"),  # no subsampling: a tiny corpus
        (functools.partial(recsys.EASE, reg=10.0), None),
    ]:
        from recsys.training.sgns import SGNSEngine

        result = recsys.run_pipeline(data, factory, engine=SGNSEngine(workers=1) if engine else None,
                                     trainer=recsys.Trainer(progress=False, tensorboard=False, monitor="ndcg@5"),
                                     evaluator=recsys.RankingEvaluator(ks=(5,)))
        rec = recsys.inference.FittedRecommender(result.model, result.history)
        recs = rec.recommend(["newbie"], N=5, histories={"newbie": [100, 102, 104, 106]})
        assert recs["user"].unique().to_list() == ["newbie"]
        assert not {100, 102, 104, 106} & set(recs["item"])
        assert sum(i % 2 == 0 for i in recs["item"]) >= 4, type(result.model).__name__


def test_new_user_ids_of_another_type_than_the_training_ids() -> None:
    """Integer user ids in training; a new user named by a string, alone or beside known ids, or ids of a narrower dtype."""
    rng = np.random.default_rng(0)
    data = recsys.from_frame(pl.DataFrame({"user": np.repeat(np.arange(20), 5), "item": rng.integers(0, 30, 100) * 10,
                                           "timestamp": np.arange(100)}))
    rec = recsys.run_pipeline(data, recsys.Popularity, trainer=recsys.Trainer(progress=False, tensorboard=False)).recommender
    top = rec.recommend([1], N=3)["item"].to_list()
    alone = rec.recommend(["new-user"], N=3, histories={"new-user": [top[0]]})
    assert alone["user"].to_list() == ["new-user"] * 3 and top[0] not in alone["item"].to_list()
    mixed = rec.recommend([1, "new"], N=3, histories={"new": [top[0]]})
    assert mixed["user"].to_list() == ["1"] * 3 + ["new"] * 3  # the caller's ids come back, in the caller's order
    assert mixed["item"].head(3).to_list() == top
    narrow = rec.recommend(pl.Series([1, 2], dtype=pl.Int32), N=1,
                           histories=pl.DataFrame({"user": pl.Series([2], dtype=pl.Int16), "item": [top[0]]}))
    assert narrow["user"].dtype == pl.Int32 and narrow["user"].to_list() == [1, 2] and narrow["item"][1] != top[0]
    assert rec.recommend([1], N=3, histories={"someone-else": [top[0]]})["item"].to_list() == top  # not asked for
    with pytest.raises(DataError, match=r"unknown item ids in histories: \['zz'\].*Int64"):
        rec.recommend(["new"], histories={"new": ["zz"]})
    with pytest.raises(DataError, match=r"unknown user ids: \['x'\]"):
        rec.recommend(["x"])


def test_item_columns_join_side_features_by_original_id(tmp_path: Path) -> None:
    base = planted()
    titles = pl.DataFrame({"item": list(range(base.num_items)), "title": [f"t{i}" for i in base.items.ids]})
    data = recsys.Interactions(base.frame, base.users, base.items, item_features=titles.head(base.num_items - 1))
    assert data.item_frame()["item"].to_list() == base.items.ids.to_list()
    assert data.item_frame()["title"].to_list()[:2] == ["t100", "t101"] and data.item_frame()["title"][-1] is None
    recsys.run_pipeline(data, functools.partial(recsys.EASE, reg=10.0), run_dir=tmp_path / "run",
                        trainer=recsys.Trainer(progress=False, tensorboard=False, monitor="ndcg@5"), evaluator=recsys.RankingEvaluator(ks=(5,)))
    run = recsys.load_run(tmp_path / "run")
    recs = run.recommend(["u0", "u1"], N=4, item_columns=["title"])
    assert recs.columns == ["user", "item", "score", "rank", "title"]
    assert all(t is None or t == f"t{i}" for i, t in zip(recs["item"], recs["title"]))
    similar = run.similar_items([100], N=3, item_columns="title", output="pandas")
    assert list(similar["title"]) == [f"t{i}" if i != base.items.ids[-1] else None for i in similar["similar"]]
    with pytest.raises(ConfigError, match=r"no item column\(s\) \['year'\]"):
        run.recommend(["u0"], item_columns=["year"])


def test_models_without_a_fold_in_say_so(tmp_path: Path) -> None:
    data = planted()
    result = recsys.run_pipeline(data, functools.partial(recsys.NeuMF, gmf_dim=4, mlp_dim=4, layers=(8, 4)),
                                 batches=functools.partial(recsys.PairwiseBatches, batch_size=64, seed=0),
                                 optimizer=functools.partial(torch.optim.Adam, lr=0.01),
                                 trainer=recsys.Trainer(epochs=1, progress=False, tensorboard=False, monitor="ndcg@5"),
                                 evaluator=recsys.RankingEvaluator(ks=(5,)))
    rec = recsys.inference.FittedRecommender(result.model, result.history)
    if not result.model.user_tables:
        with pytest.raises(ConfigError, match="cannot recommend for users it never saw"):
            rec.recommend(["x"], histories={"x": [100]})


def test_cli_recommend_similar_export(fitted, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = str(fitted[1])
    out = tmp_path / "recs.parquet"
    assert cli(["recommend", run_dir, "--users", "u0,u1", "--k", "3", "--out", str(out)]) == 0
    recs = pl.read_parquet(out)
    assert recs.height == 6 and recs["user"].to_list()[:1] == ["u0"]
    assert cli(["recommend", run_dir, "--k", "2", "--out", str(tmp_path / "all.csv")]) == 0
    assert pl.read_csv(tmp_path / "all.csv").height == 80  # every user
    assert cli(["similar", run_dir, "--items", "100", "--k", "3"]) == 0
    printed = capsys.readouterr().out
    assert "similar" in printed and "| 100 " in printed  # ids print as ids
    assert cli(["recommend", run_dir, "--users", "u0", "--out", str(tmp_path / "recs.json")]) == 2
    assert not (tmp_path / "recs.json").exists()
    for fmt, name in [("parquet", "v.parquet"), ("npy", "v.npy"), ("word2vec", "v.txt")]:
        assert cli(["export", run_dir, "--format", fmt, "--out", str(tmp_path / name)]) == 0
    assert np.load(tmp_path / "v.npy").shape == (30, 8)
    assert (tmp_path / "v.txt").read_text().splitlines()[0] == "30 8"
    assert pl.read_parquet(tmp_path / "v.parquet").height == 30


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_cli_bad_input_exits_2(fitted, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = str(fitted[1])
    for args in (["recommend", str(tmp_path / "missing")], ["recommend", run_dir, "--users", "nobody"],
                 ["similar", run_dir, "--items", "999"]):
        assert cli(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err
    # the real command line: exit code 2 and one message
    done = subprocess.run([sys.executable, "-m", "recsys", "recommend", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no run.json" in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.glob("*.tmp"))
