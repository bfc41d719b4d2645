"""Factorization-machine interaction (Rendle 2010): all pairwise dot products in O(F D) by the sum-square trick."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

__all__ = ["FMInteraction", "pairwise_interaction"]


def pairwise_interaction(embeddings: Tensor) -> Tensor:
    """Reference: ``sum_{i<j} <v_i, v_j>`` by an explicit ``(B, F, F)`` Gram matrix, ``(B, F, D)`` -> ``(B,)``.

    O(F^2 D): for tests and small F only.
    """
    gram = embeddings @ embeddings.transpose(1, 2)  # (B, F, F)
    return gram.triu(diagonal=1).sum((1, 2))


class _SumSquare(torch.autograd.Function):
    """The sum-square form with its closed-form gradient ``d/dv_f = s - v_f`` (``s = sum_f v_f``): two ops
    backward instead of autograd's chain through two squares and three sums."""

    @staticmethod
    def forward(ctx: FunctionCtx, embeddings: Tensor) -> Tensor:
        total = embeddings.sum(1)  # (B, D)
        ctx.save_for_backward(embeddings, total)
        return 0.5 * (total.square().sum(1) - embeddings.square().sum((1, 2)))  # (B,)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tensor:
        embeddings, total = ctx.saved_tensors
        return (total.unsqueeze(1) - embeddings).mul_(grad.view(-1, 1, 1))  # (B, F, D)


class FMInteraction(nn.Module):
    """``0.5 * sum_d ((sum_f v_fd)^2 - sum_f v_fd^2)`` = the sum of all pairwise dot products, in O(F D).

    >>> v = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(FMInteraction()(v), pairwise_interaction(v), atol=1e-5)
    True
    """

    def forward(self, embeddings: Tensor) -> Tensor:
        return _SumSquare.apply(embeddings)  # (B,)
