"""DIN's local activation unit (Zhou et al. 2018): attention of a candidate over a behaviour sequence, pooled.

The unit scores every (candidate, behaviour) pair with an MLP over ``[q, k, q - k, q * k]``; the interest is the
weighted sum of the behaviour embeddings. Weights are not normalized by default (the paper: their sum keeps the
intensity of the user's interest), optionally a softmax over each row's behaviours. The unit runs on the ragged
behaviours only (values and their row), so padding never enters the MLP nor Dice's batch statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recsys.nn.mlp import MLP

__all__ = ["LocalActivationUnit"]


class LocalActivationUnit(nn.Module):
    """Scores ``a(q, k) = MLP([q, k, q - k, q * k])`` and the pooled interest ``sum_t a(q, k_t) k_t``.

    ``forward(query (B, D), keys (B, T, D), mask (B, T))`` pools padded sequences (masked slots are never read);
    ``ragged(query (B, D), keys (nnz, D), row (nnz,))`` the same on the valid behaviours only.

    >>> unit = LocalActivationUnit(4, hidden_dims=(8,), activation="dice")
    >>> interest, weights = unit(torch.randn(2, 4), torch.randn(2, 3, 4), torch.tensor([[1, 1, 0], [1, 0, 0]]).bool())
    >>> interest.shape, weights.shape, weights[0, 2].item()
    (torch.Size([2, 4]), torch.Size([2, 3]), 0.0)
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] = (64, 16), activation: str = "dice",
                 softmax: bool = False) -> None:
        super().__init__()
        self.softmax = softmax
        self.mlp = MLP(4 * dim, tuple(hidden_dims), out_dim=1, activation=activation)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """Raw scores ``(nnz,)`` of paired rows ``query (nnz, D)`` and ``keys (nnz, D)``."""
        return self.mlp(torch.cat([query, keys, query - keys, query * keys], -1)).squeeze(-1)  # (nnz,)

    def ragged(self, query: Tensor, keys: Tensor, row: Tensor) -> tuple[Tensor, Tensor]:
        """Interest ``(B, D)`` and the weight of every behaviour ``(nnz,)``; ``row[i]`` is the query row of ``keys[i]``."""
        weights = self.scores(query.index_select(0, row), keys)  # (nnz,)
        if self.softmax:  # over each row's behaviours: subtract the row max, normalize by the row sum
            top = weights.new_full((len(query),), float("-inf")).scatter_reduce(0, row, weights.detach(), "amax")
            weights = torch.exp(weights - top.index_select(0, row))
            weights = weights / weights.new_zeros(len(query)).index_add(0, row, weights).index_select(0, row)
        interest = keys.new_zeros(query.shape).index_add(0, row, weights.unsqueeze(-1) * keys)  # (B, D)
        return interest, weights

    def grid(self, queries: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """Interest ``(b, c, D)`` of every candidate ``queries`` (``(c, D)``, or ``(b, c, D)`` per row) over each row's
        padded behaviours ``keys (b, T, D)`` (``mask (b, T)``): ``forward`` on every (row, candidate) pair. The MLP's
        first layer is split by its four inputs, ``W [q; k; q - k; q * k] = (W_q + W_d) q + (W_k - W_d) k + W_p (q * k)``,
        so only the product term sees the ``(b, c, T)`` grid. Call it in eval mode (Dice reads its running statistics).

        >>> unit = LocalActivationUnit(4, hidden_dims=(8,)).eval()
        >>> q, k, mask = torch.randn(3, 4), torch.randn(2, 5, 4), torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]).bool()
        >>> pooled = unit.grid(q, k, mask)
        >>> each = unit(q[1].expand(2, 4), k, mask)[0]  # candidate 1 for both rows
        >>> pooled.shape, torch.allclose(pooled[:, 1], each, atol=1e-6)
        (torch.Size([2, 3, 4]), True)
        """
        first, rest = self.mlp.layers[0], self.mlp.layers[1:]
        w_query, w_key, w_diff, w_product = first.weight.split(keys.shape[-1], 0)  # (D, H) each
        queries = queries if queries.dim() == 3 else queries.unsqueeze(0)  # (b | 1, c, D)
        hidden = (queries.unsqueeze(2) * keys.unsqueeze(1)) @ w_product  # (b, c, T, H)
        hidden += torch.addmm(first.bias, queries.flatten(0, 1), w_query + w_diff).view(*queries.shape[:2], 1, -1)
        hidden += (keys @ (w_key - w_diff)).unsqueeze(1)  # (b | 1, c, 1, H), then (b, 1, T, H): no grid-sized sum
        scores = rest(hidden.view(-1, hidden.shape[-1])).view(hidden.shape[:3])  # (b, c, T)
        valid = mask.unsqueeze(1)  # (b, 1, T)
        if self.softmax:
            scores = scores.masked_fill(~valid, float("-inf")).softmax(-1)  # a row without behaviours: NaN, zeroed below
        return scores.masked_fill(~valid, 0.0) @ keys  # (b, c, T) @ (b, T, D) -> (b, c, D)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Interest ``(B, D)`` and weights ``(B, T)`` (0 on masked slots) of padded ``keys (B, T, D)``."""
        row, slot = mask.nonzero(as_tuple=True)  # (nnz,) each
        interest, weights = self.ragged(query, keys[row, slot], row)
        return interest, weights.new_zeros(mask.shape).index_put((row, slot), weights)  # (B, D), (B, T)
