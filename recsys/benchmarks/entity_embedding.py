"""Benchmark: categorical encoders in front of ``HistGradientBoostingClassifier`` on ml-100k (label rating >= 4).

Columns: user, item, gender, occupation, zip prefix (categorical, encoded by the encoder under test), age
and 19 genre flags (numeric, passed through). Encoders: ``EntityEmbeddingEncoder`` (ours, with the learned
per-category logit column; fit on all training rows as by default, and cross-fitted with ``cv=5``), ``OneHotEncoder``
(``min_frequency=10``, infrequent bucket), ``OrdinalEncoder`` (codes as numbers, and with at most 255 categories
per column through HGB's native categorical support) and ``TargetEncoder`` (cross-fitted). Same seeded 80/10/10 split as the CTR tasks; the encoders
and HGB are fit on train, test AUC reported (mean over ``--seeds``). ``recsys bench entity_embedding``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, TargetEncoder

from recsys.benchmarks.table import format_table

SHARED = Path(os.environ.get("RECSYS_SHARED_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
CATEGORICAL = ["user", "item", "gender", "occupation", "zip"]


def ml100k_frames(root: Path, seed: int) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    """Train and test frames (categoricals as strings, age and genre flags numeric) and 0/1 labels."""
    import polars as pl

    from recsys.data.fields import ctr_frame, ctr_labels
    from recsys.data.load import load_dataset
    from recsys.data.splits import random_split

    data = load_dataset("ml-100k", root=str(root / "ml-100k"))
    split = random_split(data, (0.8, 0.1, 0.1), seed=seed)
    genres = sorted(data.item_features["genres"].explode().drop_nulls().unique().to_list())

    def frame(part) -> tuple[pd.DataFrame, np.ndarray]:  # noqa: ANN001
        f = ctr_frame(part)
        f = f.select(
            *(pl.col(c).cast(pl.String) for c in ("user", "item", "gender", "occupation")),
            pl.col("zip").str.slice(0, 3), pl.col("age").cast(pl.Float64),
            *(pl.col("genres").list.contains(g).cast(pl.Float64).alias(f"g_{g}") for g in genres),
        )
        return f.to_pandas(), ctr_labels(part, 4.0).numpy()

    return *frame(split.train), *frame(split.test)


def encoders(seed: int, epochs: int) -> dict[str, tuple[object, bool]]:
    """name -> (encoder for the categorical columns, whether HGB treats its output as categorical)."""
    from recsys.estimators.entity_embedding import EntityEmbeddingEncoder

    ours = dict(epochs=epochs, batch_size=1024, learning_rate=3e-3, weight_decay=1e-5, logit_columns=True, random_state=seed)
    return {
        "EntityEmbeddingEncoder (ours, defaults: + logit column, cv=None)": (EntityEmbeddingEncoder(**ours, cv=None), False),
        "EntityEmbeddingEncoder (ours, + logit column, cross-fitted cv=5)": (EntityEmbeddingEncoder(**ours, cv=5), False),
        "OneHotEncoder": (OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10, sparse_output=False), False),
        "OrdinalEncoder": (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), False),
        "OrdinalEncoder (max 255, HGB native categorical)": (
            OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, max_categories=255), True),
        "TargetEncoder": (TargetEncoder(random_state=seed), False),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys bench entity_embedding", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(SHARED), help="folder holding ml-100k/")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=5, help="entity-embedding network epochs")
    parser.add_argument("--max-iter", type=int, default=300, help="HGB boosting iterations (early stopping on)")
    parser.add_argument("--exclude", default="", help="comma-separated substrings: skip encoders whose name holds one")
    ns = parser.parse_args(argv)
    excluded = [e for e in ns.exclude.split(",") if e]
    seeds = [int(s) for s in ns.seeds.split(",")]
    results: dict[str, list[tuple[float, float]]] = {}
    for seed in seeds:
        X_train, y_train, X_test, y_test = ml100k_frames(Path(ns.root), seed)
        for name, (encoder, native) in encoders(seed, ns.epochs).items():
            if any(e in name for e in excluded):
                continue
            started = time.perf_counter()
            columns = ColumnTransformer([("cat", encoder, CATEGORICAL)], remainder="passthrough", verbose_feature_names_out=False)
            hgb = HistGradientBoostingClassifier(max_iter=ns.max_iter, early_stopping=True, random_state=seed,
                                                 categorical_features=list(range(len(CATEGORICAL))) if native else None)
            model = Pipeline([("encode", columns), ("hgb", hgb)]).fit(X_train, y_train)
            auc = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
            results.setdefault(name, []).append((auc, time.perf_counter() - started))
            print(f"seed {seed}: {name}: test AUC {auc:.4f} ({results[name][-1][1]:.1f} s)", flush=True)
    rows = [{"encoder": name, "test AUC": float(np.mean([a for a, _ in runs])), "fit + predict s": float(np.mean([s for _, s in runs]))}
            for name, runs in results.items()]
    best = max(r["test AUC"] for r in rows)
    for row in rows:
        row["AUC - best"] = row["test AUC"] - best
    print(f"\nHistGradientBoostingClassifier on ml-100k, label rating >= 4 (80/10/10 split, test part; categorical: "
          f"{', '.join(CATEGORICAL)} (zip prefix 3); passthrough: age, 19 genre flags; seeds {seeds})\n")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
