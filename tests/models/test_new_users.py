"""Users a model never saw: each model's contract (reads histories / solves factors / folds in), and embeddings.

What each model supports (asserted by ``test_support_table``):

| model       | new users from a history                 | item_embeddings        | user_embeddings | similar_items    |
|-------------|------------------------------------------|------------------------|-----------------|------------------|
| SASRec      | reads_history (padded sequences)         | item table rows 1..N   | -               | cosine           |
| BERT4Rec    | reads_history (padded sequences)         | item table rows 1..N   | -               | cosine           |
| GRU4Rec     | reads_history (padded sequences)         | item table rows 1..N   | -               | cosine           |
| Item2Vec    | reads_history (mean of last_n vectors)   | item vectors           | -               | cosine           |
| Content     | reads_history (profile of the history)   | item vectors           | -               | cosine           |
| EASE        | reads_history (history row @ B)          | rows of B              | needs history   | item_similarity  |
| Popularity  | reads_history (same scores for all)      | -                      | -               | -                |
| ALS         | score_histories (exact user solve)       | item factors           | user factors    | cosine           |
| BPRMF       | fold-in of user_embedding (pairwise)     | item vectors (no bias) | user vectors    | cosine           |
| BiasedMF    | fold-in of p_u and b_u (ratings)         | q_i                    | p_u             | cosine           |
| NeuMF       | fold-in of gmf_user, mlp_user (pairwise) | [gmf, mlp] item rows   | [gmf, mlp]      | cosine           |
"""

from __future__ import annotations

import gc

import numpy as np
import polars as pl
import pytest
import torch
from torch import Tensor

from recsys.data.batches import PairwiseBatches
from recsys.data.frame import from_frame
from recsys.data.interactions import Interactions
from recsys.data.pointwise_batches import RatingBatches
from recsys.data.vocabulary import Vocabulary
from recsys.embeddings.keyed_vectors import KeyedVectors
from recsys.errors import ConfigError, DataError
from recsys.inference import FittedRecommender
from recsys.models.als import ALS
from recsys.models.base import Recommender
from recsys.models.bert4rec import BERT4Rec
from recsys.models.biased_mf import BiasedMF
from recsys.models.bpr import BPRMF
from recsys.models.content import ContentRecommender
from recsys.models.ease import EASE
from recsys.models.gru4rec import GRU4Rec
from recsys.models.item2vec import Item2Vec
from recsys.models.neumf import NeuMF
from recsys.models.popularity import Popularity
from recsys.models.sasrec import SASRec
from recsys.training.fold_in import fold_in, fold_in_scores

NUM_USERS, NUM_ITEMS = 40, 30


def planted(ratings: bool = False) -> Interactions:
    """Two communities: even users like even items, odd users odd items (8 each, in time order).

    With ``ratings``, users also rate 4 items of the other community, liked items 5 and the others 1.
    Original ids: users ``"u<k>"``, items ``100 + k``.
    """
    rng = np.random.default_rng(0)
    rows = []
    for u in range(NUM_USERS):
        liked = [i for i in range(NUM_ITEMS) if i % 2 == u % 2]
        picks = [(int(i), 5.0) for i in rng.choice(liked, size=8, replace=False)]
        if ratings:
            other = [i for i in range(NUM_ITEMS) if i % 2 != u % 2]
            picks += [(int(i), 1.0) for i in rng.choice(other, size=4, replace=False)]
            rng.shuffle(picks)
        rows += [(f"u{u}", 100 + i, r, t) for t, (i, r) in enumerate(picks)]
    frame = pl.DataFrame(rows, schema=["user", "item", "rating", "timestamp"], orient="row")
    return from_frame(frame if ratings else frame.drop("rating"))


def new_history(data: Interactions, histories: dict[str, list[int]], ratings: dict[str, list[float]] | None = None) -> Interactions:
    """Interactions of new users (a new user vocabulary) on ``data``'s item index; items given by index."""
    users = Vocabulary(pl.Series(list(histories)))
    rows = {"user": [], "item": [], "timestamp": []}
    for u, items in enumerate(histories.values()):
        rows["user"] += [u] * len(items)
        rows["item"] += items
        rows["timestamp"] += list(range(len(items)))
    if ratings is not None:
        rows["rating"] = [r for values in ratings.values() for r in values]
    return Interactions(pl.DataFrame(rows), users, data.items, name="new users")


def relabeled(data: Interactions, order: list[int]) -> Interactions:
    """The rows of users ``order`` of ``data`` as NEW users ``n0, n1, ...`` (another user vocabulary)."""
    frame = data.frame.filter(pl.col("user").is_in(order))
    position = {u: k for k, u in enumerate(order)}
    frame = frame.with_columns(pl.col("user").replace_strict(position, return_dtype=pl.Int64))
    users = Vocabulary(pl.Series([f"n{k}" for k in range(len(order))]))
    return Interactions(frame, users, data.items, name="relabeled")


def share_even(scores: Tensor, seen: Interactions, k: int = 5) -> Tensor:
    """Per user, the share of even items among the top ``k`` (seen items removed)."""
    scores = scores.clone().masked_fill(seen.user_item_matrix().to_dense().bool(), float("-inf"))
    return (scores.topk(k, dim=1).indices % 2 == 0).float().mean(1)


# --- models, small and fitted fast --------------------------------------------------------------------
def sasrec(data: Interactions) -> Recommender:
    return SASRec(data.num_items, max_len=6, embedding_dim=8, num_layers=1)


def bert4rec(data: Interactions) -> Recommender:
    return BERT4Rec(data.num_items, max_len=6, embedding_dim=8, num_layers=1)


def gru4rec(data: Interactions) -> Recommender:
    return GRU4Rec(data.num_items, max_len=6, embedding_dim=8, hidden_size=8)


def item2vec(data: Interactions) -> Recommender:
    model = Item2Vec(data.num_items, vector_size=6, last_n=3)
    model.set_vectors(torch.arange(data.num_items), torch.randn(data.num_items, 6, generator=torch.Generator().manual_seed(0)))
    return model


def content(data: Interactions) -> Recommender:
    model = ContentRecommender(data.num_items)
    model.set_item_vectors(torch.randn(data.num_items, 5, generator=torch.Generator().manual_seed(1)))
    return model


def ease(data: Interactions) -> Recommender:
    model = EASE(data.num_items, reg=10.0)
    model.prepare(data)
    return model


def popularity(data: Interactions) -> Recommender:
    model = Popularity(data.num_items)
    model.prepare(data)
    return model


def als(data: Interactions, iterations: int = 2) -> ALS:
    model = ALS(data.num_users, data.num_items, factors=4, iterations=iterations, solver="cholesky", regularization=3.0)
    model.prepare(data, torch.Generator().manual_seed(0))
    return model


def train(model: Recommender, batches, epochs: int, lr: float) -> Recommender:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        for batch in batches:
            optimizer.zero_grad()
            model.loss(batch).backward()
            optimizer.step()
    return model.eval()


READERS = {"sasrec": sasrec, "bert4rec": bert4rec, "gru4rec": gru4rec, "item2vec": item2vec, "content": content, "ease": ease,
           "popularity": popularity}


# --- 0. what each model supports ------------------------------------------------------------------------
SUPPORT = {  # name: (reads_history, overrides score_histories, user_tables, fold_in_batches, user vectors, item_similarity)
    SASRec: (True, False, (), None, False, False),
    BERT4Rec: (True, False, (), None, False, False),
    GRU4Rec: (True, False, (), None, False, False),
    Item2Vec: (True, False, (), None, False, False),
    ContentRecommender: (True, False, (), None, False, False),
    EASE: (True, False, (), None, True, True),
    Popularity: (True, False, (), None, False, False),
    ALS: (False, True, (), None, True, False),
    BPRMF: (False, False, ("user_embedding",), "pairwise", True, False),
    BiasedMF: (False, False, ("user_embedding", "user_bias"), "ratings", True, False),
    NeuMF: (False, False, ("gmf_user", "mlp_user"), "pairwise", True, False),
}


@pytest.mark.parametrize("cls", list(SUPPORT), ids=lambda c: c.__name__)
def test_support_table(cls: type[Recommender]) -> None:
    reads, overrides, tables, batches, user_vectors, similarity = SUPPORT[cls]
    assert cls.reads_history is reads
    assert (cls.score_histories is not Recommender.score_histories) is overrides
    assert cls.user_tables == tables and cls.fold_in_batches == batches
    assert callable(getattr(cls, "user_embeddings", None)) is user_vectors
    assert callable(getattr(cls, "item_similarity", None)) is similarity
    assert callable(getattr(cls, "item_embeddings", None)) is (cls is not Popularity)
    # every model has one way to score a new user
    assert reads or overrides or tables


# --- 1. models that read users only through the history ----------------------------------------------------
# the readers a second model covers (GRU4Rec: SASRec's base class; EASE, content, popularity: seconds each) run in the slow step
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("gru4rec", "ease", "content", "popularity") else n
                                  for n in READERS])
def test_readers_score_new_users_like_the_same_known_users(name: str) -> None:
    data = planted()
    model = READERS[name](data).eval()
    order = [7, 2, 11]
    with torch.no_grad():
        known = model.score_users(torch.tensor(order), data)  # fills any cache keyed by `data`
        for _ in range(2):  # fresh history objects each time: a dead one's id may be reused, its cache must not
            fresh = relabeled(data, order)
            assert fresh.users.ids.to_list() == ["n0", "n1", "n2"]
            torch.testing.assert_close(model.score_histories(fresh), known)
            other = relabeled(data, [3, 4])  # another history of new users, same user indices 0, 1
            torch.testing.assert_close(model.score_histories(other), model.score_users(torch.tensor([3, 4]), data))
            del fresh, other
            gc.collect()
        torch.testing.assert_close(model.score_users(torch.tensor(order), data), known)  # the old cache is not stale


def test_readers_recommend_for_new_users_through_the_wrapper() -> None:
    data = planted()
    for name in ("ease", "item2vec"):
        rec = FittedRecommender(READERS[name](data), data)
        recs = rec.recommend(["new"], N=3, histories={"new": [100, 102, 104]})
        assert recs["user"].to_list() == ["new"] * 3 and not {100, 102, 104} & set(recs["item"])
    ease_recs = FittedRecommender(ease(data), data).recommend(["new"], N=5, histories={"new": [100, 102, 104, 106]})
    assert sum(i % 2 == 0 for i in ease_recs["item"]) >= 4


# --- 2. ALS: exact user solve against the fixed item factors ---------------------------------------------------
def test_als_recalculated_factors_are_the_fixed_point() -> None:
    data = planted()
    model = als(data, iterations=20)
    order = list(range(0, NUM_USERS, 3))
    x, fitted_x = model.recalculate_users(relabeled(data, order)), model.user_factors[order]  # (U, k)
    assert (x - fitted_x).norm() / fitted_x.norm() < 0.01  # one more user half-step barely moves a converged fit
    assert torch.nn.functional.cosine_similarity(x, fitted_x, dim=1).min() > 0.999
    scores = model.score_histories(relabeled(data, order))
    fitted = model.score_users(torch.tensor(order), data)
    top, ref = scores.topk(10, dim=1).indices, fitted.topk(10, dim=1).indices
    overlap = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(top, ref)]
    assert np.mean(overlap) >= 9


def test_als_new_users_through_the_wrapper() -> None:
    data = planted()
    model = ALS(data.num_users, data.num_items, factors=4, iterations=5)  # cg fit; the user solve is exact anyway
    model.prepare(data, torch.Generator().manual_seed(0))
    recs = FittedRecommender(model, data).recommend(["e", "o"], N=5, histories={"e": [100, 102, 104], "o": [101, 103]})
    assert all(i % 2 == 0 for i in recs.filter(pl.col("user") == "e")["item"])
    assert all(i % 2 == 1 for i in recs.filter(pl.col("user") == "o")["item"])
    empty = model.recalculate_users(new_history(data, {"a": [0], "b": []}))
    assert torch.equal(empty[1], torch.zeros(4))  # a user without interactions: zero factors


# --- 3. fold-in of the per-user tables -------------------------------------------------------------------------
EVEN, ODD = [0, 2, 4, 6, 8], [1, 3, 5, 7]


@pytest.fixture(scope="module")
def fitted_pairwise() -> dict[str, tuple[Recommender, Interactions]]:
    data = planted()
    torch.manual_seed(0)
    full = data.num_interactions  # full-batch steps: few and fast
    bpr = train(BPRMF(data.num_users, data.num_items, embedding_dim=8), PairwiseBatches(data, batch_size=full, seed=0), 30, 0.1)
    neumf = train(NeuMF(data.num_users, data.num_items, gmf_dim=8, mlp_dim=8, layers=(16, 8)),
                  PairwiseBatches(data, batch_size=full, num_negatives=4, seed=0), 40, 0.03)
    return {"bpr": (bpr, data), "neumf": (neumf, data)}


@pytest.mark.parametrize("name", ["bpr", "neumf"])
def test_fold_in_pairwise_models_put_new_users_in_their_community(fitted_pairwise, name: str) -> None:
    model, data = fitted_pairwise[name]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = new_history(data, {"even": EVEN, "odd": ODD})
    scores = fold_in_scores(model, history, steps=30, generator=torch.Generator().manual_seed(0))
    assert scores.shape == (2, NUM_ITEMS)
    share = share_even(scores, history)
    assert share[0] >= 0.8 and share[1] <= 0.2, share
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
    # the wrapper folds in, with the options it was given
    rec = FittedRecommender(model, data, fold_in={"steps": 30, "generator": torch.Generator().manual_seed(1)})
    recs = rec.recommend(["new"], N=5, histories={"new": [100 + i for i in EVEN]})
    assert sum(i % 2 == 0 for i in recs["item"]) >= 4


def test_fold_in_biased_mf_on_ratings() -> None:
    data = planted(ratings=True)
    torch.manual_seed(0)
    model = BiasedMF(data.num_users, data.num_items, embedding_dim=8, reg=0.01, init_std=0.1)
    model.prepare(data)
    train(model, RatingBatches(data, batch_size=data.num_interactions, seed=0), 60, 0.05)
    history = new_history(data, {"even": EVEN + [1, 3], "odd": ODD + [0, 2]},
                          ratings={"even": [5.0] * 5 + [1.0] * 2, "odd": [5.0] * 4 + [1.0] * 2})
    scores = fold_in_scores(model, history, steps=50, generator=torch.Generator().manual_seed(0))
    share = share_even(scores, history)
    assert share[0] >= 0.8 and share[1] <= 0.2, share
    with pytest.raises(DataError, match="no ratings"):  # an explicit model needs the ratings of the history
        fold_in_scores(model, new_history(data, {"x": EVEN}), steps=1)


def test_fold_in_is_reproducible_batched_and_sized(fitted_pairwise) -> None:
    model, data = fitted_pairwise["bpr"]
    history = new_history(data, {f"x{k}": (EVEN if k % 2 == 0 else ODD) for k in range(6)})
    a = fold_in_scores(model, history, steps=20, generator=torch.Generator().manual_seed(3))
    b = fold_in_scores(model, history, steps=20, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    folded = fold_in(model, history, steps=0)
    assert folded.user_embedding.num_embeddings == 6 and folded.num_users == 6
    assert torch.equal(folded.item_embedding.weight, model.item_embedding.weight)
    assert not any(p.requires_grad for p in folded.parameters())
    with pytest.raises(ConfigError, match="no per-user tables"):
        fold_in(ease(data), history)


# --- 4. embeddings keyed by the vocabularies' original ids -----------------------------------------------------
def _check(vectors: KeyedVectors, vocab: Vocabulary, rows: Tensor) -> None:
    assert isinstance(vectors, KeyedVectors) and vectors.index_to_key == vocab.ids.to_list()
    assert vectors.table.dtype == torch.float32 and vectors.table.device.type == "cpu" and not vectors.table.requires_grad
    torch.testing.assert_close(vectors.table, rows.detach().float())


def test_item_and_user_embeddings_of_every_model(fitted_pairwise) -> None:
    data = planted()
    items, users = data.items, data.users
    seq = sasrec(data)
    _check(seq.item_embeddings(items), items, seq.item_embedding.weight[1 : NUM_ITEMS + 1])
    bert = bert4rec(data)
    _check(bert.item_embeddings(items), items, bert.item_embedding.weight[1 : NUM_ITEMS + 1])
    i2v = item2vec(data)
    _check(i2v.item_embeddings(items), items, i2v.item_vectors)
    cb = content(data)
    _check(cb.item_embeddings(items), items, cb.item_vectors)
    with pytest.raises(DataError, match="no item vectors"):
        ContentRecommender(NUM_ITEMS).item_embeddings(items)
    ease_model = ease(data)
    _check(ease_model.item_embeddings(items), items, ease_model.weights)
    torch.testing.assert_close(ease_model.item_similarity(torch.tensor([3, 0])), ease_model.weights[[3, 0]])
    als_model = als(data)
    _check(als_model.item_embeddings(items), items, als_model.item_factors)
    _check(als_model.user_embeddings(users), users, als_model.user_factors)
    bpr = fitted_pairwise["bpr"][0]
    _check(bpr.item_embeddings(items), items, bpr.item_embedding.weight)
    _check(bpr.user_embeddings(users), users, bpr.user_embedding.weight)
    neumf = fitted_pairwise["neumf"][0]
    _check(neumf.item_embeddings(items), items, torch.cat([neumf.gmf_item.weight, neumf.mlp_item.weight], 1))
    _check(neumf.user_embeddings(users), users, torch.cat([neumf.gmf_user.weight, neumf.mlp_user.weight], 1))
    mf = BiasedMF(data.num_users, data.num_items, embedding_dim=3)
    _check(mf.item_embeddings(items), items, mf.item_embedding.weight)
    _check(mf.user_embeddings(users), users, mf.user_embedding.weight)


def test_similar_items_and_embeddings_through_the_wrapper(fitted_pairwise) -> None:
    data = planted()
    ease_rec = FittedRecommender(ease(data), data)
    similar = ease_rec.similar_items([100], N=4)  # EASE: its B row, no vectors needed
    row = ease_rec.model.weights[0].clone()
    row[0] = float("-inf")
    assert similar["similar"].to_list() == [100 + int(i) for i in row.topk(4).indices]
    with pytest.raises(ConfigError, match="no user vectors"):
        ease_rec.user_embeddings()
    seq_rec = FittedRecommender(sasrec(data), data)
    assert seq_rec.item_embeddings().table.shape == (NUM_ITEMS, 8) and len(seq_rec.similar_items([101], N=3)) == 3
    with pytest.raises(ConfigError, match="has no item embeddings"):
        FittedRecommender(popularity(data), data).item_embeddings()
    bpr_rec = FittedRecommender(fitted_pairwise["bpr"][0], data)
    assert bpr_rec.user_embeddings().index_to_key[:2] == data.users.ids.to_list()[:2]
    assert sum(i % 2 == 0 for i in bpr_rec.similar_items([100], N=5)["similar"]) >= 4
