"""CTREvaluator: metrics equal scikit-learn's; targets encoded and labelled by the model's train-fitted pipeline."""

from __future__ import annotations

import polars as pl
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from recsys.data.features import CategoricalFeature, FeaturePipeline
from recsys.data.frame import from_frame
from recsys.errors import ConfigError
from recsys.evaluation.ctr import CTREvaluator
from recsys.models.bpr import BPRMF
from recsys.models.logistic import LogisticRegression


def test_metrics_match_scikit_learn() -> None:
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(200, generator=gen), (torch.rand(200, generator=gen) < 0.4).float()
    got = CTREvaluator.metrics(logits, labels)
    assert got["auc"] == pytest.approx(roc_auc_score(labels, logits))
    assert got["logloss"] == pytest.approx(log_loss(labels, torch.sigmoid(logits.double())))


def test_evaluate_model_labels_by_threshold_and_uses_train_vocabularies() -> None:
    frame = pl.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 2, 1], "rating": [5.0, 1.0, 4.0, 2.0, 5.0]})
    data = from_frame(frame)
    train = data.with_frame(data.frame.filter(pl.col("user") < 2))  # users 0, 1 (ids 1, 2) only
    features = FeaturePipeline([CategoricalFeature("item")], label_threshold=4.0).fit(train)
    model = LogisticRegression(features)
    with torch.no_grad():  # item 0 (rated high) gets +1, item 1 -1
        model.embeddings.field_weight("item")[:, 0] = torch.tensor([1.0, -1.0, 0.0])
    result = CTREvaluator().evaluate_model(model, train, data)
    assert result["auc"] == 1.0
    expected = log_loss([1, 0, 1, 0, 1], torch.sigmoid(torch.tensor([1.0, -1, 1, -1, 1])).numpy())
    assert result["logloss"] == pytest.approx(expected, rel=1e-5)
    features.label_threshold = 5.0  # the one threshold: the evaluator reads it from the shared pipeline
    expected = log_loss([1, 0, 0, 0, 1], torch.sigmoid(torch.tensor([1.0, -1, 1, -1, 1])).numpy())
    assert CTREvaluator().evaluate_model(model, train, data)["logloss"] == pytest.approx(expected, rel=1e-5)


def test_a_model_without_features_is_refused() -> None:
    with pytest.raises(ConfigError, match="feature pipeline"):
        CTREvaluator().evaluate_model(BPRMF(2, 2), None, None)
