"""K-fold cross-validated RMSE/MAE of biased MF on explicit ratings (Surprise's ``cross_validate`` protocol).

``python -m recsys.benchmarks.cross_validation --root ../shared/datasets`` prints one row per fold and the mean.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch

from recsys.benchmarks.table import format_table
from recsys.data.pointwise_batches import RatingBatches
from recsys.evaluation.rating import RatingEvaluator
from recsys.models.biased_mf import BiasedMF
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


def fit_biased_mf(train: Interactions, *, embedding_dim: int, reg: float, bias_reg: float, lr: float,
                  weight_decay: float, batch_size: int, epochs: int, seed: int = 0) -> BiasedMF:
    """Biased MF trained with Adam for a fixed number of epochs (no peeking at the test fold)."""
    torch.manual_seed(seed)
    model = BiasedMF(train.num_users, train.num_items, embedding_dim=embedding_dim, reg=reg, bias_reg=bias_reg)
    model.prepare(train)
    batches = RatingBatches(train, batch_size=batch_size, seed=seed)
    trainer = Trainer(epochs=epochs, device="cpu", progress=False, patience=None, tensorboard=False)
    trainer.fit(model, batches, functools.partial(torch.optim.Adam, lr=lr, weight_decay=weight_decay))
    return model


def cross_validate(data: Interactions, folds: int = 5, seed: int = 0, **params: float) -> list[dict[str, float]]:
    """One row per fold: rmse, mae, seconds."""
    params = {**DEFAULTS, **params}
    rows = []
    for index, (train, test) in enumerate(kfold(data, folds, seed)):
        started = time.perf_counter()
        model = fit_biased_mf(train, seed=seed + index, **params)
        metrics = RatingEvaluator().evaluate_model(model, train, test)
        rows.append({"fold": index + 1, **metrics, "seconds": time.perf_counter() - started})
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
