"""K-fold cross-validated RMSE/MAE of biased MF on explicit ratings (Surprise's ``cross_validate`` protocol).

``python -m recsys.benchmarks.cross_validation --root ../shared/datasets`` prints one row per fold and the mean.
"""

from __future__ import annotations

import argparse
import functools
import logging
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch

from recsys.benchmarks.table import format_table
from recsys.data.pointwise_batches import RatingBatches
from recsys.data.splits import Split
from recsys.evaluation.rating import RatingEvaluator
from recsys.models.biased_mf import BiasedMF
from recsys.pipeline import run_pipeline
from recsys.training import Trainer

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions

log = logging.getLogger(__name__)

DEFAULTS = {"embedding_dim": 128, "reg": 0.1, "bias_reg": 0.0, "lr": 0.001, "weight_decay": 0.0,
            "batch_size": 256, "epochs": 20}


def kfold(data: Interactions, folds: int = 5, seed: int = 0) -> list[tuple[Interactions, Interactions]]:
    """``folds`` (train, test) pairs from one seeded random permutation of the rows (each row tested once)."""
    order = torch.randperm(data.num_interactions, generator=torch.Generator().manual_seed(seed)).numpy()
    fold_of = np.empty(data.num_interactions, dtype=np.int64)
    fold_of[order] = np.arange(data.num_interactions) % folds
    mask = pl.Series("fold", fold_of)
    return [
        (data.with_frame(data.frame.filter(mask != f), assume_sorted=True),
         data.with_frame(data.frame.filter(mask == f), assume_sorted=True))
        for f in range(folds)
    ]


def fold_split(train: Interactions, test: Interactions) -> Split:
    """One fold as a :class:`Split` with an empty validation part: fitting on train + valid is fitting on the fold's train."""
    return Split(train, train.with_frame(train.frame.clear(), assume_sorted=True), test)


def cross_validate(data: Interactions, folds: int = 5, seed: int = 0, **params: float) -> list[dict[str, float]]:
    """One row per fold: rmse, mae, seconds (fit and evaluation), each fold one :func:`recsys.pipeline.run_pipeline` run.

    Biased MF is trained with Adam for a fixed number of epochs, seeded ``seed + fold``, with no peeking at the test fold.
    """
    params = {**DEFAULTS, **params}
    lr, weight_decay, batch_size, epochs = (params.pop(k) for k in ("lr", "weight_decay", "batch_size", "epochs"))
    trainer = Trainer(epochs=int(epochs), device="cpu", monitor="rmse", mode="min", progress=False, patience=None, tensorboard=False)
    rows = []
    for index, (train, test) in enumerate(kfold(data, folds, seed)):
        result = run_pipeline(
            data, functools.partial(BiasedMF, **params), split=fold_split(train, test),
            batches=functools.partial(RatingBatches, batch_size=int(batch_size), seed=seed + index),
            optimizer=functools.partial(torch.optim.Adam, lr=lr, weight_decay=weight_decay),
            trainer=trainer, evaluator=RatingEvaluator(), seed=seed + index, fit_on="train+valid",
        )
        rows.append({"fold": index + 1, **result.test, "seconds": result.total_seconds})
        log.info("fold %d: %s", index + 1, rows[-1])
    return rows


def main(argv: list[str] | None = None) -> int:
    from recsys.data.load import load_dataset

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--root", default=None, help="folder holding <dataset>/ (default: download)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    data = load_dataset(args.dataset, root=args.root)
    params = {key: getattr(args, key) for key in DEFAULTS}
    rows = cross_validate(data, args.folds, args.seed, **params)
    mean = {"fold": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in ("rmse", "mae", "seconds")}}
    print(f"{args.folds}-fold CV of BiasedMF on {args.dataset} ({data.num_interactions} ratings); {params}")
    print(format_table([*rows, mean]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
