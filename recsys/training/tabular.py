"""Mini-batch Adam for small tabular networks on categorical codes (the engine behind ``EntityEmbeddingEncoder``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from recsys.errors import ConfigError, DataError

__all__ = ["fit_tabular"]


def fit_tabular(network: nn.Module, codes: Tensor, target: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor], *,
                epochs: int, batch_size: int, learning_rate: float, weight_decay: float = 0.0, dropout: float = 0.0,
                oov: Tensor | None = None, generator: torch.Generator | None = None) -> nn.Module:
    """Train ``network(codes (B, C)) -> (B, out)`` on ``loss_fn(output, target[rows])`` with Adam, in place.

    Every epoch draws one permutation of the rows from ``generator``; with ``dropout > 0`` each code of a
    batch is replaced by its column's ``oov`` row (``(C,)``) with that probability (category dropout, which
    also trains the OOV rows). Returns ``network``.

    >>> net = nn.Sequential(nn.Embedding(3, 2), nn.Flatten(), nn.Linear(2, 1))
    >>> codes, y = torch.tensor([[0], [1], [2], [1]]), torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    >>> _ = fit_tabular(net, codes, y, nn.BCEWithLogitsLoss(), epochs=2, batch_size=2, learning_rate=0.1,
    ...                 generator=torch.Generator().manual_seed(0))
    """
    if epochs < 1 or batch_size < 1 or learning_rate <= 0 or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"need epochs >= 1, batch_size >= 1, learning_rate > 0, 0 <= dropout < 1; got "
                          f"{epochs}, {batch_size}, {learning_rate}, {dropout}", where="fit_tabular")
    if codes.dim() != 2 or len(target) != len(codes):
        raise DataError(f"need (n, C) codes and n targets, got {tuple(codes.shape)} and {len(target)}", where="fit_tabular")
    if dropout > 0 and (oov is None or oov.shape != (codes.shape[1],)):
        raise ConfigError("category dropout needs the (C,) OOV row of every column", where="fit_tabular", fix="pass oov=")
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate, weight_decay=weight_decay)
    network.train()
    for _ in range(epochs):
        order = torch.randperm(len(codes), generator=generator)
        for start in range(0, len(codes), batch_size):
            rows = order[start : start + batch_size]
            batch = codes[rows]  # (B, C)
            if dropout > 0:
                batch = torch.where(torch.rand(batch.shape, generator=generator) < dropout, oov, batch)
            loss = loss_fn(network(batch), target[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return network
