"""Factorization-machine interaction (Rendle 2010): all pairwise dot products in O(F D) by the sum-square trick."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["FMInteraction", "pairwise_interaction"]


def pairwise_interaction(embeddings: Tensor) -> Tensor:
    """Reference: ``sum_{i<j} <v_i, v_j>`` by an explicit ``(B, F, F)`` Gram matrix, ``(B, F, D)`` -> ``(B,)``.

    O(F^2 D): for tests and small F only.
    """
    gram = embeddings @ embeddings.transpose(1, 2)  # (B, F, F)
    return gram.triu(diagonal=1).sum((1, 2))


class FMInteraction(nn.Module):
    """``0.5 * sum_d ((sum_f v_fd)^2 - sum_f v_fd^2)`` = the sum of all pairwise dot products, in O(F D).

    >>> import torch
    >>> v = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(FMInteraction()(v), pairwise_interaction(v), atol=1e-5)
    True
    """

    def forward(self, embeddings: Tensor) -> Tensor:
        square_of_sum = embeddings.sum(1).square()  # (B, D)
        sum_of_square = embeddings.square().sum(1)  # (B, D)
        return 0.5 * (square_of_sum - sum_of_square).sum(1)  # (B,)
