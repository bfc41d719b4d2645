"""Evaluation: tie-aware ranking metrics, the ranking evaluator, and pointwise (rating / CTR) metrics."""

from recsys.evaluation.cold_start import ColdStartSplit, cold_start_split, evaluate_cold_start
from recsys.evaluation.ctr import CTREvaluator
from recsys.evaluation.metrics import (
    METRICS,
    TieRanks,
    average_precision_at_k,
    hit_rate_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
    tie_ranks,
)
from recsys.evaluation.pointwise import log_loss, mae, rmse, roc_auc
from recsys.evaluation.ranking import RankingEvaluator
from recsys.evaluation.rating import RatingEvaluator

__all__ = [
    "CTREvaluator",
    "ColdStartSplit",
    "METRICS",
    "RankingEvaluator",
    "RatingEvaluator",
    "TieRanks",
    "average_precision_at_k",
    "cold_start_split",
    "evaluate_cold_start",
    "hit_rate_at_k",
    "log_loss",
    "mae",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "rmse",
    "roc_auc",
    "tie_ranks",
]
