"""Item2Vec recommender: planted communities, scoring by recent items, unknown items, exports."""

from __future__ import annotations

import polars as pl
import pytest
import torch
import torch.nn.functional as F

from recsys.data.frame import from_frame
from recsys.data.interactions import Interactions
from recsys.embeddings import KeyedVectors
from recsys.errors import ConfigError
from recsys.evaluation.ranking import RankingEvaluator
from recsys.models.item2vec import Item2Vec
from recsys.training.sgns import SGNSEngine

CPU = torch.device("cpu")


def community_data(num_users: int = 200, size: int = 12, length: int = 10, seed: int = 0) -> Interactions:
    """Each user browses one of two disjoint item communities (item ids 100.. and 200..), in time order."""
    gen = torch.Generator().manual_seed(seed)
    side = torch.randint(2, (num_users, 1), generator=gen)
    items = torch.randint(size, (num_users, length), generator=gen) + 100 + 100 * side
    users = torch.arange(num_users).repeat_interleave(length)
    times = torch.arange(length).repeat(num_users)
    return from_frame(pl.DataFrame({"user": users.numpy(), "item": items.flatten().numpy(), "timestamp": times.numpy()}))


def fit(model: Item2Vec, data: Interactions, seed: int = 0, workers: int = 1) -> Item2Vec:
    model.prepare(data, torch.Generator().manual_seed(seed))
    SGNSEngine(workers=workers).fit(model, data, device=CPU, generator=torch.Generator().manual_seed(seed), progress=False)
    return model


def small_model(data: Interactions, **kwargs) -> Item2Vec:
    settings = dict(vector_size=16, window=3, sample=0.0, epochs=6) | kwargs
    return fit(Item2Vec(num_items=data.num_items, **settings), data)


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
    model = Item2Vec(num_items=data.num_items, vector_size=8, epochs=1)
    first = data.with_frame(data.frame.filter(pl.col("item") != 0))  # item 0 never trained
    fit(model, first)
    scores = model.score_users(torch.tensor([0, 1]), history=data)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    assert not model.trainable


def test_evaluator_and_item_embeddings_export() -> None:
    data = community_data(num_users=60)
    model = small_model(data)
    metrics = RankingEvaluator(ks=(10,), metrics=("hr",)).evaluate_model(model, data, data)
    assert 0.0 <= metrics["hr@10"] <= 1.0
    table = model.item_embeddings(data.items)
    assert isinstance(table, KeyedVectors)
    ids = data.items.ids.to_list()[:3]
    assert torch.allclose(torch.from_numpy(table[ids]), model.item_vectors[:3])
    trainable = table.to_keyed_embedding(freeze=False)
    assert trainable.weight.requires_grad and torch.allclose(trainable(torch.tensor(ids)), model.item_vectors[:3])
    assert not hasattr(model, "item_embedding")  # elsewhere the name of an embedding table, never a method


def test_state_dict_round_trip_keeps_vectors_and_known_mask() -> None:
    data = community_data(num_users=40)
    model = fit(Item2Vec(num_items=data.num_items, vector_size=16, epochs=1),
                data.with_frame(data.frame.filter(pl.col("item") != 0)))  # item 0 unknown
    clone = Item2Vec(num_items=data.num_items, vector_size=16)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.known, model.known) and not bool(clone.known[0])
    users = torch.arange(data.num_users)
    assert torch.equal(clone.score_users(users, data), model.score_users(users, data))


def test_same_generator_seed_gives_the_same_vectors() -> None:
    data = community_data(num_users=40)
    first, second, other = (fit(Item2Vec(num_items=data.num_items, vector_size=8, epochs=1), data, seed=s) for s in (3, 3, 4))
    assert torch.equal(first.item_vectors, second.item_vectors)
    assert not torch.equal(first.item_vectors, other.item_vectors)


def test_hogwild_workers_learn_the_communities() -> None:
    data = community_data()
    community = torch.tensor(data.items.ids.to_list()) >= 200
    last = data.padded_sequences(1)[:, 0] - 1
    purity = []
    for seed in range(2):  # 2-worker Hogwild is nondeterministic and about 1 fit in 6-20 lands badly (known, open)
        model = fit(Item2Vec(num_items=data.num_items, vector_size=16, window=3, sample=0.0, epochs=6), data, seed=seed, workers=2)
        top = model.score_users(torch.arange(data.num_users), history=data).topk(5, dim=1).indices
        purity.append(float((community[top] == community[last].unsqueeze(1)).float().mean()))
    assert max(purity) > 0.95, purity


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="num_items"):
        Item2Vec(num_items=0)
    with pytest.raises(ConfigError, match="last_n"):
        Item2Vec(num_items=3, last_n=0)
    with pytest.raises(ConfigError, match="vector_size"):
        Item2Vec(num_items=3, vector_size=0)
    with pytest.raises(ConfigError, match="sg"):
        SGNSEngine(workers=1).fit(Item2Vec(num_items=3, sg=2), community_data(num_users=4), device=CPU,
                                  generator=torch.Generator(), progress=False)
    with pytest.raises(ConfigError, match="workers"):
        SGNSEngine(workers=0)
