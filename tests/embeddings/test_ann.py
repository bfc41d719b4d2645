"""FaissIndex finds the exact neighbours on easy data, refuses other vectors, and plugs into FittedRecommender."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from recsys.errors import ConfigError

pytest.importorskip("faiss")  # a guard only: faiss is the optional extra `ann`

from recsys.data import from_frame  # noqa: E402
from recsys.embeddings.ann import FaissIndex  # noqa: E402
from recsys.inference import FittedRecommender  # noqa: E402
from recsys.models import ALS, EASE  # noqa: E402


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_search_recalls_exact_top_k(kind, metric):
    g = torch.Generator().manual_seed(0)
    vectors, queries = torch.randn(500, 8, generator=g), torch.randn(20, 8, generator=g)
    params = {"nlist": 8, "nprobe": 8} if kind == "ivf" else {}  # ivf probing every list is exact
    index = FaissIndex(vectors, metric=metric, kind=kind, **params)
    scores, rows = index.search(queries, k=10)
    assert scores.shape == rows.shape == (20, 10) and rows.dtype == torch.long
    table = torch.nn.functional.normalize(vectors, dim=1) if metric == "cosine" else vectors
    exact = (queries @ table.T).topk(10, dim=1).indices
    recall = (rows.unsqueeze(2) == exact.unsqueeze(1)).any(2).float().mean()
    assert recall > 0.95
    scores, rows = index.search(queries[:2], k=600)  # more than the catalogue: padded with -1 / -inf
    assert rows.shape == (2, 600) and bool((rows[:, 500:] == -1).all()) and bool(torch.isinf(scores[:, 500:]).all())


def test_fingerprint_and_bad_arguments():
    vectors = torch.randn(50, 4)
    index = FaissIndex(vectors, kind="flat")
    index.check(vectors.clone())
    with pytest.raises(ConfigError, match="differ"):
        index.check(vectors + 1)
    with pytest.raises(ConfigError, match="differ"):
        index.check(torch.randn(60, 4))
    with pytest.raises(ConfigError, match="unknown parameter"):
        FaissIndex(vectors, kind="hnsw", nprobe=3)
    with pytest.raises(ConfigError, match="metric"):
        FaissIndex(vectors, metric="l2")


@pytest.fixture(scope="module")
def fitted() -> FittedRecommender:
    g = torch.Generator().manual_seed(0)
    users, items = torch.randint(0, 60, (900,), generator=g), torch.randint(0, 120, (900,), generator=g)
    data = from_frame(pl.DataFrame({"user": users.numpy(), "item": items.numpy() * 10}))
    model = ALS(data.num_users, data.num_items, factors=8, iterations=3)
    model.prepare(data, torch.Generator().manual_seed(0))
    return FittedRecommender(model, data)


def test_recommend_with_index_matches_exact_and_filters(fitted):
    users = fitted.users.ids.head(30)
    exact = fitted.recommend(users, N=5, filter_items=[0, 10])
    flat = FaissIndex(fitted.item_embeddings(), metric="ip", kind="flat")
    for index in (flat, "faiss"):
        approx = fitted.recommend(users, N=5, filter_items=[0, 10], index=index)
        assert approx["user"].to_list() == exact["user"].to_list() and approx["rank"].to_list() == exact["rank"].to_list()
        assert (approx["item"] == exact["item"]).mean() > 0.95
        seen = fitted.history.frame.select(pl.col("user"), pl.col("item"))
        pairs = approx.select(user=fitted.users.to_index(approx["user"]).numpy(), item=fitted.items.to_index(approx["item"]).numpy())
        assert pairs.join(seen, on=["user", "item"]).height == 0  # no seen item comes back
        assert not approx["item"].is_in([0, 10]).any()
    assert "ip" in fitted._ann_indexes  # "faiss" built once and cached


def test_similar_items_with_index(fitted):
    exact = fitted.similar_items([0, 10, 20], N=4)
    approx = fitted.similar_items([0, 10, 20], N=4, index="faiss")
    assert approx.columns == exact.columns and (approx["similar"] == exact["similar"]).mean() > 0.9
    assert not (approx["item"] == approx["similar"]).any()


def test_index_errors_are_clear(fitted):
    with pytest.raises(ConfigError, match="differ"):
        fitted.recommend(fitted.users.ids.head(3), N=2, index=FaissIndex(torch.randn(fitted.model.num_items, 8)))
    with pytest.raises(ConfigError, match="metric"):
        fitted.recommend(fitted.users.ids.head(3), N=2, index=FaissIndex(fitted.item_embeddings(), metric="cosine", kind="flat"))
    with pytest.raises(ConfigError, match="items="):
        fitted.recommend(fitted.users.ids.head(3), N=2, items=[0, 10], index="faiss")
    ease = EASE(fitted.model.num_items, reg=10.0)
    ease.prepare(fitted.history)
    with pytest.raises(ConfigError):
        FittedRecommender(ease, fitted.history).recommend(fitted.users.ids.head(3), N=2, index="faiss")


@pytest.mark.parametrize("kind, param", [("ivf", "nprobe"), ("hnsw", "ef_search")])
def test_tune_finds_the_smallest_setting_reaching_the_target(kind: str, param: str) -> None:
    from recsys.benchmarks.recommend import ann_vectors

    vectors, queries = ann_vectors("clustered", 4000, 16, 64, seed=0)
    start = {"nprobe": 1} if kind == "ivf" else {"ef_search": 10}
    index = FaissIndex(vectors, kind=kind, **({"nlist": 64} if kind == "ivf" else {"M": 8}), **start)
    out = index.tune(vectors, queries, k=10, target_recall=0.9)
    truth = (queries @ vectors.T).topk(10, dim=1).indices
    _, rows = index.search(queries, 10)
    recall = (rows.unsqueeze(2) == truth.unsqueeze(1)).any(2).float().mean().item()
    assert out[param] == index.params[param] and recall == pytest.approx(out["recall"]) and recall >= 0.9
    if out[param] > (1 if kind == "ivf" else 10):  # one step down the ladder misses the target
        index.params[param] = out[param] // 2
        index._set_search_params()
        _, rows = index.search(queries, 10)
        assert (rows.unsqueeze(2) == truth.unsqueeze(1)).any(2).float().mean().item() < 0.9


def test_tune_refuses_other_vectors_and_bad_targets() -> None:
    vectors = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    index = FaissIndex(vectors, kind="ivf", nlist=8)
    with pytest.raises(ConfigError, match="built on 300 x 8 vectors"):
        index.tune(vectors + 1, vectors[:5], k=5)
    with pytest.raises(ConfigError, match="target_recall"):
        index.tune(vectors, vectors[:5], k=5, target_recall=1.5)
