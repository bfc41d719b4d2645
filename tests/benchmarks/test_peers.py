"""Peers as fitting engines: implicit's and gensim's models land in our containers and score as they do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.benchmarks.peers import GensimItem2Vec, ImplicitALS, ImplicitBPR, _csr, _seed
from recsys.data import from_frame
from recsys.errors import ConfigError
from recsys.models import BPRMF
from recsys.models.item2vec import Item2Vec


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
    import importlib

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
