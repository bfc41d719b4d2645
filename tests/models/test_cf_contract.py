"""Contract shared by the collaborative-filtering models: configs instantiate, planted structure is learned,
embeddings export keyed by original ids, bad input gives clear errors."""

from __future__ import annotations

import functools

import numpy as np
import polars as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from recsys.cli.config_dir import config_dir
from recsys.cli.experiment import fill_data_sizes
from recsys.data.batches import PairwiseBatches
from recsys.data.frame import from_frame
from recsys.data.pointwise_batches import RatingBatches
from recsys.embeddings import KeyedVectors
from recsys.errors import ConfigError, DataError
from recsys.models.als import ALS
from recsys.models.base import Recommender
from recsys.models.biased_mf import BiasedMF
from recsys.models.bpr import BPRMF
from recsys.models.ease import EASE
from recsys.models.neumf import NeuMF
from recsys.training import Trainer
from recsys.training.checkpoint import save_checkpoint
from recsys.training.pretrained import NeuMFPretrained

MODELS = ["bpr", "biased_mf", "neumf", "als", "ease"]


def planted(num_users: int = 60, num_items: int = 30, groups: int = 3, keep: float = 0.6, seed: int = 0):
    """Users in ``groups`` communities, each liking one block of items; returns (train, held_out, liked) data."""
    generator = torch.Generator().manual_seed(seed)
    group = torch.arange(num_users) % groups
    liked = (torch.arange(num_items).unsqueeze(0) % groups) == group.unsqueeze(1)  # (U, N)
    kept = torch.rand(num_users, num_items, generator=generator) < keep
    train, held = liked & kept, liked & ~kept
    users, items = train.nonzero(as_tuple=True)
    frame = pl.DataFrame({"user": users.numpy() + 100, "item": items.numpy() + 1000,  # original ids offset
                          "rating": torch.full((len(users),), 1.0).numpy()})
    return from_frame(frame), train, held


def precision_at_3(model: Recommender, data, train: torch.Tensor, held: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        scores = model.score_users(torch.arange(train.shape[0]), history=data).masked_fill(train, -torch.inf)
    return held.gather(1, scores.topk(3, dim=1).indices).float().mean().item()


@pytest.mark.parametrize("name", ["bpr", pytest.param("neumf", marks=pytest.mark.slow), "als", "ease"])  # NeuMF: 2-3 s
def test_implicit_models_learn_planted_structure(name: str) -> None:
    data, train, held = planted()
    assert data.num_users == train.shape[0] and data.num_items == train.shape[1]
    torch.manual_seed(0)
    n_users, n_items = train.shape
    if name == "als":
        model = ALS(n_users, n_items, factors=4, regularization=1.0, alpha=10.0, iterations=10)
    elif name == "ease":
        model = EASE(n_items, reg=10.0)
    elif name == "bpr":
        model = BPRMF(n_users, n_items, embedding_dim=8)
    else:
        model = NeuMF(n_users, n_items, gmf_dim=8, mlp_dim=8, layers=(16, 8))
    model.prepare(data)
    if model.trainable:
        batches = PairwiseBatches(data, batch_size=256, num_negatives=4, seed=0)
        Trainer(epochs=40, device="cpu", progress=False, patience=None, tensorboard=False).fit(
            model, batches, functools.partial(torch.optim.Adam, lr=0.02))
    random_precision = held.float().sum().item() / (~train).sum().item()
    precision = precision_at_3(model, data, train, held)
    assert precision > 0.9 and precision > 2.5 * random_precision


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_biased_mf_learns_planted_ratings() -> None:
    """Ratings = 3 + u_f * i_f (rank one): held-out RMSE far below the global-mean predictor's."""
    generator = torch.Generator().manual_seed(1)
    u_f, i_f = torch.randn(50, generator=generator), torch.randn(40, generator=generator)
    ratings = 3 + u_f[:, None] * i_f[None, :]  # (U, N)
    observed = torch.rand(50, 40, generator=generator) < 0.5
    users, items = torch.meshgrid(torch.arange(50), torch.arange(40), indexing="ij")
    frame = pl.DataFrame({"user": users.flatten().numpy(), "item": items.flatten().numpy(),
                          "rating": ratings.flatten().numpy(), "part": observed.flatten().numpy()})
    data = from_frame(frame.drop("part"))
    train = data.with_frame(data.frame.filter(frame.sort("user", "item")["part"]), assume_sorted=True)
    test = data.with_frame(data.frame.filter(~frame.sort("user", "item")["part"]), assume_sorted=True)
    torch.manual_seed(0)
    model = BiasedMF(50, 40, embedding_dim=4, reg=0.001, init_std=0.1, clip=False)
    model.prepare(train)
    Trainer(epochs=150, device="cpu", progress=False, patience=None, tensorboard=False).fit(
        model, RatingBatches(train, batch_size=256), functools.partial(torch.optim.Adam, lr=0.03))
    from recsys.evaluation.rating import RatingEvaluator

    rmse = RatingEvaluator().evaluate_model(model, train, test)["rmse"]
    baseline = (test.ratings - train.ratings.mean()).square().mean().sqrt().item()
    assert rmse < 0.3 * baseline


@pytest.mark.parametrize("name", MODELS)
def test_configs_instantiate_through_hydra(name: str) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        cfg = compose(config_name="train", overrides=[f"model={name}"])
    model = instantiate(fill_data_sizes(cfg.model.module, {"num_users": 7, "num_items": 11}))
    assert isinstance(model, Recommender)
    assert (cfg.model.batches is None) == (name in ("als", "ease"))
    assert (cfg.model.optimizer is None) == (not model.trainable)


def test_rating_eval_config_instantiates() -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        cfg = compose(config_name="train", overrides=["model=biased_mf", "eval=rating", "trainer.monitor=rmse", "trainer.mode=min"])
    assert type(instantiate(cfg.eval)).__name__ == "RatingEvaluator"


@pytest.mark.parametrize("make", [
    lambda n_u, n_i: ALS(n_u, n_i, factors=4, iterations=2),
    lambda n_u, n_i: BiasedMF(n_u, n_i, embedding_dim=4),
    lambda n_u, n_i: NeuMF(n_u, n_i, gmf_dim=4, mlp_dim=4, layers=(8, 4)),
])
def test_embeddings_export_keyed_by_original_ids(make) -> None:
    data, train, _ = planted(num_users=12, num_items=9, keep=0.9)
    model = make(data.num_users, data.num_items)
    if isinstance(model, (ALS,)):
        model.prepare(data)
    items, users = model.item_embeddings(data.items), model.user_embeddings(data.users)
    assert isinstance(items, KeyedVectors) and isinstance(users, KeyedVectors)
    assert items.index_to_key == data.items.ids.to_list() and len(users) == data.num_users == 12
    first = data.items.ids.to_list()[0]
    assert np.array_equal(items[first], items.vectors[0])
    assert items.table.dtype == torch.float32 and items.table.device.type == "cpu" and not items.table.requires_grad


def test_ease_embeddings_are_weight_rows() -> None:
    data, _, _ = planted(num_users=12, num_items=9, keep=0.9)
    model = EASE(data.num_items, reg=1.0)
    model.prepare(data)
    assert torch.equal(model.item_embeddings(data.items).table, model.weights)
    assert model.user_embeddings(data.users, data).table.shape == (12, 9)


@pytest.mark.parametrize("build", [
    lambda: ALS(5, 5, factors=0), lambda: ALS(5, 5, solver="lu"), lambda: EASE(5, reg=0.0),
    lambda: BiasedMF(5, 5, embedding_dim=0), lambda: BiasedMF(0, 5), lambda: NeuMF(5, 5, gmf_dim=-1),
    lambda: NeuMF(5, 5, mode="deep"), lambda: NeuMFPretrained(gmf="a.pt", mlp=""),
    lambda: NeuMFPretrained(gmf="a.pt", mlp="b.pt", alpha=2.0),
])
def test_bad_hyperparameters_raise_config_errors(build) -> None:
    with pytest.raises(ConfigError):
        build()


def test_explicit_model_on_implicit_data_raises() -> None:
    data = from_frame(pl.DataFrame({"user": [1, 2], "item": [3, 4]}))  # no rating column
    with pytest.raises(DataError, match="no ratings"):
        BiasedMF(2, 2).prepare(data)
    with pytest.raises(DataError, match="no ratings"):
        RatingBatches(data)


def test_empty_training_data_raises() -> None:
    data = from_frame(pl.DataFrame({"user": [1, 2], "item": [3, 4], "rating": [1.0, 2.0]}))
    empty = data.with_frame(data.frame.head(0), assume_sorted=True)
    for model in (ALS(2, 2, factors=2), EASE(2), BiasedMF(2, 2)):
        with pytest.raises(DataError, match="no "):
            model.prepare(empty)
    with pytest.raises(DataError, match="users"):
        ALS(3, 2, factors=2).prepare(data)  # sizes do not match the data


def test_neumf_starts_from_pretrained_towers(tmp_path) -> None:
    torch.manual_seed(0)
    gmf, mlp = (NeuMF(4, 6, gmf_dim=2, mlp_dim=2, layers=(4, 2), mode=mode) for mode in ("gmf", "mlp"))
    save_checkpoint(tmp_path / "gmf.pt", {"model": gmf.state_dict(), "epoch": 3})  # a Trainer checkpoint
    save_checkpoint(tmp_path / "mlp.pt", mlp.state_dict())  # a bare state dict
    model = NeuMF(4, 6, gmf_dim=2, mlp_dim=2, layers=(4, 2))
    NeuMFPretrained(gmf=str(tmp_path / "gmf.pt"), mlp=str(tmp_path / "mlp.pt"), alpha=0.25).fit(
        model, None, device=torch.device("cpu"), generator=torch.Generator(), progress=False)
    assert torch.equal(model.gmf_item.weight, gmf.gmf_item.weight) and torch.equal(model.mlp_user.weight, mlp.mlp_user.weight)
    torch.testing.assert_close(model.head.bias, 0.25 * gmf.head.bias + 0.75 * mlp.head.bias)
    with torch.no_grad():  # the fused logit is alpha * GMF logit + (1 - alpha) * MLP logit
        users, items = torch.tensor([0, 3]), torch.tensor([5, 1])
        torch.testing.assert_close(model.logits(users, items), 0.25 * gmf.logits(users, items) + 0.75 * mlp.logits(users, items))
    wrong = NeuMF(4, 6, gmf_dim=3, mlp_dim=2, layers=(4, 2))
    with pytest.raises(Exception, match="does not fit"):
        NeuMFPretrained(gmf=str(tmp_path / "gmf.pt"), mlp=str(tmp_path / "mlp.pt")).fit(
            wrong, None, device=torch.device("cpu"), generator=torch.Generator(), progress=False)


@pytest.mark.parametrize("name", ["als", "ease", "neumf"])
def test_state_dict_round_trip_gives_the_same_scores(name: str) -> None:
    data, _, _ = planted(num_users=12, num_items=9, keep=0.9)
    build = {"als": lambda: ALS(12, 9, factors=3, iterations=2), "ease": lambda: EASE(9, reg=1.0),
             "neumf": lambda: NeuMF(12, 9, gmf_dim=2, mlp_dim=2, layers=(4, 2))}[name]
    model = build()
    model.prepare(data, torch.Generator().manual_seed(1))
    clone = build()
    clone.load_state_dict(model.state_dict())
    users = torch.arange(12)
    with torch.no_grad():
        assert torch.equal(clone.score_users(users, data), model.score_users(users, data))
