"""The compiled top-k selection against torch.topk and a per-row sorted reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.evaluation import topk as topk_module
from recsys.evaluation.topk import topk, topk_dot


def reference(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best first, equal scores by lower index, NaN last: a stable sort of each row."""
    keyed = torch.nan_to_num(scores, nan=float("-inf"), neginf=float("-inf"))
    order = torch.sort(keyed, dim=1, descending=True, stable=True).indices[:, :k]
    return keyed.gather(1, order), order


@pytest.mark.parametrize("k", [1, 7, 100, 300])
def test_topk_equals_torch_on_distinct_scores(k):
    scores = torch.randn(9, 300, generator=torch.Generator().manual_seed(k))
    values, indices = topk(scores, k, kernel="numba")
    expected = scores.topk(k, dim=1)
    torch.testing.assert_close(values, expected.values, rtol=0, atol=0)
    assert torch.equal(indices, expected.indices)


def test_topk_orders_ties_by_index_and_nan_last():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (16, 500), generator=generator).float()  # many ties
    scores[0, :] = float("nan")
    scores[1, ::3] = float("nan")
    scores[2, :] = float("-inf")
    for k in (1, 5, 64, 200, 500):
        values, indices = topk(scores, k, kernel="numba")
        ref_values, ref_indices = reference(scores, k)
        assert torch.equal(values, ref_values), k
        assert torch.equal(indices, ref_indices), k


def test_auto_uses_torch_for_small_blocks_and_both_agree_on_large(monkeypatch):
    scores = torch.randn(70, 1000, generator=torch.Generator().manual_seed(1))  # 70,000 scores: the kernel
    values, indices = topk(scores, 10)
    expected = scores.topk(10, dim=1)
    assert torch.equal(values, expected.values) and torch.equal(indices, expected.indices)
    monkeypatch.setattr(topk_module, "_kernel", None)  # a call reaching the kernel would fail
    small = torch.randn(4, 5)
    assert torch.equal(topk(small, 2)[1], small.topk(2, dim=1).indices)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kernel"):
        topk(torch.zeros(1, 3), 1, kernel="cuda")
    with pytest.raises(ValueError, match="outside"):
        topk(torch.zeros(1, 3), 4)


def _csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    return indptr, np.array([c for r in rows for c in r], np.int64)


@pytest.mark.parametrize("tile_bytes", [4 * 256 * 5, 1 << 22])  # tiles of 256 items (several per row), one tile
def test_topk_dot_equals_masked_block(monkeypatch, tile_bytes):
    monkeypatch.setattr(topk_module, "_TILE_BYTES", tile_bytes)
    generator = torch.Generator().manual_seed(2)
    queries, items = torch.randn(5, 8, generator=generator), torch.randn(1000, 8, generator=generator)
    liked = [[999, 3, 700], [], [0, 1, 2, 255, 256, 257], list(range(0, 1000, 2)), [511]]  # unsorted, tile edges
    banned = torch.tensor([10, 256, 600])
    for k in (1, 50, 480, 1000):
        values, indices = topk_dot(queries, items, k, exclude=_csr(liked), banned=banned, fill=-1e30, kernel="numba")
        scores = queries @ items.T
        for row, cols in enumerate(liked):
            scores[row, cols] = -1e30
        scores[:, banned] = -1e30
        ref_values, ref_indices = reference(scores, k)
        torch.testing.assert_close(values, ref_values, rtol=1e-6, atol=1e-6)
        assert torch.equal(indices, ref_indices), k
        torch_values, _ = topk_dot(queries, items, k, exclude=_csr(liked), banned=banned, fill=-1e30, kernel="torch")
        torch.testing.assert_close(torch_values, ref_values, rtol=1e-6, atol=1e-6)


def test_topk_dot_brings_filtered_items_back_only_when_needed():
    queries, items = torch.ones(1, 1), torch.tensor([[3.0], [2.0], [1.0]])
    values, indices = topk_dot(queries, items, 3, exclude=_csr([[0]]), kernel="numba")
    assert indices.tolist() == [[1, 2, 0]]
    assert values[0, 2] == float("-inf")


@pytest.mark.parametrize("model_name", ["BPRMF", "ALS"])
def test_score_vectors_are_the_models_scores(model_name):
    import recsys

    model = recsys.BPRMF(num_users=5, num_items=7, embedding_dim=4) if model_name == "BPRMF" else recsys.ALS(5, 7, factors=4)
    if model_name == "BPRMF":
        torch.nn.init.normal_(model.item_bias.weight)  # a bias that matters
    else:
        model.user_factors, model.item_factors = torch.randn(5, 4), torch.randn(7, 4)
    users, items = model.score_vectors()
    with torch.no_grad():
        torch.testing.assert_close(users @ items.T, model.score_users(torch.arange(5), None), rtol=1e-5, atol=1e-6)


def test_recommend_ranks_item_tiles_as_the_whole_block(monkeypatch):
    """FittedRecommender on a dot-product model: the tiled path (kernel) equals scoring the block whole."""
    import polars as pl

    import recsys
    from recsys.inference import FittedRecommender

    monkeypatch.setattr(topk_module, "_TILE_BYTES", 4 * 64 * 300)  # several tiles
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"user": rng.integers(0, 64, 3000), "item": rng.integers(0, 2000, 3000)}).unique()
    data = recsys.from_frame(frame)
    model = recsys.BPRMF(num_users=data.num_users, num_items=data.num_items, embedding_dim=8)
    torch.nn.init.normal_(model.item_bias.weight)
    fitted = FittedRecommender(model, data)
    users = data.users.ids.head(64)
    tiled = fitted.recommend(users, N=30, filter_items=data.items.ids.head(5), batch_size=64)
    monkeypatch.setattr(type(model), "score_vectors", lambda self: None)
    whole = fitted.recommend(users, N=30, filter_items=data.items.ids.head(5), batch_size=64)
    assert tiled.height == 64 * 30
    assert tiled.select("user", "item", "rank").equals(whole.select("user", "item", "rank"))
    np.testing.assert_allclose(tiled["score"].to_numpy(), whole["score"].to_numpy(), rtol=1e-5, atol=1e-6)
    seen = set(zip(frame["user"].to_list(), frame["item"].to_list()))
    assert not any((u, i) in seen for u, i in zip(tiled["user"].to_list(), tiled["item"].to_list()))
