"""The cold-start protocol: items held out of training entirely, ranked for the users who had them."""

import polars as pl
import pytest
import torch

from recsys.data.frame import from_frame
from recsys.errors import ConfigError
from recsys.evaluation.cold_start import cold_start_split, evaluate_cold_start
from recsys.models.content import ContentRecommender


def _data(users=30, items=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(items, (users, 6), generator=g)
    frame = pl.DataFrame({"user": torch.arange(users).repeat_interleave(6).numpy(), "item": rows.flatten().numpy(),
                          "timestamp": torch.arange(users * 6).numpy()}).unique(["user", "item"])
    return from_frame(frame)


def test_split_holds_items_out_entirely():
    data = _data()
    split = cold_start_split(data, fraction=0.1, seed=1)
    present = torch.unique(data.item_index).numel()
    assert split.cold_items.numel() == round(0.1 * present)
    assert not torch.isin(split.train.item_index, split.cold_items).any()
    assert torch.isin(split.test.item_index, split.cold_items).all()
    assert split.train.num_interactions + split.test.num_interactions == data.num_interactions
    assert torch.equal(cold_start_split(data, 0.1, seed=1).cold_items, split.cold_items)


def test_text_similarity_finds_cold_items():
    # two topics; a user's cold test item shares the topic of its history -> text scoring ranks it high
    frame = pl.DataFrame({"user": [0, 0, 0, 1, 1, 1], "item": [0, 1, 2, 3, 4, 5], "timestamp": [1, 2, 3, 1, 2, 3]})
    data = from_frame(frame)
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.95, 0.0], [0.0, 1.0], [0.1, 0.9], [0.0, 0.95]])
    model = ContentRecommender(num_items=6)
    model.set_item_vectors(vectors)
    split = cold_start_split(data, fraction=0.34, seed=0)
    out = evaluate_cold_start(model, split, candidates="all")
    assert out["hr@10"] == 1.0
    scores = model.score_users(torch.tensor([0, 1]), split.train)
    for cold in split.cold_items.tolist():
        user = 0 if cold < 3 else 1
        assert scores[user, cold] > scores[1 - user, cold]


def test_cold_candidates_mask_warm_items():
    data = _data()
    split = cold_start_split(data, fraction=0.2, seed=0)
    model = ContentRecommender(num_items=data.num_items)
    model.set_item_vectors(torch.ones(data.num_items, 4))  # all ties
    cold = evaluate_cold_start(model, split, candidates="cold")
    n_cold = split.cold_items.numel()
    assert cold["hr@10"] >= min(1.0, 10 / n_cold) - 1e-6  # ties among cold items only, minus the user's seen ones


@pytest.mark.parametrize("kwargs", [{"fraction": 0.0}, {"fraction": 1.0}])
def test_bad_fraction(kwargs):
    with pytest.raises(ConfigError):
        cold_start_split(_data(), **kwargs)


def test_bad_candidates():
    data = _data()
    model = ContentRecommender(num_items=data.num_items)
    model.set_item_vectors(torch.ones(data.num_items, 2))
    with pytest.raises(ConfigError):
        evaluate_cold_start(model, cold_start_split(data), candidates="warm")
