"""recsys: embeddings for recommender systems in PyTorch.

The front door: ``import recsys`` gives the main surface (datasets, splits, models, the Trainer,
evaluators, estimators, the pipeline and saved runs). Names are imported on first use, so
``import recsys`` itself stays cheap.

>>> import recsys
>>> data = recsys.load_dataset("ml-latest-small")
>>> split = recsys.leave_one_out(data)
>>> split.train.num_users == data.num_users
True
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SURFACE = {
    # data
    "Interactions": "recsys.data", "Vocabulary": "recsys.data", "Split": "recsys.data",
    "load_dataset": "recsys.data", "from_frame": "recsys.data", "load_sequence_file": "recsys.data",
    "read_libsvm": "recsys.data", "load_ctr_files": "recsys.data", "CTRTable": "recsys.data",
    "file_split": "recsys.data", "field_features": "recsys.data", "leave_one_out": "recsys.data", "random_split": "recsys.data",
    "temporal_split": "recsys.data", "k_core": "recsys.data", "binarize": "recsys.data", "deduplicate": "recsys.data",
    "PairwiseBatches": "recsys.data", "NextItemBatches": "recsys.data", "ClozeBatches": "recsys.data",
    "RatingBatches": "recsys.data", "CTRBatches": "recsys.data", "FeaturePipeline": "recsys.data",
    "CategoricalFeature": "recsys.data", "MultiCategoricalFeature": "recsys.data", "NumericFeature": "recsys.data",
    "ctr_frame": "recsys.data", "PADDING_INDEX": "recsys.data", "ITEM_SHIFT": "recsys.data",
    # models
    "Recommender": "recsys.models", "Popularity": "recsys.models", "BPRMF": "recsys.models", "BiasedMF": "recsys.models",
    "NeuMF": "recsys.models", "ALS": "recsys.models", "EASE": "recsys.models", "Item2Vec": "recsys.models",
    "ContentRecommender": "recsys.models", "SASRec": "recsys.models", "BERT4Rec": "recsys.models", "GRU4Rec": "recsys.models",
    "LogisticRegression": "recsys.models", "FM": "recsys.models", "DeepFM": "recsys.models", "DIN": "recsys.models",
    # training and evaluation
    "Trainer": "recsys.training", "resolve_device": "recsys.runtime",
    "RankingEvaluator": "recsys.evaluation", "RatingEvaluator": "recsys.evaluation", "CTREvaluator": "recsys.evaluation",
    "cold_start_split": "recsys.evaluation", "evaluate_cold_start": "recsys.evaluation", "ColdStartSplit": "recsys.evaluation",
    # fitting engines that are not gradient epochs (run_pipeline(engine=...))
    "SGNSEngine": "recsys.training", "BPRHogwild": "recsys.training", "ItemTextEngine": "recsys.training.text_vectors",
    # estimators
    "Word2Vec": "recsys.estimators", "KeyedVectors": "recsys.embeddings",
    "BayesianPersonalizedRanking": "recsys.estimators", "EntityEmbeddingEncoder": "recsys.estimators",
    # the pipeline and saved runs
    "run_pipeline": "recsys.pipeline", "RunResult": "recsys.pipeline",
    "load_run": "recsys.runs", "save_run": "recsys.runs", "LoadedRun": "recsys.runs", "evaluate_run": "recsys.runs",
    # benchmark grids: run one into a results store, then report on it
    "load_grid": "recsys.benchmarks.grid", "run_grid": "recsys.benchmarks.grid", "read_store": "recsys.benchmarks.grid",
    "write_report": "recsys.benchmarks.report", "summarize": "recsys.benchmarks.report",
    "significance": "recsys.benchmarks.report", "plot_run": "recsys.benchmarks.plots",
}

__all__ = ["__version__", *_SURFACE]


def __getattr__(name: str) -> Any:
    module = _SURFACE.get(name)
    if module is None:
        raise AttributeError(f"module 'recsys' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
