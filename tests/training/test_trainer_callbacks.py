"""Trainer callbacks: called with every evaluation row; True stops training as early stopping does."""

from __future__ import annotations

import functools

import torch

from recsys.training import Trainer
from tests.training.training_toys import LinearToy, Popularity, ToyBatches

ADAM = functools.partial(torch.optim.Adam, lr=0.05)


def test_a_callback_sees_every_evaluation_and_stops_training_keeping_the_best_weights() -> None:
    torch.manual_seed(0)
    values = iter([0.1, 0.3, 0.2, 0.9, 0.9])
    rows: list[dict[str, float]] = []
    seen: list[dict[str, float]] = []

    def stop_after_third(row: dict[str, float]) -> bool:
        rows.append(row)
        return row["epoch"] >= 3

    result = Trainer(epochs=5, device="cpu", progress=False, patience=None).fit(
        LinearToy(), ToyBatches(), ADAM, validate=lambda m: {"ndcg@10": next(values)},
        callbacks=[stop_after_third, lambda row: seen.append(row)])  # a None answer never stops
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows == seen
    assert {"epoch", "loss", "seconds", "ndcg@10"} <= set(rows[0])
    assert result.stopped_early and len(result.history) == 3
    assert result.best_epoch == 2 and result.best_metrics["ndcg@10"] == 0.3


def test_callbacks_follow_eval_every_and_a_model_without_epochs_gets_one_call() -> None:
    torch.manual_seed(0)
    epochs: list[int] = []
    Trainer(epochs=4, eval_every=2, device="cpu", progress=False).fit(
        LinearToy(), ToyBatches(), ADAM, validate=lambda m: {"ndcg@10": 0.5}, callbacks=[lambda r: epochs.append(r["epoch"])])
    assert epochs == [2, 4]
    rows: list[dict[str, float]] = []
    result = Trainer(device="cpu", progress=False).fit(Popularity(), None, None, validate=lambda m: {"ndcg@10": 0.4},
                                                      callbacks=[lambda r: rows.append(r) or True])
    assert rows == [{"epoch": 0, "seconds": 0.0, "ndcg@10": 0.4}] and not result.stopped_early
