"""Quotient-remainder compositional embeddings (Shi et al. 2020): two small tables instead of one huge one."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.embeddings.sparse_optim import mark_sparse
from recsys.errors import ConfigError, DataError

Operation = Literal["mult", "add", "concat"]


class QREmbedding(nn.Module):
    """Id ``i`` gets ``q[i // num_buckets] (op) r[i % num_buckets]``: ``ceil(N / m) + m`` rows instead of ``N``.

    Every id gets a unique (quotient, remainder) pair, so distinct ids keep distinct vectors (unlike hashing).
    ``operation`` combines the two: elementwise ``"mult"`` (the paper's default), ``"add"``, or ``"concat"``
    (each half ``embedding_dim // 2`` wide). Both tables are sparse-gradient tables when ``sparse=True``.

    >>> qr = QREmbedding(num_embeddings=1_000_000, embedding_dim=16, num_buckets=1000)
    >>> qr(torch.tensor([[0, 999_999]])).shape, qr.quotient.shape, qr.remainder.shape
    (torch.Size([1, 2, 16]), torch.Size([1000, 16]), torch.Size([1000, 16]))
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        num_buckets: int,
        operation: Operation = "mult",
        sparse: bool = True,
        dtype: torch.dtype = torch.float32,
        init_std: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        where = "QREmbedding"
        if min(num_embeddings, embedding_dim, num_buckets) <= 0:
            raise ConfigError("num_embeddings, embedding_dim and num_buckets must be positive", where=where, fix="use positive sizes")
        if operation not in ("mult", "add", "concat"):
            raise ConfigError(f"unknown operation {operation!r}", where=where, fix="use 'mult', 'add' or 'concat'")
        if operation == "concat" and embedding_dim % 2:
            raise ConfigError(f"concat needs an even embedding_dim, got {embedding_dim}", where=where, fix="use an even embedding_dim")
        self.num_embeddings, self.embedding_dim, self.num_buckets = num_embeddings, embedding_dim, num_buckets
        self.operation, self.sparse = operation, sparse
        part_dim = embedding_dim // 2 if operation == "concat" else embedding_dim
        # "mult" starts near 1 for the remainder so products keep the quotient's scale
        mean_r = 1.0 if operation == "mult" else 0.0
        q = torch.empty(math.ceil(num_embeddings / num_buckets), part_dim).normal_(0.0, init_std, generator=generator)
        r = torch.empty(num_buckets, part_dim).normal_(mean_r, init_std, generator=generator)
        self.quotient = nn.Parameter(q.to(dtype))
        self.remainder = nn.Parameter(r.to(dtype))
        if sparse:
            mark_sparse(self.quotient)
            mark_sparse(self.remainder)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dtype != torch.long:
            raise DataError(f"ids must be torch.long, got {ids.dtype}", where="QREmbedding", fix="convert ids with .long()")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_embeddings):
            raise DataError(
                f"ids span [{int(ids.min())}, {int(ids.max())}], outside [0, {self.num_embeddings})",
                where="QREmbedding",
                fix="map ids into the vocabulary or raise num_embeddings",
            )
        q = F.embedding(torch.div(ids, self.num_buckets, rounding_mode="floor"), self.quotient, sparse=self.sparse)  # (..., D)
        r = F.embedding(torch.remainder(ids, self.num_buckets), self.remainder, sparse=self.sparse)  # (..., D)
        if self.operation == "mult":
            return q * r
        if self.operation == "add":
            return q + r
        return torch.cat([q, r], dim=-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, num_buckets={self.num_buckets}, operation={self.operation!r}"
