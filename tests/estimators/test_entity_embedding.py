"""EntityEmbeddingEncoder: scikit-learn conformance, pipelines, polars/pandas input, OOV, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from recsys.errors import DataError
from recsys.estimators.entity_embedding import EntityEmbeddingEncoder

# With the defaults (cv=None: no cross fitting; logit columns) every check that applies passes; none is excluded (check_array_api_input skips
# itself without SCIPY_ARRAY_API). With cross fitting, fit_transform != fit().transform by design (as for
# sklearn's TargetEncoder), so only the checks comparing the two are expected to fail.
CROSS_FIT_DIFFERS = "fit_transform cross-fits: it returns out-of-fold vectors, not fit(X, y).transform(X)"


def expected_failures(estimator: EntityEmbeddingEncoder) -> dict[str, str]:
    if estimator.cv is None:
        return {}
    return {name: CROSS_FIT_DIFFERS for name in ("check_transformer_general", "check_transformer_data_not_an_array")}


@parametrize_with_checks([EntityEmbeddingEncoder(epochs=2), EntityEmbeddingEncoder(epochs=2, cv=3, logit_columns=False)],
                         expected_failed_checks=expected_failures)
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)


def planted(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """y depends on the category of 'shop' (half the shops click) and not at all on 'noise'."""
    rng = np.random.default_rng(seed)
    shop = rng.integers(0, 30, n)
    X = pd.DataFrame({"shop": [f"s{s}" for s in shop], "noise": rng.integers(0, 5, n), "amount": rng.normal(size=n)})
    y = ((shop % 2 == 0) ^ (rng.random(n) < 0.1)).astype(int)
    return X, y


def test_defaults_are_the_best_setting_of_the_bench_no_cross_fitting_with_logit_columns() -> None:
    X, y = planted(200)
    enc = EntityEmbeddingEncoder(epochs=2, random_state=0)
    assert enc.cv is None and enc.logit_columns is True
    out = enc.fit_transform(X[["shop"]], y)
    assert np.allclose(out, enc.transform(X[["shop"]]))  # no cross fitting
    assert list(enc.get_feature_names_out())[-1] == "shop_logit0" and out.shape == (200, enc.embedding_dims_[0] + 1)


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_learned_embeddings_separate_the_planted_groups_in_a_cross_validated_pipeline() -> None:
    X, y = planted()
    model = Pipeline([
        ("encode", ColumnTransformer([("emb", EntityEmbeddingEncoder(epochs=20, batch_size=64, random_state=0), ["shop", "noise"])],
                                     remainder="passthrough")),
        ("clf", LogisticRegression(max_iter=500)),
    ])
    scores = cross_val_score(model, X, y, cv=3, scoring="roc_auc")
    assert scores.mean() > 0.85  # the label noise caps it at about 0.9


def test_polars_and_pandas_input_give_the_same_output_and_set_output_pandas() -> None:
    X, y = planted(200)
    X = X[["shop", "noise"]]
    a = EntityEmbeddingEncoder(epochs=2, logit_columns=False, random_state=0).fit(X, y)
    b = EntityEmbeddingEncoder(epochs=2, logit_columns=False, random_state=0).fit(pl.from_pandas(X), y)
    assert np.allclose(a.transform(X), b.transform(pl.from_pandas(X)))
    out = a.set_output(transform="pandas").transform(X)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(a.get_feature_names_out())
    assert list(out.columns)[:2] == ["shop_emb0", "shop_emb1"] and out.shape[1] == sum(a.embedding_dims_)


def test_unseen_missing_and_rare_categories_share_the_oov_row() -> None:
    X = pd.DataFrame({"c": ["a", "a", "b", "b", "r", None] * 10})
    enc = EntityEmbeddingEncoder(epochs=1, min_frequency=11, random_state=0).fit(X, [0, 1] * 30)
    out = enc.transform(pd.DataFrame({"c": ["zzz", None, "r", "a"]}))
    assert np.allclose(out[0], out[1]) and np.allclose(out[0], out[2]) and not np.allclose(out[0], out[3])
    assert list(enc.categories_[0]) == ["a", "b"]


def test_grid_search_clones_and_regression_targets_work() -> None:
    X, y = planted(300)
    search = GridSearchCV(Pipeline([("enc", EntityEmbeddingEncoder(epochs=2, random_state=0)), ("clf", LogisticRegression())]),
                          {"enc__embedding_dim": [2, 4]}, cv=2).fit(X[["shop"]], y)
    assert search.best_params_["enc__embedding_dim"] in (2, 4)
    assert clone(EntityEmbeddingEncoder(hidden_dims=(8,))).get_params()["hidden_dims"] == (8,)
    reg = EntityEmbeddingEncoder(epochs=2, logit_columns=False, random_state=0).fit(X[["shop"]], y * 3.5 + 0.1)
    assert reg.transform(X[["shop"]]).shape == (300, 10)


@pytest.mark.parametrize(
    ("fit_X", "transform_X", "message"),
    [
        (pd.DataFrame({"a": ["x", "y"] * 5, "b": [1, 2] * 5}), pd.DataFrame({"a": ["x"]}), "missing column"),
        (pd.DataFrame({"a": pd.to_datetime(["2020-01-01"] * 10)}), None, "dtype datetime64"),
        (pd.DataFrame({"a": [np.nan] * 10}), None, "only missing values"),
        (pd.DataFrame({"a": pd.Series([], dtype=object)}), None, "empty input"),
        (pd.DataFrame({"a": ["x", 1] * 5}), None, "mixes strings"),
        (pd.DataFrame({"a": ["x", "y"] * 5}), pd.DataFrame({"a": [1, 2]}), "held strings at fit"),
    ],
    ids=["missing-column", "wrong-dtype", "all-nan", "empty-frame", "mixed-types", "dtype-changed"],
)
def test_bad_input_gives_clear_errors(fit_X: pd.DataFrame, transform_X: pd.DataFrame | None, message: str) -> None:
    y = [0, 1] * (len(fit_X) // 2)
    with pytest.raises(DataError, match=message):
        enc = EntityEmbeddingEncoder(epochs=1).fit(fit_X, y)
        enc.transform(transform_X)


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_fit_transform_cross_fits_and_transform_uses_the_model_fit_on_all_rows() -> None:
    # one category per row and a random target: a model fit on all rows memorizes y, the cross-fitted encoding cannot
    rng = np.random.default_rng(0)
    X, y = pd.DataFrame({"id": [f"r{i}" for i in range(300)]}), rng.integers(0, 2, 300)
    params = dict(embedding_dim=2, epochs=30, batch_size=32, learning_rate=0.05, logit_columns=True, random_state=0)
    full = EntityEmbeddingEncoder(**params, cv=None).fit(X, y)
    assert list(full.get_feature_names_out()) == ["id_emb0", "id_emb1", "id_logit0"]
    assert np.allclose(full.transform(X), EntityEmbeddingEncoder(**params, cv=None).fit_transform(X, y))
    leaked = full.transform(X)[:, 2]
    assert roc_auc_score(y, leaked) > 0.9  # memorized
    crossed = EntityEmbeddingEncoder(**params, cv=3)
    out = crossed.fit_transform(X, y)
    assert out.shape == (300, 3)
    # every held-out id is unseen by its fold's model -> that model's OOV row, untrained here (dropout=0): the
    # shared seeded init, with the zero-initialized logit; no row carries its own target
    assert len(np.unique(out.round(6), axis=0)) == 1 and np.allclose(out[:, 2], 0.0)
    assert np.allclose(crossed.transform(X), full.transform(X))  # transform uses the network fit on all rows
