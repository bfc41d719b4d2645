"""Text embeddings as initial item tables of ID-based models (BPR-MF, SASRec): PCA to the model's
dimension, scaled to the model's init scale, copied into ``model.item_embedding``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from recsys.errors import DataError

__all__ = ["load_item_embeddings", "text_item_init"]


def text_item_init(vectors: Tensor, dim: int, std: float = 0.1, seed: int = 0) -> Tensor:
    """Project text vectors ``(N, D_text)`` to ``(N, dim)`` with PCA (``torch.pca_lowrank``), scaled to ``std``.

    >>> round(text_item_init(torch.randn(50, 16), dim=4, std=0.1).std().item(), 4)
    0.1
    """
    if vectors.dim() != 2 or dim < 1:
        raise DataError(f"need (N, D) vectors and dim >= 1, got {tuple(vectors.shape)} and {dim}", where="text_item_init")
    x = vectors.float() - vectors.float().mean(0)  # (N, D_text)
    if dim <= min(x.shape):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # pca_lowrank draws a random sketch from the global stream
            _, _, v = torch.pca_lowrank(x, q=dim, center=False)  # (D_text, dim)
        out = x @ v  # (N, dim)
    else:  # fewer text dimensions than model dimensions: pad with zeros
        out = torch.cat([x, x.new_zeros(x.shape[0], dim - x.shape[1])], dim=1)
    return out * (std / out.std().clamp_min(1e-12))


@torch.no_grad()
def load_item_embeddings(model: nn.Module, matrix: Tensor) -> nn.Module:
    """Copy ``matrix`` ``(num_items, D)`` (row = item index) into ``model.item_embedding.weight``.

    Works for tables of ``num_items`` rows (BPR-MF) and of ``num_items + 2`` rows in the padded
    layout (SASRec/BERT4Rec: row 0 padding, rows 1..N items, row N+1 mask), leaving padding and mask rows.

    >>> from recsys.models.bpr import BPRMF
    >>> model = load_item_embeddings(BPRMF(num_users=2, num_items=3, embedding_dim=2), torch.ones(3, 2))
    >>> model.item_embedding.weight.sum().item()
    6.0
    """
    weight = model.item_embedding.weight
    n, d = matrix.shape
    if d != weight.shape[1] or weight.shape[0] not in (n, n + 2):
        raise DataError(
            f"matrix {tuple(matrix.shape)} does not fit item_embedding {tuple(weight.shape)}", where="load_item_embeddings",
            fix="project the text vectors to the model's embedding_dim with text_item_init and pass one row per item",
        )
    start = 0 if weight.shape[0] == n else 1
    weight[start : start + n] = matrix.to(weight)
    return model
