"""Pointwise metrics for rating prediction (RMSE, MAE) and click-through rate (ROC AUC, log loss)."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.errors import DataError

__all__ = ["log_loss", "mae", "rmse", "roc_auc"]


def _pair(a: Tensor, b: Tensor, names: tuple[str, str], where: str) -> tuple[Tensor, Tensor]:
    """Both inputs flattened to float64, after checking shapes match, non-empty, no NaN."""
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise DataError(f"{names[0]} and {names[1]} must be torch tensors", where=where)
    if a.shape != b.shape:
        raise DataError(
            f"{names[0]} {tuple(a.shape)} and {names[1]} {tuple(b.shape)} differ in shape", where=where,
            fix="pass one value per example in both",
        )
    if a.numel() == 0:
        raise DataError("no examples to score", where=where)
    a, b = a.detach().reshape(-1).double(), b.detach().reshape(-1).double()
    for name, x in zip(names, (a, b)):
        if x.isnan().any():
            raise DataError(f"{name} contains NaN", where=where, fix="drop or fill the NaN entries")
    return a, b


def _binary(labels: Tensor, where: str) -> Tensor:
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise DataError("labels must be 0/1 (or bool)", where=where, fix="binarize the labels, e.g. rating >= 4")
    return labels


def rmse(pred: Tensor, target: Tensor) -> float:
    """Root mean squared error.

    >>> rmse(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0]))
    2.0
    """
    pred, target = _pair(pred, target, ("pred", "target"), "rmse")
    return (pred - target).square().mean().sqrt().item()


def mae(pred: Tensor, target: Tensor) -> float:
    """Mean absolute error.

    >>> mae(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
    1.0
    """
    pred, target = _pair(pred, target, ("pred", "target"), "mae")
    return (pred - target).abs().mean().item()


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve by the rank formula, tied scores sharing their average rank (= scikit-learn).

    >>> roc_auc(torch.tensor([0.1, 0.4, 0.4, 0.8]), torch.tensor([0, 0, 1, 1]))
    0.875
    """
    scores, labels = _pair(scores, labels, ("scores", "labels"), "roc_auc")
    labels = _binary(labels, "roc_auc")
    num_pos = labels.sum()
    num_neg = labels.numel() - num_pos
    if num_pos == 0 or num_neg == 0:
        raise DataError(
            "ROC AUC is undefined with a single class in labels",
            where="roc_auc",
            fix="evaluate on data with both classes",
        )
    ordered, order = scores.sort()
    _, inverse, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()  # 1-based rank of each tie group's last member
    mean_rank = ends - (counts.double() - 1) / 2  # (G,) average 1-based rank in the group
    ranks = mean_rank[inverse]  # (n,) in sorted order
    pos_rank_sum = (ranks * labels[order]).sum()
    return ((pos_rank_sum - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg)).item()


def log_loss(probs: Tensor, labels: Tensor, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities clipped to [eps, 1 - eps] (natural log, = scikit-learn).

    >>> round(log_loss(torch.tensor([0.9, 0.2]), torch.tensor([1, 0])), 6)
    0.164252
    """
    probs, labels = _pair(probs, labels, ("probs", "labels"), "log_loss")
    labels = _binary(labels, "log_loss")
    if bool(((probs < 0) | (probs > 1)).any()):
        raise DataError("probs must lie in [0, 1]", where="log_loss", fix="apply a sigmoid to logits first")
    probs = probs.clamp(eps, 1 - eps)
    return -(labels * probs.log() + (1 - labels) * (1 - probs).log()).mean().item()
