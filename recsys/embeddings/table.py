"""``KeyedEmbedding``: a trainable table keyed by original int64 ids; its artifact form is :class:`KeyedVectors`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.embeddings.sparse_optim import mark_sparse
from recsys.errors import DataError

if TYPE_CHECKING:
    from recsys.embeddings.keyed_vectors import KeyedVectors


class KeyedEmbedding(nn.Module):
    """A trainable ``(N, D)`` table looked up by original ids (an ``nn.Module``); ``to_keyed_vectors()`` gives
    the artifact (parquet, ``most_similar``), ``from_keyed_vectors(kv, freeze=True)`` builds one from it.

    >>> table = KeyedEmbedding.from_pretrained(np.eye(3, dtype=np.float32), ids=[10, 20, 30])
    >>> table(torch.tensor([30, 10])).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    >>> table.to_keyed_vectors().index_to_key
    [10, 20, 30]
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
    def from_keyed_vectors(cls, vectors: KeyedVectors, freeze: bool = True) -> KeyedEmbedding:
        """The table of a :class:`KeyedVectors` with integer keys; ``freeze=False`` to fine-tune."""
        ids = vectors.integer_keys("KeyedEmbedding.from_keyed_vectors")
        return cls(ids, vectors.table, freeze=freeze)

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

    def to_keyed_vectors(self) -> KeyedVectors:
        """The table as the :class:`KeyedVectors` artifact (keys = ids, a detached CPU float32 copy of the rows)."""
        from recsys.embeddings.keyed_vectors import KeyedVectors

        return KeyedVectors(self.ids.tolist(), self.weight.detach().float().cpu().clone())
