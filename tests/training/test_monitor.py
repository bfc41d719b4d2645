"""trainer.monitor as a weighted sum of metrics, min_delta, and epochs=None (train until patience stops it)."""

from __future__ import annotations

import functools

import pytest
import torch

from recsys.errors import ConfigError
from recsys.training import Trainer
from recsys.training.monitor import Monitor
from tests.training.training_toys import LinearToy, ToyBatches

ADAM = functools.partial(torch.optim.Adam, lr=0.01)


def scripted(rows):
    """A validate function returning the given metric rows, one per call."""
    it = iter(rows)
    return lambda model: dict(next(it))


def fit(rows, **kwargs):
    torch.manual_seed(0)
    trainer = Trainer(device="cpu", progress=False, tensorboard=False, **kwargs)
    return trainer.fit(LinearToy(), ToyBatches(num_batches=2), ADAM, validate=scripted(rows))


@pytest.mark.parametrize(
    ("text", "terms"),
    [("auc", ((1.0, "auc"),)), ("auc-logloss", ((1.0, "auc"), (-1.0, "logloss"))),
     (" auc - 2*logloss ", ((1.0, "auc"), (-2.0, "logloss"))), ("0.5*recall@20 + ndcg@10", ((0.5, "recall@20"), (1.0, "ndcg@10"))),
     ("hr@10[sampled-100]", ((1.0, "hr@10[sampled-100]"),))],
)
def test_monitor_parses_names_and_weighted_sums(text: str, terms: tuple) -> None:
    assert Monitor.parse(text).terms == terms


@pytest.mark.parametrize("text", ["", "auc logloss", "auc -", "2*", "auc*2"])
def test_monitor_refuses_what_is_not_a_sum(text: str) -> None:
    with pytest.raises(ConfigError, match="weighted sum"):
        Trainer(monitor=text)


def test_a_combined_monitor_picks_the_epoch_by_the_sum_and_logs_it() -> None:
    # AUC creeps up while log-loss is best at epoch 2: auc - logloss picks epoch 2, auc alone epoch 4
    rows = [{"auc": 0.70, "logloss": 0.60}, {"auc": 0.75, "logloss": 0.50}, {"auc": 0.76, "logloss": 0.58},
            {"auc": 0.77, "logloss": 0.70}]
    by_sum = fit(rows, epochs=4, monitor="auc-logloss", patience=None)
    by_auc = fit(rows, epochs=4, monitor="auc", patience=None)
    assert (by_sum.best_epoch, by_auc.best_epoch) == (2, 4)
    assert by_sum.best_metrics["auc"] == 0.75 and by_sum.best_metrics["logloss"] == 0.50
    assert by_sum.history[0]["auc-logloss"] == pytest.approx(0.10)
    by_logloss = fit(rows, epochs=4, monitor="logloss", mode="min", patience=None)
    assert by_logloss.best_epoch == 2


def test_epochs_none_trains_until_patience_stops_it() -> None:
    rows = [{"auc": a} for a in (0.5, 0.6, 0.7, 0.8, 0.9, 0.91, 0.91, 0.90, 0.905)] + [{"auc": 0.0}] * 100
    result = fit(rows, epochs=None, monitor="auc", patience=3)
    assert result.best_epoch == 6 and len(result.history) == 9 and result.stopped_early


def test_min_delta_ignores_improvements_below_it() -> None:
    rows = [{"auc": a} for a in (0.80, 0.8005, 0.801, 0.9)]
    assert fit(rows, epochs=4, monitor="auc", patience=None, min_delta=0.001).best_epoch == 4
    assert fit(rows, epochs=3, monitor="auc", patience=None, min_delta=0.001).best_epoch == 1
    assert fit(rows, epochs=3, monitor="auc", patience=None).best_epoch == 3


def test_epochs_none_needs_validation_and_a_patience() -> None:
    with pytest.raises(ConfigError, match="trainer.epochs"):
        Trainer(epochs=None, patience=None)
    trainer = Trainer(epochs=None, device="cpu", progress=False, tensorboard=False)
    with pytest.raises(ConfigError, match="no validation"):
        trainer.fit(LinearToy(), ToyBatches(num_batches=1), ADAM)

