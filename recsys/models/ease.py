"""EASE (Steck 2019): a closed-form item-item model, ``B = I - P / diag(P)``, ``P = (X^T X + reg I)^-1``."""

from __future__ import annotations

import logging
import warnings
import weakref
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from recsys.errors import ConfigError, DataError
from recsys.models.als import keyed
from recsys.models.base import Recommender, check_candidates, check_indices

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.data.vocabulary import Vocabulary
    from recsys.embeddings.keyed_vectors import KeyedVectors

log = logging.getLogger(__name__)


class EASE(Recommender):
    """Embarrassingly shallow autoencoder: score = ``x_u B`` with a zero-diagonal item-item ``B`` (N, N).

    A user is read only through ``history`` (``reads_history``), so new users are scored from their
    items alone. It has no vectors of its own: ``item_similarity`` gives ``similar_items`` the rows of ``B``.

    ``B`` minimizes ``||X - X B||^2 + reg ||B||^2`` subject to ``diag(B) = 0`` in closed form; the
    scores of a user come from the items in ``history`` (so validation items count at test time).
    Memory and time are ``O(N^2)`` and ``O(N^3)``: for catalogues up to a few ten thousand items.
    ``prepare`` solves on the device the model is on (``model.to(device)`` first).

    >>> import polars as pl
    >>> from recsys.data.frame import from_frame
    >>> data = from_frame(pl.DataFrame({"user": [0, 0, 1, 1, 2], "item": [0, 1, 1, 2, 0]}))
    >>> model = EASE(num_items=3, reg=1.0)
    >>> model.prepare(data)
    >>> model.weights.diagonal().abs().max().item()
    0.0
    >>> model.score_users(torch.tensor([0, 2]), history=data).shape
    torch.Size([2, 3])
    """

    reads_history = True

    def __init__(self, num_items: int, reg: float = 170.0, values: str = "ones") -> None:
        super().__init__()
        if not isinstance(num_items, int) or num_items <= 0:
            raise ConfigError(f"num_items must be a positive int, got {num_items!r}", where="EASE", fix="set model.module.num_items > 0")
        if reg <= 0:
            raise ConfigError(f"reg must be > 0, got {reg}", where="EASE", fix="set model.module.reg > 0 (e.g. 170)")
        if values not in ("ones", "ratings"):
            raise ConfigError(f"unknown values={values!r}", where="EASE", fix="values: ones|ratings")
        self.num_items, self.reg, self.values = num_items, reg, values
        self.register_buffer("weights", torch.zeros(num_items, num_items))  # (N, N) = B
        self._history: tuple[weakref.ref, Tensor, Tensor, Tensor] | None = None  # (history, CSR parts)

    def prepare(self, train: Interactions, generator: torch.Generator | None = None) -> None:
        """Solve for ``B`` on ``self.device`` (deterministic: ``generator`` is unused)."""
        if train.num_interactions == 0:
            raise DataError("the training split has no interactions", where=f"EASE.prepare({train.name!r})")
        if train.num_items != self.num_items:
            raise DataError(f"data has {train.num_items} items, model {self.num_items}", where="EASE.prepare",
                            fix="build the model with the dataset's num_items")
        x = self._matrix(train).to(self.device)  # (U, N) sparse
        gram = (x.T @ x).to_dense() if x.is_sparse else x.T @ x  # (N, N)
        gram.diagonal().add_(self.reg)
        factor, info = torch.linalg.cholesky_ex(gram.double() if self.num_items <= 4096 else gram)
        if int(info) > 0:
            raise DataError("X^T X + reg I is not positive definite", where="EASE.prepare", fix="increase reg")
        p = torch.cholesky_inverse(factor).float()  # (N, N)
        b = p / -p.diagonal().unsqueeze(0)  # B_ij = -P_ij / P_jj
        b.diagonal().zero_()
        self.weights.copy_(b)
        self._history = None
        log.info("EASE: %d items, reg %g", self.num_items, self.reg)

    def _matrix(self, data: Interactions) -> Tensor:
        """User-item matrix as a sparse COO (U, N) tensor."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return data.user_item_matrix(self.values).to_sparse_coo().coalesce()

    def score_users(self, users: Tensor, history: Interactions | None) -> Tensor:
        sub_crow, cols, vals = self._rows(users, history, "EASE.score_users")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            rows = torch.sparse_csr_tensor(sub_crow, cols, vals, (len(users), self.num_items))
            return rows.to(self.weights.device) @ self.weights  # (B, N)

    def score_items(self, users: Tensor, items: Tensor, history: Interactions | None) -> Tensor:
        """``x_u B[:, c]`` for candidates only: each history entry ``(u, h)`` adds ``x_uh B[h, c]``, O(nnz C)."""
        sub_crow, cols, vals = self._rows(users, history, "EASE.score_items")
        items = check_candidates(users, items, self.num_items, "EASE.score_items").to(self.weights.device)  # (B, C)
        device = self.weights.device
        rows = torch.repeat_interleave(torch.arange(len(users)), sub_crow.diff()).to(device)  # (nnz,)
        cols, vals = cols.to(device), vals.to(device, self.weights.dtype)
        out = self.weights.new_zeros(items.shape)
        step = max(1, (1 << 22) // max(items.shape[1], 1))  # bound the (entries, C) block
        for lo in range(0, rows.numel(), step):  # chunks of history entries, not one user at a time
            r, c, v = rows[lo : lo + step], cols[lo : lo + step], vals[lo : lo + step]
            out.index_add_(0, r, v.unsqueeze(1) * self.weights[c.unsqueeze(1), items[r]])  # (e, C)
        return out

    def _rows(self, users: Tensor, history: Interactions | None, where: str) -> tuple[Tensor, Tensor, Tensor]:
        """The users' history rows as CPU CSR parts (crow (B + 1,), columns, values), the matrix cached per split."""
        if history is None:
            raise DataError("EASE scores users from their history", where=where, fix="pass history=train split")
        check_indices(users, history.num_users, "users", where)
        if self._history is None or self._history[0]() is not history:  # cache the history matrix per split
            matrix = self._matrix(history).to_sparse_csr()  # a weak ref: a new history never reuses a dead one's id
            self._history = (weakref.ref(history), matrix.crow_indices(), matrix.col_indices(), matrix.values())
        _, crow, col, val = self._history
        users = users.cpu()
        start, lens = crow[users], crow[users + 1] - crow[users]  # (B,)
        offsets = torch.arange(int(lens.sum())) - torch.repeat_interleave(lens.cumsum(0) - lens, lens)
        entries = torch.repeat_interleave(start, lens) + offsets  # (nnz_B,) positions of the users' entries
        sub_crow = torch.cat([lens.new_zeros(1), lens.cumsum(0)])
        return sub_crow, col[entries], val[entries]

    def item_similarity(self, items: Tensor) -> Tensor:
        """Rows ``B[items]`` ``(B, N)``: how much having each item adds to every other item's score."""
        return self.weights[items.to(self.weights.device)]  # (B, N)

    def item_embeddings(self, items: Vocabulary) -> KeyedVectors:
        """Rows of ``B`` (N-dimensional item-item weights) keyed by original item id."""
        return keyed(items, self.weights)

    def user_embeddings(self, users: Vocabulary, history: Interactions | None = None) -> KeyedVectors:
        """Each user's scores ``x_u B`` (N-dimensional) keyed by original user id; EASE has no user vectors,
        so this needs the ``history`` the rows come from."""
        if history is None:
            raise ConfigError("EASE has no user vectors: a user's row is x_u B, computed from a history",
                              where="EASE.user_embeddings", fix="pass history=... (e.g. the training split), or use item_similarity")
        return keyed(users, self.score_users(torch.arange(history.num_users), history))
