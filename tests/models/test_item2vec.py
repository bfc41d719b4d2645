"""Item2Vec recommender: planted communities, scoring by recent items, unknown items, exports."""

from __future__ import annotations

import polars as pl
import pytest
import torch
import torch.nn.functional as F

from recsys.data.frame import from_frame
from recsys.data.interactions import Interactions
from recsys.embeddings.table import KeyedEmbedding
from recsys.errors import ConfigError
from recsys.evaluation.ranking import RankingEvaluator
from recsys.models.item2vec import Item2Vec


def community_data(num_users: int = 200, size: int = 12, length: int = 10, seed: int = 0) -> Interactions:
    """Each user browses one of two disjoint item communities (item ids 100.. and 200..), in time order."""
    gen = torch.Generator().manual_seed(seed)
    side = torch.randint(2, (num_users, 1), generator=gen)
    items = torch.randint(size, (num_users, length), generator=gen) + 100 + 100 * side
    users = torch.arange(num_users).repeat_interleave(length)
    times = torch.arange(length).repeat(num_users)
    return from_frame(pl.DataFrame({"user": users.numpy(), "item": items.flatten().numpy(), "timestamp": times.numpy()}))


def small_model(data: Interactions, **kwargs) -> Item2Vec:
    settings = dict(vector_size=16, window=3, sample=0.0, epochs=6, workers=1, device="cpu", seed=0) | kwargs
    model = Item2Vec(num_items=data.num_items, **settings)
    model.prepare(data)
    return model


def test_next_items_come_from_the_users_community() -> None:
    data = community_data()
    model = small_model(data)
    users = torch.arange(data.num_users)
    scores = model.score_users(users, history=data)
    assert scores.shape == (data.num_users, data.num_items)
    community = torch.tensor(data.items.ids.to_list()) >= 200  # (N,)
    last = data.padded_sequences(1)[:, 0] - 1
    top = scores.topk(5, dim=1).indices  # (U, 5)
    agree = (community[top] == community[last].unsqueeze(1)).float().mean()
    assert agree > 0.95


def test_scores_are_cosine_to_the_mean_of_the_last_items() -> None:
    data = community_data(num_users=40)
    model = small_model(data, last_n=3)
    unit = F.normalize(model.item_vectors, dim=1)
    recent = data.padded_sequences(3)[5] - 1  # user 5's last 3 items
    expected = F.normalize(unit[recent].sum(0), dim=0) @ unit.T
    assert torch.allclose(model.score_users(torch.tensor([5]), data)[0], expected, atol=1e-5)


def test_items_unseen_in_training_score_minus_infinity() -> None:
    data = community_data(num_users=40)
    model = Item2Vec(num_items=data.num_items, vector_size=8, epochs=1, workers=1, device="cpu")
    first = data.with_frame(data.frame.filter(pl.col("item") != 0))  # item 0 never trained
    model.prepare(first)
    scores = model.score_users(torch.tensor([0, 1]), history=data)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    assert not model.trainable


def test_evaluator_and_item_embedding_export() -> None:
    data = community_data(num_users=60)
    model = small_model(data)
    metrics = RankingEvaluator(ks=(10,), metrics=("hr",)).evaluate_model(model, data, data)
    assert 0.0 <= metrics["hr@10"] <= 1.0
    table = model.item_embedding()
    assert isinstance(table, KeyedEmbedding)
    ids = torch.tensor(data.items.ids.to_list()[:3])
    assert torch.allclose(table(ids), model.item_vectors[:3])
    state = model.state_dict()
    clone = Item2Vec(num_items=data.num_items, vector_size=16)
    clone.load_state_dict(state)
    assert torch.equal(clone.score_users(torch.tensor([0]), data), model.score_users(torch.tensor([0]), data))


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="num_items"):
        Item2Vec(num_items=0)
    with pytest.raises(ConfigError, match="last_n"):
        Item2Vec(num_items=3, last_n=0)
