"""CTR models rank items for users: ``score_users`` / ``score_items`` equal ``predict`` on the explicitly joined
(user, item) rows (DIN's with each user's latest behaviours), chunking changes nothing, the side encoding is cached per side frame, context features are
refused by name, full-ranking evaluation runs, and a trained DeepFM ranks a planted user-group -> genre signal."""

from __future__ import annotations

from functools import partial

import polars as pl
import pytest
import torch

from recsys.data.ctr_batches import CTRBatches
from recsys.data.features import CategoricalFeature, FeaturePipeline, MultiCategoricalFeature, NumericFeature, SequenceFeature
from recsys.data.frame import from_frame
from recsys.data.interactions import Interactions
from recsys.embeddings.optimizer import CombinedOptimizer
from recsys.embeddings.sparse_optim import RowWiseAdagrad
from recsys.errors import ConfigError
from recsys.evaluation.ranking import RankingEvaluator
from recsys.inference import FittedRecommender
from recsys.models.deepfm import DeepFM
from recsys.models.din import DIN
from recsys.models.fm import FM
from recsys.models.logistic import CTRModel, LogisticRegression
from recsys.training.trainer import Trainer

NUM_USERS, NUM_ITEMS = 24, 30
MODELS = {
    "lr": lambda f: LogisticRegression(f),
    "fm": lambda f: FM(f, embedding_dim=4),
    "deepfm": lambda f: DeepFM(f, embedding_dim=4, hidden_dims=(16, 8)),
    "din": lambda f: DIN(f, embedding_dim=4, hidden_dims=(16, 8), attention_dims=(8, 4)),
    "din_softmax": lambda f: DIN(f, embedding_dim=4, hidden_dims=(8,), attention_dims=(6,), attention_activation="prelu",
                                 softmax=True),
}


def dataset(seed: int = 0, num_ratings: int = 600) -> Interactions:
    """Ratings with user features (gender, age, a multi-valued ``langs``) and item genres; the last item has
    no feature row (its features are missing, as in training)."""
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(0, NUM_USERS, (num_ratings,), generator=gen)
    items = torch.randint(0, NUM_ITEMS, (num_ratings,), generator=gen)
    rating = torch.randint(1, 6, (num_ratings,), generator=gen).float()
    timestamp = torch.randperm(num_ratings, generator=gen)  # DIN's behaviours: each user's items in time order
    data = from_frame(pl.DataFrame({"user": users.numpy(), "item": items.numpy(), "rating": rating.numpy(),
                                    "timestamp": timestamp.numpy()}))
    u = list(range(data.num_users))
    data.user_features = pl.DataFrame({"user": u, "gender": ["F" if x % 2 else "M" for x in u], "age": [18 + 3 * x for x in u],
                                       "langs": [["en", "fr", "de"][: 1 + x % 3] for x in u]})
    data.item_features = pl.DataFrame({"item": list(range(data.num_items - 1)),
                                       "genres": [[f"g{i % 3}", f"g{(i * 7) % 5}"][: 1 + i % 2] for i in range(data.num_items - 1)]})
    return data


def pipeline(name: str = "fm") -> FeaturePipeline:
    """The side features (DIN's with a behaviour history of up to 7 items, shorter for some users)."""
    history = [SequenceFeature("history", max_len=7)] if name.startswith("din") else []
    return FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("item"), CategoricalFeature("gender"),
                            NumericFeature("age", mode="dense"), NumericFeature("age_bucket", column="age", boundaries=[30, 50]),
                            MultiCategoricalFeature("langs"), MultiCategoricalFeature("genres"), *history])


def build(name: str, features: FeaturePipeline) -> torch.nn.Module:
    torch.manual_seed(0)
    model = MODELS[name](features)
    scale = 0.5 if name.startswith("din") else 0.3  # DIN has no first-order weights to spread its logits
    with torch.no_grad():  # weights far from their tiny initial values, so the check means something
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


def grid_logits(model: torch.nn.Module, data: Interactions) -> torch.Tensor:
    """``predict`` on every (user, item) row, joined and encoded as training does: ``(U, N)``."""
    users = torch.arange(data.num_users).repeat_interleave(data.num_items)
    items = torch.arange(data.num_items).repeat(data.num_users)
    grid = data.with_frame(pl.DataFrame({"user": users.numpy(), "item": items.numpy()}), assume_sorted=True)
    return model.predict(model.features.transform(grid).batch()).view(data.num_users, data.num_items)


@pytest.fixture(scope="module")
def data() -> Interactions:
    return dataset()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_score_users_equals_predict_on_the_explicit_grid(name: str, data: Interactions) -> None:
    model = build(name, pipeline(name).fit(data))
    with torch.no_grad():
        expected = grid_logits(model, data)
        users = torch.arange(data.num_users)
        scores = model.score_users(users, data)
        assert scores.shape == (data.num_users, data.num_items)
        assert expected.std() > 0.1  # not a constant grid
        torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.score_users(users, data, chunk_size=50), expected, atol=1e-5, rtol=1e-5)
        if not name.startswith("din"):  # DIN's logit is no head of the summed sides
            # the generic path (head on the summed sides, any subclass) agrees with the closed forms
            user, item = model.side(data, "user", users), model.side(data, "item")
            generic = CTRModel.pair_logits(model, user, item, torch.arange(data.num_items), chunk_size=500)
            torch.testing.assert_close(generic, expected, atol=1e-5, rtol=1e-5)
        some = torch.tensor([5, 0, 5, 17])  # any order, repeats
        torch.testing.assert_close(model.score_users(some, data), expected[some], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_score_items_equals_the_matching_columns(name: str, data: Interactions) -> None:
    model = build(name, pipeline(name).fit(data))
    users = torch.tensor([3, 1, 3, 20])
    per_user = torch.randint(0, data.num_items, (4, 6), generator=torch.Generator().manual_seed(1))
    shared = torch.tensor([data.num_items - 1, 2, 2, 9])  # the featureless last item too
    with torch.no_grad():
        expected = grid_logits(model, data)[users]  # (B, N)
        for chunk_size in (2**24, 3):
            got = model.score_items(users, per_user, data, chunk_size=chunk_size)
            torch.testing.assert_close(got, expected.gather(1, per_user), atol=1e-5, rtol=1e-5)
            got = model.score_items(users, shared, data, chunk_size=chunk_size)
            torch.testing.assert_close(got, expected[:, shared], atol=1e-5, rtol=1e-5)


def test_side_encoding_is_cached_and_follows_new_side_frames(data: Interactions) -> None:
    model = build("fm", pipeline().fit(data))
    users = torch.arange(data.num_users)
    with torch.no_grad():
        before = model.score_users(users, data)
        cached = model._sides["item"][1][0]
        assert torch.equal(model.score_users(users, data), before) and model._sides["item"][1][0] is cached
        other = data.with_frame(data.frame)  # another split over the same side frames reuses the encoding
        model.score_users(users, other)
        assert model._sides["item"][1][0] is cached
        changed = data.with_frame(data.frame)
        changed.item_features = data.item_features.with_columns(pl.col("genres").list.reverse().list.slice(0, 1))
        after = model.score_users(users, changed)
        assert model._sides["item"][1][0] is not cached and not torch.allclose(after, before)
        torch.testing.assert_close(after, grid_logits(model, changed), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_full_ranking_evaluation_runs(name: str, data: Interactions) -> None:
    model = build(name, pipeline(name).fit(data))
    rows = pl.int_range(data.num_interactions, eager=True)
    train, test = data.with_frame(data.frame.filter(rows % 5 != 0)), data.with_frame(data.frame.filter(rows % 5 == 0))
    metrics = RankingEvaluator(ks=(10,), batch_size=7).evaluate_model(model, train, test)
    assert metrics["num_users"] > 0 and all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    top = FittedRecommender(model, train).recommend(train.users.ids.head(3), N=4)  # recommend ranks with score_users
    assert top.height == 12 and top["score"].is_finite().all()
    expected = torch.sigmoid(torch.from_numpy(top["score"].to_numpy().astype("float64"))).float()
    torch.testing.assert_close(torch.from_numpy(top["probability"].to_numpy()), expected)  # the click probability


def test_a_context_feature_cannot_be_ranked_and_is_named(data: Interactions) -> None:
    frame = pl.DataFrame({"user": data.frame["user"], "item": data.frame["item"], "hour": data.frame["user"] % 24})
    features = FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("item"), CategoricalFeature("hour")]).fit(frame)
    model = FM(features, embedding_dim=4)
    with pytest.raises(ConfigError, match="'hour'"):
        model.score_users(torch.arange(3), data)
    with pytest.raises(ConfigError, match="without a FeaturePipeline"):
        bare = FM(embedding_dim=4)
        bare.build(features.field_specs())
        bare.score_users(torch.arange(3), data)


def test_deepfm_ranks_the_genre_a_user_group_clicks() -> None:
    """Women click g0 films, men g1 films (rated 5), everything else is rated 1: a woman's top items are g0."""
    gen = torch.Generator().manual_seed(0)
    num_users, num_items = 40, 60
    users, items = torch.randint(0, num_users, (6000,), generator=gen), torch.randint(0, num_items, (6000,), generator=gen)
    genre = items % 3  # g0, g1, g2
    clicked = torch.where(users % 2 == 1, genre == 0, genre == 1)
    data = from_frame(pl.DataFrame({"user": users.numpy(), "item": items.numpy(),
                                    "rating": torch.where(clicked, 5.0, 1.0).numpy()}))
    raw_user = torch.tensor(data.users.ids.to_list())
    raw_item = torch.tensor(data.items.ids.to_list())
    data.user_features = pl.DataFrame({"user": range(data.num_users),
                                       "gender": ["F" if u % 2 else "M" for u in raw_user.tolist()]})
    data.item_features = pl.DataFrame({"item": range(data.num_items), "genres": [[f"g{i % 3}"] for i in raw_item.tolist()]})
    features = FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("item"), CategoricalFeature("gender"),
                                MultiCategoricalFeature("genres")]).fit(data)
    torch.manual_seed(0)
    model = DeepFM(features, embedding_dim=8, hidden_dims=(32, 16))
    optimizer = partial(CombinedOptimizer, dense=partial(torch.optim.Adam, lr=1e-3, fused=True),
                        sparse=partial(RowWiseAdagrad, lr=0.05, weight_decay=0.0))  # conf/model/deepfm.yaml
    batches = CTRBatches(data, features, batch_size=256)
    Trainer(epochs=4, device="cpu", progress=False, tensorboard=False).fit(model, batches, optimizer)
    model.eval()
    with torch.no_grad():
        top = model.score_users(torch.arange(data.num_users), data).topk(10, dim=1).indices  # (U, 10)
    top_genre = raw_item[top] % 3
    women = (raw_user % 2 == 1)
    assert (top_genre[women] == 0).float().mean() > 0.9
    assert (top_genre[~women] == 1).float().mean() > 0.9


def test_fm_side_vectors_carry_the_user_item_interaction(data: Interactions) -> None:
    """FM: logit(u, i) = f(u) + g(i) + <U_u, I_i>, so the double difference of the logits is the dot of the side vectors."""
    model = build("fm", pipeline().fit(data))
    logits = model.score_users(torch.arange(data.num_users), data).double()  # (U, N)
    double_difference = logits - logits[:, :1] - logits[:1, :] + logits[0, 0]
    users = model.user_embeddings(data.users, history=data).table.double()
    items = model.item_embeddings(data.items, history=data).table.double()
    expected = (users - users[:1]) @ (items - items[:1]).T
    torch.testing.assert_close(double_difference, expected, rtol=1e-4, atol=1e-4)
    assert items.shape == (data.num_items, 4)


def test_ctr_embeddings_need_a_history_and_lr_has_none(data: Interactions) -> None:
    from recsys.errors import ConfigError
    from recsys.inference import FittedRecommender

    fm = build("fm", pipeline().fit(data))
    with pytest.raises(ConfigError, match="come from the item features"):
        fm.item_embeddings(data.items)
    assert FittedRecommender(fm, data).item_embeddings().table.shape == (data.num_items, 4)  # the run's history is passed
    with pytest.raises(ConfigError, match="LogisticRegression has no item embeddings"):
        FittedRecommender(build("lr", pipeline().fit(data)), data).item_embeddings()
