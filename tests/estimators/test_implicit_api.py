"""The implicit-compatible facades answer the same calls as ``implicit`` with the same shapes and, on the same factors, the same ids."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.estimators import AlternatingLeastSquares, BayesianPersonalizedRanking, EASERecommender
from recsys.estimators.implicit_api import LOWEST

implicit = pytest.importorskip("implicit")  # a guard only: implicit is a dev dependency
from implicit.als import AlternatingLeastSquares as ImplicitALS  # noqa: E402


@pytest.fixture(scope="module")
def user_items() -> sp.csr_matrix:
    matrix = sp.random(40, 30, density=0.2, format="csr", random_state=np.random.default_rng(0), dtype=np.float32)
    matrix.data[:] = 1.0
    return matrix


@pytest.fixture(scope="module")
def planted() -> sp.csr_matrix:
    """Two communities: users 0..19 like items 0..9, users 20..39 items 10..19 (each about half of them)."""
    rng = np.random.default_rng(1)
    dense = np.zeros((40, 20), dtype=np.float32)
    dense[:20, :10] = rng.random((20, 10)) < 0.5
    dense[20:, 10:] = rng.random((20, 10)) < 0.5
    return sp.csr_matrix(dense)


@pytest.fixture(scope="module")
def theirs(user_items):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ImplicitALS(factors=8, iterations=3, random_state=0, num_threads=1)
        model.fit(user_items, show_progress=False)
    return model


@pytest.fixture(scope="module")
def ours(theirs):
    model = AlternatingLeastSquares(factors=8, device="cpu")
    model.user_factors, model.item_factors = theirs.user_factors, theirs.item_factors
    return model


def _same_ranked(a: tuple, b: tuple) -> None:
    """Equal ids where scores are real (filtered ties at the lowest float may come in any order), equal scores."""
    (ids_a, scores_a), (ids_b, scores_b) = a, b
    assert ids_a.shape == ids_b.shape and scores_a.shape == scores_b.shape
    real = scores_a > LOWEST / 1e3
    np.testing.assert_array_equal(real, scores_b > LOWEST / 1e3)
    np.testing.assert_array_equal(ids_a[real], ids_b[real])
    np.testing.assert_allclose(scores_a[real], scores_b[real], rtol=1e-4, atol=1e-5)


CALLS = [
    {"N": 5},
    {"N": 50},  # more than the catalogue: filtered items at the lowest float, then (0, 0.0) padding
    {"N": 5, "filter_items": [0, 3, 7]},
    {"N": 4, "items": [1, 5, 9, 12, 20, 29]},
    {"N": 5, "filter_already_liked_items": False},
]


@pytest.mark.parametrize("kwargs", CALLS)
def test_recommend_matches_implicit_on_its_factors(theirs, ours, user_items, kwargs):
    users = np.arange(user_items.shape[0])  # implicit gets copies: its items= path zeroes entries of user_items in place
    _same_ranked(theirs.recommend(users, user_items.copy(), **kwargs), ours.recommend(users, user_items, **kwargs))
    _same_ranked(theirs.recommend(3, user_items[3], **kwargs), ours.recommend(3, user_items[3], **kwargs))
    ids, _ = ours.recommend(3, user_items[3], **kwargs)
    assert ids.ndim == 1


def test_recommend_filters(ours, user_items):
    users = np.arange(user_items.shape[0])
    ids, scores = ours.recommend(users, user_items, N=10, filter_items=[2, 4])
    real = scores > LOWEST
    liked = user_items.toarray().astype(bool)
    assert not liked[np.repeat(users[:, None], 10, 1)[real], ids[real]].any()
    assert not np.isin(ids[real], [2, 4]).any()
    ids, scores = ours.recommend(users, user_items, N=3, items=[1, 5, 9, 12])
    assert np.isin(ids, [1, 5, 9, 12]).all()
    with pytest.raises(ValueError, match="1 row for every user"):
        ours.recommend(users, user_items[:3])


def test_similar_items_and_users_match_implicit(theirs, ours):
    for kwargs in ({"N": 5}, {"N": 40}, {"N": 5, "filter_items": [1]}, {"N": 3, "items": [3, 4, 5, 6]}):
        _same_ranked(theirs.similar_items(np.arange(30), **kwargs), ours.similar_items(np.arange(30), **kwargs))
    ids, _ = ours.similar_items(7, N=4)
    assert ids.shape == (4,) and ids[0] == 7  # the item itself first, as implicit
    _same_ranked(theirs.similar_users(np.arange(40), N=5), ours.similar_users(np.arange(40), N=5))


def test_recalculate_user_matches_implicit_exact_solver(user_items):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ImplicitALS(factors=6, iterations=2, use_cg=False, random_state=0, num_threads=1)
        theirs.fit(user_items, show_progress=False)
    ours = AlternatingLeastSquares(factors=6, device="cpu")
    ours.user_factors, ours.item_factors = theirs.user_factors, theirs.item_factors
    users = np.arange(10)
    np.testing.assert_allclose(ours.recalculate_user(users, user_items[:10]), theirs.recalculate_user(users, user_items[:10]),
                               atol=1e-5)
    _same_ranked(theirs.recommend(users, user_items[:10], N=5, recalculate_user=True),
                 ours.recommend(users, user_items[:10], N=5, recalculate_user=True))


@pytest.mark.parametrize("make", [
    lambda: AlternatingLeastSquares(factors=4, iterations=5, regularization=0.1, alpha=5.0, random_state=0, device="cpu"),
    lambda: BayesianPersonalizedRanking(factors=4, iterations=40, learning_rate=0.1, workers=1, random_state=0, device="cpu"),
    lambda: EASERecommender(regularization=5.0, device="cpu"),
], ids=["als", "bpr", "ease"])
def test_facades_fit_planted_communities_and_round_trip(make, planted, tmp_path):
    model = make().fit(planted, show_progress=False)
    users = np.arange(40)
    ids, scores = model.recommend(users, planted, N=3)
    assert ids.shape == scores.shape == (40, 3)
    community = np.where(users < 20, 0, 1)[:, None]
    assert ((ids >= 10).astype(int) == community).mean() > 0.8  # recommends inside the user's community
    similar, _ = model.similar_items(np.arange(20), N=2)
    assert similar.shape == (20, 2)
    path = model.save(tmp_path / "model")
    assert path.suffix == ".npz"
    with np.load(path, allow_pickle=False) as data:  # no pickle inside
        assert "meta" in data.files
    loaded = type(model).load(tmp_path / "model")
    for a, b in zip(loaded.recommend(users, planted, N=3), (ids, scores)):
        np.testing.assert_array_equal(a, b)


def test_bpr_factors_follow_implicit_layout(planted):
    bpr = BayesianPersonalizedRanking(factors=3, iterations=2, workers=1, device="cpu").fit(planted)
    assert bpr.user_factors.shape == (40, 4) and bpr.item_factors.shape == (20, 4)
    np.testing.assert_array_equal(bpr.user_factors[:, -1], 1.0)  # user's last column ones, item's the bias
    scores = bpr.user_factors[:2] @ bpr.item_factors.T
    ids, top = bpr.recommend(np.arange(2), planted[:2], N=3, filter_already_liked_items=False)
    np.testing.assert_allclose(top, np.sort(scores, 1)[:, ::-1][:, :3], rtol=1e-5)


def test_bpr_keeps_its_interactions_api():
    import pandas as pd

    from recsys.data.frame import from_frame

    data = from_frame(pd.DataFrame({"user": [0, 0, 1, 1, 2, 2], "item": [0, 1, 1, 2, 2, 0]}))
    bpr = BayesianPersonalizedRanking(factors=4, iterations=2, workers=1, device="cpu").fit(data)
    assert bpr.model_.score_users(__import__("torch").tensor([0, 1]), history=None).shape == (2, 3)


def test_unfitted_and_bad_input_raise_clearly(user_items):
    from recsys.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match="not fitted"):
        AlternatingLeastSquares().recommend(0, user_items[0])
    with pytest.raises(DataError, match="CSR"):
        AlternatingLeastSquares(device="cpu").fit(np.ones((3, 3)))
