"""Peers as fitting engines: implicit's, gensim's and DeepCTR's models land in our containers and score as they do."""

from __future__ import annotations

import importlib.util
import sys
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recsys.benchmarks.peers import DeepCTRDeepFM, GensimItem2Vec, ImplicitALS, ImplicitBPR, _csr, _seed
from recsys.data import from_frame
from recsys.data.features import CategoricalFeature, FeaturePipeline, MultiCategoricalFeature, NumericFeature
from recsys.data.splits import random_split
from recsys.errors import ConfigError
from recsys.evaluation.ctr import CTREvaluator
from recsys.models import BPRMF
from recsys.models.deepfm import DeepFM
from recsys.models.fm import FM
from recsys.models.item2vec import Item2Vec
from recsys.pipeline import run_pipeline
from recsys.runs import load_run
from recsys.training.trainer import Trainer

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(60), 6)
    items = (users % 12 + rng.integers(0, 4, size=len(users))) % 30
    import polars as pl

    frame = pl.DataFrame({"user": users, "item": items, "timestamp": np.arange(len(users))})
    return from_frame(frame.unique(["user", "item"], keep="first", maintain_order=True))


@pytest.mark.parametrize("engine_class, peer_module, dim", [(ImplicitALS, "implicit.cpu.als", 8), (ImplicitBPR, "implicit.cpu.bpr", 9)])
def test_implicit_factors_land_in_the_container_and_rank_as_implicit(data, engine_class, peer_module: str, dim: int) -> None:
    pytest.importorskip("implicit")
    params = {"regularization": 0.05, **({"alpha": 2.0} if engine_class is ImplicitALS else {"learning_rate": 0.05})}
    engine = engine_class(factors=8, iterations=3, threads=1, **params)
    model = BPRMF(data.num_users, data.num_items, embedding_dim=dim)
    engine.fit(model, data, device=torch.device("cpu"), generator=torch.Generator().manual_seed(5))
    cls = getattr(importlib.import_module(peer_module), "AlternatingLeastSquares" if engine_class is ImplicitALS else "BayesianPersonalizedRanking")
    peer = cls(factors=8, iterations=3, num_threads=1, random_state=_seed(torch.Generator().manual_seed(5)), **params)
    csr = _csr(data)
    peer.fit(csr, show_progress=False)
    np.testing.assert_allclose(model.user_embedding.weight.detach().numpy(), peer.user_factors, rtol=1e-6)
    users = np.arange(10)
    their_ids, _ = peer.recommend(users, csr[users], N=5)
    scores = model.score_users(torch.as_tensor(users), data).detach()
    scores[torch.as_tensor(csr[users].toarray() > 0)] = float("-inf")
    assert (scores.topk(5, dim=1).indices.numpy() == their_ids).mean() > 0.95  # ties may swap a pair


def test_the_container_must_fit_the_peers_factors(data) -> None:
    pytest.importorskip("implicit")
    with pytest.raises(ConfigError, match="embedding_dim"):
        ImplicitBPR(factors=8, iterations=1, threads=1).fit(BPRMF(data.num_users, data.num_items, embedding_dim=8), data,
                                                            device=torch.device("cpu"), generator=torch.Generator())


def test_gensim_vectors_land_in_item2vec(data) -> None:
    pytest.importorskip("gensim")
    model = Item2Vec(data.num_items, vector_size=8, epochs=2, min_count=1)
    GensimItem2Vec(workers=1).fit(model, data, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    seen = torch.unique(data.item_index)
    assert bool(model.known[seen].all()) and float(model.item_vectors[seen].abs().sum()) > 0
    assert model.score_users(torch.arange(3), data).shape == (3, data.num_items)


# --- DeepCTR-Torch's DeepFM ------------------------------------------------------------------------------------
def ctr_data():
    """1,500 ratings, clicked when (user + item) % 3 == 0; users with a gender and a dense age, items with 1-3 genres
    (mean-pooled) and 0-1 tags (sum-pooled): every kind of field DeepCTR has a column for."""
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 40, 1500), rng.integers(0, 30, 1500)
    data = from_frame(pl.DataFrame({"user": users, "item": items, "rating": np.where((users + items) % 3 == 0, 5.0, 2.0)}))
    data.user_features = pl.DataFrame({"user": range(40), "gender": ["MF"[u % 2] for u in range(40)],
                                       "age": [18.0 + u for u in range(40)]})
    data.item_features = pl.DataFrame({"item": range(30), "genres": [[f"g{g}" for g in range(i % 3 + 1)] for i in range(30)],
                                       "tags": [[f"t{i % 4}"] * (i % 2) for i in range(30)]})
    features = FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("item"), CategoricalFeature("gender"),
                                NumericFeature("age", mode="dense"), MultiCategoricalFeature("genres"),
                                MultiCategoricalFeature("tags", pooling="sum")])
    return data, features


def needs_deepctr() -> None:
    """Skip without deepctr-torch (importorskip would import it without its undeclared ``requests``)."""
    if importlib.util.find_spec("deepctr_torch") is None:
        pytest.skip("deepctr-torch is not installed")


def _their_logits(engine: DeepCTRDeepFM, encoded) -> np.ndarray:
    probs = engine.model_.predict(engine.inputs(encoded), batch_size=512).reshape(-1)  # DeepCTR's own predict
    return np.log(probs) - np.log1p(-probs)


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
@pytest.mark.parametrize("batch_norm", [False, True])
def test_deepctr_weights_land_in_our_deepfm_and_score_as_deepctr(batch_norm: bool) -> None:
    needs_deepctr()
    data, features = ctr_data()
    split = random_split(data, (0.8, 0.0, 0.2), seed=0)
    features.fit(split.train)
    model = DeepFM(features, embedding_dim=4, hidden_dims=(16, 8), batch_norm=batch_norm)
    engine = DeepCTRDeepFM(epochs=3, batch_size=128, lr=0.01, threads=1)
    requests = sys.modules.get("requests")
    engine.fit(model, split.train, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), progress=False)
    assert sys.modules.get("requests") is requests  # the stand-in served deepctr_torch's import only
    peer = engine.model_
    assert torch.equal(model.embeddings.field_weight("genres")[:, 1:], peer.embedding_dict["genres"].weight)
    assert torch.equal(model.embeddings.field_weight("user")[:, 0], peer.linear_model.embedding_dict["user"].weight[:, 0])
    held_out = features.transform(split.test)  # rows DeepCTR never saw
    model.eval()
    with torch.no_grad():
        ours = model.predict(held_out.batch()).double().numpy()
    theirs = _their_logits(engine, held_out)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
    assert ours.std() > 0.1  # trained away from the near-zero init: every part contributes
    labels = features.labels(split.test).numpy()
    assert ours[labels == 1].mean() > ours[labels == 0].mean()


@pytest.mark.slow  # multi-second: keeps the default run within its 3 minutes
def test_deepctr_peer_runs_through_the_pipeline_and_its_run_reloads(tmp_path: Path) -> None:
    needs_deepctr()
    data, features = ctr_data()
    engine = DeepCTRDeepFM(epochs=2, batch_size=256, lr=0.01, threads=1)
    split = partial(random_split, ratios=(0.8, 0.0, 0.2), seed=1)
    result = run_pipeline(data, partial(DeepFM, embedding_dim=4, hidden_dims=(8,)), split=split, engine=engine,
                          features=features, trainer=Trainer(monitor="auc", progress=False, tensorboard=False),
                          evaluator=CTREvaluator(), seed=3, run_dir=tmp_path / "run", fit_on="train+valid")
    test = split(data).test  # the run's held-out rows
    run = load_run(tmp_path / "run")
    encoded = run.features.transform(test)
    with torch.no_grad():
        loaded = run.model.predict(encoded.batch()).double().numpy()
    theirs = _their_logits(engine, encoded)
    np.testing.assert_allclose(loaded, theirs, atol=1e-5, rtol=0)
    from sklearn.metrics import roc_auc_score  # a deepctr-torch dependency

    assert result.test["auc"] == pytest.approx(roc_auc_score(run.features.labels(test).numpy(), theirs))  # DeepCTR's AUC
    assert run.metrics["test"]["auc"] == pytest.approx(result.test["auc"])
    assert CTREvaluator().evaluate_model(run.model, run.history, test) == pytest.approx(result.test)


def test_deepctr_needs_a_deepfm_container_and_its_config_composes() -> None:
    needs_deepctr()
    data, features = ctr_data()
    features.fit(data)
    fit = partial(DeepCTRDeepFM(epochs=1).fit, train=data, device=torch.device("cpu"), generator=torch.Generator())
    with pytest.raises(ConfigError, match="DeepFM container"):
        fit(FM(features, embedding_dim=4))
    with pytest.raises(ConfigError, match="hidden"):
        fit(DeepFM(features, embedding_dim=4, hidden_dims=()))
    hydra = pytest.importorskip("hydra")
    from hydra.utils import instantiate

    with hydra.initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = hydra.compose("train", overrides=["model=peer/deepctr_deepfm", "eval=ctr", "split=random", "trainer.threads=1"])
    assert cfg.model.module._target_ == "recsys.models.deepfm.DeepFM" and cfg.model.batches is None
    engine = instantiate(cfg.model.engine)
    assert isinstance(engine, DeepCTRDeepFM) and engine.threads == 1 and engine.epochs == 10
