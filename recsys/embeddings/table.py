"""``KeyedEmbedding``: a trained or pretrained table keyed by original int64 ids (gensim's ``wv`` for torch)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.embeddings.sparse_optim import mark_sparse
from recsys.errors import DataError


class KeyedEmbedding(nn.Module):
    """Vectors ``(N, D)`` looked up by original ids; exports to numpy/parquet, answers ``most_similar``.

    >>> table = KeyedEmbedding.from_pretrained(np.eye(3, dtype=np.float32), ids=[10, 20, 30])
    >>> table(torch.tensor([30, 10])).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    >>> neighbors, scores = table.most_similar(torch.tensor([10]), k=2)
    >>> neighbors.shape, scores.shape
    (torch.Size([1, 2]), torch.Size([1, 2]))
    """

    def __init__(self, ids: Tensor, weight: Tensor, freeze: bool = True, sparse: bool = True) -> None:
        super().__init__()
        ids = torch.as_tensor(ids)
        if ids.dtype not in (torch.int64, torch.int32) or ids.dim() != 1:
            raise DataError(f"ids must be a 1-D integer array, got {ids.dtype} {tuple(ids.shape)}", where="KeyedEmbedding", fix="pass int64 ids")
        if weight.dim() != 2 or weight.shape[0] != len(ids):
            raise DataError(
                f"matrix {tuple(weight.shape)} does not have one row per id ({len(ids)} ids)",
                where="KeyedEmbedding",
                fix="pass a (len(ids), D) matrix",
            )
        sorted_ids, rows = torch.sort(ids.long())
        if len(sorted_ids) > 1 and bool((sorted_ids.diff() == 0).any()):
            duplicate = int(sorted_ids[1:][sorted_ids.diff() == 0][0])
            raise DataError(f"id {duplicate} appears more than once", where="KeyedEmbedding", fix="pass unique ids")
        self.sparse = sparse
        self.register_buffer("ids", ids.long().clone())
        self.register_buffer("_sorted_ids", sorted_ids, persistent=False)
        self.register_buffer("_rows", rows, persistent=False)
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=not freeze)
        if sparse:
            mark_sparse(self.weight)

    @classmethod
    def from_pretrained(
        cls, matrix: np.ndarray | Tensor, ids: np.ndarray | Tensor | list[int], freeze: bool = True, dtype: torch.dtype | None = None
    ) -> KeyedEmbedding:
        """Wrap a pretrained ``(N, D)`` matrix whose row ``i`` belongs to ``ids[i]``; ``freeze=False`` to fine-tune."""
        weight = torch.as_tensor(matrix)
        return cls(torch.as_tensor(np.asarray(ids)), weight if dtype is None else weight.to(dtype), freeze=freeze)

    @classmethod
    def read_parquet(cls, path: str | Path, freeze: bool = True) -> KeyedEmbedding:
        """Load a table written by :meth:`to_parquet`."""
        frame = pl.read_parquet(path)
        if frame.columns != ["id", "vector"]:
            raise DataError(f"columns {frame.columns} are not ['id', 'vector']", where=str(path), fix="read a file written by to_parquet")
        return cls(torch.from_numpy(frame["id"].to_numpy().copy()), torch.from_numpy(frame["vector"].to_numpy().copy()), freeze=freeze)

    def index(self, ids: Tensor) -> Tensor:
        """Rows of original ``ids`` (any shape); unknown ids raise :class:`DataError`, vectorized."""
        ids = torch.as_tensor(ids, device=self._sorted_ids.device)
        if ids.dtype not in (torch.int64, torch.int32):
            raise DataError(f"ids must be integers, got {ids.dtype}", where="KeyedEmbedding", fix="pass the original int64 ids")
        ids = ids.long()
        pos = torch.searchsorted(self._sorted_ids, ids).clamp_max(len(self._sorted_ids) - 1)
        found = self._sorted_ids[pos] == ids
        if not bool(found.all()):
            unknown = ids[~found].unique()[:5].tolist()
            raise DataError(
                f"{int((~found).sum())} ids are not in the table, e.g. {unknown}",
                where="KeyedEmbedding",
                fix="look up only ids the table was trained or loaded with (or map unknown ids to an OOV id first)",
            )
        return self._rows[pos]

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(self.index(ids), self.weight, sparse=self.sparse and self.weight.requires_grad)  # (..., D)

    def to_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (N,), vectors (N, D) float32)`` in the table's row order."""
        return self.ids.cpu().numpy().copy(), self.weight.detach().float().cpu().numpy()

    def to_parquet(self, path: str | Path) -> Path:
        """Write columns ``id`` (int64) and ``vector`` (float32 array) atomically (temp file + rename)."""
        path = Path(path)
        ids, vectors = self.to_numpy()
        frame = pl.DataFrame({"id": ids, "vector": vectors})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            frame.write_parquet(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @torch.no_grad()
    def most_similar(self, ids: Tensor, k: int = 10, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
        """The ``k`` nearest ids by cosine for each query id, itself excluded: ``(ids (Q, K), scores (Q, K))``."""
        k = min(k, len(self.ids) - 1)
        if k < 1:
            raise DataError("most_similar needs at least two vectors", where="KeyedEmbedding.most_similar", fix="use a larger table")
        queries = self.index(torch.as_tensor(ids).flatten())
        unit = F.normalize(self.weight.float(), dim=1)  # (N, D)
        top_ids, top_scores = [], []
        for start in range(0, len(queries), batch_size):  # batches of queries, not rows
            rows = queries[start : start + batch_size]
            scores = unit[rows] @ unit.T  # (Q, N)
            scores[torch.arange(len(rows), device=rows.device), rows] = -torch.inf
            values, indices = scores.topk(k, dim=1)
            top_ids.append(self.ids[indices])
            top_scores.append(values)
        return torch.cat(top_ids), torch.cat(top_scores)
