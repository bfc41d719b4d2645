"""ALS for implicit feedback (Hu, Koren & Volinsky 2008), solved for all users (items) at once in torch.

Each half-step solves, for every user ``u`` with the item factors ``Y`` fixed,

    (Y^T C_u Y + reg * I) x_u = Y^T C_u p_u,    Y^T C_u Y = Y^T Y + Y^T (C_u - I) Y

where ``p_u`` is 1 on the user's items and ``C_u`` their confidences (1 elsewhere). The sparse part
``Y^T (C_u - I) Y`` touches only the user's items, so a batched solver never forms dense ``C_u``:

- ``solver="cg"`` (default, like ``implicit``): a few conjugate-gradient steps per half-step, warm
  started from the previous factors, for all rows at once; ``A p`` costs one gather and one
  ``index_add`` over the nonzeros.
- ``solver="cholesky"``: the exact solution, ``(R, k, k)`` systems built with a sparse-dense product
  (CSR of confidences times the items' flattened outer products) and solved by batched Cholesky.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from recsys.embeddings.keyed_vectors import KeyedVectors
from recsys.errors import ConfigError, DataError
from recsys.models.base import Recommender, check_candidates, check_indices
from recsys.runtime import progress_bar

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.data.vocabulary import Vocabulary

log = logging.getLogger(__name__)

_CONFIDENCE = ("implicit", "hu")


def keyed(vocabulary: Vocabulary, weight: Tensor) -> KeyedVectors:
    """A :class:`KeyedVectors` whose row ``i`` is ``weight[i]`` (a detached CPU float32 copy), keyed by the
    vocabulary's original ids."""
    if len(vocabulary) != weight.shape[0]:
        raise DataError(
            f"vocabulary has {len(vocabulary)} ids but the table {weight.shape[0]} rows",
            where="user_embeddings/item_embeddings",
            fix="pass the vocabulary of the data the model was built for (data.users / data.items)",
        )
    return KeyedVectors(vocabulary.ids.to_list(), weight.detach().float().cpu().clone())


class _Rows:
    """Nonzeros of a sparse confidence matrix ``(R, M)`` as flat ``rows``, ``cols``, ``conf`` tensors."""

    def __init__(self, rows: Tensor, cols: Tensor, conf: Tensor, shape: tuple[int, int]) -> None:
        self.rows, self.cols, self.conf, self.shape = rows, cols, conf, shape
        counts = torch.bincount(rows, minlength=shape[0])
        self.crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])  # (R + 1,)

    def csr(self, values: Tensor) -> Tensor:
        """CSR ``(R, M)`` with the given values in nonzero order (rows are sorted)."""
        return torch.sparse_csr_tensor(self.crow, self.cols, values, self.shape, check_invariants=False)


class ALS(Recommender):
    """Weighted matrix factorization for implicit feedback by alternating least squares.

    ``confidence="implicit"`` uses ``C = alpha * r`` (what ``implicit``'s ``fit`` does with its
    ``alpha``); ``"hu"`` uses the paper's ``C = 1 + alpha * r``. ``r`` is 1 per interaction
    (``values="ones"``) or the rating (``values="ratings"``). Score = ``x_u . y_i``. ``prepare`` solves on
    the device the model is on (``model.to(device)`` first), its initial factors drawn from ``generator``.

    >>> import polars as pl
    >>> from recsys.data.frame import from_frame
    >>> data = from_frame(pl.DataFrame({"user": [0, 0, 1, 1, 2], "item": [0, 1, 1, 2, 0]}))
    >>> model = ALS(num_users=3, num_items=3, factors=2, iterations=3)
    >>> model.prepare(data, torch.Generator().manual_seed(0))
    >>> model.score_users(torch.tensor([0, 1]), history=data).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        factors: int = 64,
        regularization: float = 0.1,
        alpha: float = 5.0,
        iterations: int = 15,
        confidence: str = "implicit",
        values: str = "ones",
        solver: str = "cg",
        cg_steps: int = 3,
        block_size: int = 4096,
        init_scale: float = 0.01,
    ) -> None:
        super().__init__()
        for name, value in (("num_users", num_users), ("num_items", num_items), ("factors", factors),
                            ("iterations", iterations), ("cg_steps", cg_steps), ("block_size", block_size)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive int, got {value!r}", where="ALS", fix=f"set model.module.{name} > 0")
        if regularization < 0 or alpha <= 0:
            raise ConfigError(f"need regularization >= 0 and alpha > 0, got {regularization}, {alpha}", where="ALS")
        if confidence not in _CONFIDENCE or solver not in ("cg", "cholesky") or values not in ("ones", "ratings"):
            raise ConfigError(
                f"unknown confidence={confidence!r}, solver={solver!r} or values={values!r}",
                where="ALS", fix="confidence: implicit|hu, solver: cg|cholesky, values: ones|ratings",
            )
        self.num_users, self.num_items, self.factors = num_users, num_items, factors
        self.regularization, self.alpha, self.iterations = regularization, alpha, iterations
        self.confidence, self.values, self.solver, self.cg_steps = confidence, values, solver, cg_steps
        self.block_size, self.init_scale = block_size, init_scale
        self.register_buffer("user_factors", torch.zeros(num_users, factors))
        self.register_buffer("item_factors", torch.zeros(num_items, factors))

    # fitting -------------------------------------------------------------------------------------
    def confidences(self, train: Interactions) -> _Rows:
        """User-item confidences of the training split as sorted nonzeros."""
        if train.num_interactions == 0:
            raise DataError("the training split has no interactions", where=f"ALS.prepare({train.name!r})",
                            fix="check the split; every user in it has no training rows")
        if (train.num_users, train.num_items) != (self.num_users, self.num_items):
            raise DataError(f"data has {train.num_users} users / {train.num_items} items, model {self.num_users} / {self.num_items}",
                            where="ALS.prepare", fix="build the model with the dataset's num_users and num_items")
        return self._confidence_rows(train)

    def _confidence_rows(self, data: Interactions) -> _Rows:
        """Confidences ``(U, N)`` of any users of ``data`` (the model's item index) as sorted nonzeros."""
        matrix = data.user_item_matrix(self.values)
        crow, cols, r = matrix.crow_indices(), matrix.col_indices(), matrix.values()
        rows = torch.repeat_interleave(torch.arange(data.num_users), crow.diff())
        conf = self.alpha * r if self.confidence == "implicit" else 1 + self.alpha * r
        return _Rows(rows, cols, conf.float(), (data.num_users, data.num_items))

    def prepare(self, train: Interactions, generator: torch.Generator | None = None) -> None:
        """Alternate ``iterations`` user and item half-steps on ``self.device``; initial factors uniform in
        ``[0, init_scale)`` from ``generator`` (a CPU generator; seed 0 when none is given)."""
        device = self.device
        ui = self.confidences(train)
        order = torch.argsort(ui.cols * self.num_users + ui.rows)
        iu = _Rows(ui.cols[order], ui.rows[order], ui.conf[order], (self.num_items, self.num_users))
        ui, iu = (_Rows(m.rows.to(device), m.cols.to(device), m.conf.to(device), m.shape) for m in (ui, iu))
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        x = (torch.rand(self.num_users, self.factors, generator=generator) * self.init_scale).to(device)
        y = (torch.rand(self.num_items, self.factors, generator=generator) * self.init_scale).to(device)
        for _ in progress_bar(range(self.iterations), desc="ALS", unit="it", disable=None):  # shown on a terminal only
            x = self.solve(ui, x, y)
            y = self.solve(iu, y, x)
        self.user_factors.copy_(x)
        self.item_factors.copy_(y)
        log.info("ALS: %d iterations, %d factors, solver %s", self.iterations, self.factors, self.solver)

    def solve(self, c: _Rows, x: Tensor, y: Tensor) -> Tensor:
        """One half-step: new ``x`` (R, k) given the fixed other side ``y`` (M, k)."""
        yty = y.T @ y + self.regularization * torch.eye(self.factors, device=y.device, dtype=y.dtype)  # (k, k)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            b = c.csr(c.conf) @ y  # (R, k) = Y^T C_u p_u
            if self.solver == "cholesky":
                return self._cholesky(c, yty, b, y)
            return self._cg(c, yty, b, x.clone(), y)

    def _cg(self, c: _Rows, yty: Tensor, b: Tensor, x: Tensor, y: Tensor) -> Tensor:
        pattern = c.csr(torch.ones_like(c.conf))  # (R, M)
        w = c.conf - 1  # (nnz,)

        def matvec(p: Tensor) -> Tensor:  # (R, k) -> A p, each row's own system
            dots = torch.sparse.sampled_addmm(pattern, p, y.T, beta=0.0).values()  # (nnz,) p_u . y_i
            weighted = torch.sparse_csr_tensor(c.crow, c.cols, dots * w, c.shape, check_invariants=False)
            return p @ yty + weighted @ y

        r = b - matvec(x)
        p, rs_old = r.clone(), (r * r).sum(1, keepdim=True)  # (R, k), (R, 1)
        for _ in range(self.cg_steps):  # steps of every row's CG at once
            ap = matvec(p)
            active = rs_old > 1e-20
            step = torch.where(active, rs_old / (p * ap).sum(1, keepdim=True).clamp_min(1e-30), 0.0)
            x += step * p
            r -= step * ap
            rs_new = (r * r).sum(1, keepdim=True)
            p = r + torch.where(active, rs_new / rs_old.clamp_min(1e-30), 0.0) * p
            rs_old = rs_new
        return x

    def _cholesky(self, c: _Rows, yty: Tensor, b: Tensor, y: Tensor) -> Tensor:
        num_rows, k = b.shape
        out = torch.empty_like(b)
        crow = c.crow
        for start in range(0, num_rows, self.block_size):  # blocks of rows bound the (B, k, k) memory
            end = min(start + self.block_size, num_rows)
            lo, hi = int(crow[start]), int(crow[end])
            block = torch.sparse_csr_tensor(crow[start : end + 1] - lo, c.cols[lo:hi], (c.conf[lo:hi] - 1),
                                            (end - start, c.shape[1]), check_invariants=False)
            a = torch.empty(end - start, k, k, device=b.device, dtype=b.dtype)  # (B, k, k)
            for f in range(0, k, 16):  # flattened outer products of 16 factors at a time: (M, 16 * k)
                outer = (y[:, f : f + 16, None] * y[:, None, :]).reshape(y.shape[0], -1)
                a[:, f : f + 16, :] = (block @ outer).reshape(end - start, -1, k)
            a += yty
            factor, info = torch.linalg.cholesky_ex(a)
            if bool((info > 0).any()):
                raise DataError("an ALS system is not positive definite", where="ALS(solver='cholesky')",
                                fix="use regularization > 0")
            out[start:end] = torch.cholesky_solve(b[start:end].unsqueeze(-1), factor).squeeze(-1)
        return out

    # scoring and export ----------------------------------------------------------------------------
    def score_users(self, users: Tensor, history: Interactions | None) -> Tensor:
        check_indices(users, self.num_users, "users", "ALS.score_users")
        return self.user_factors[users] @ self.item_factors.T  # (B, N)

    def score_vectors(self, users: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return (self.user_factors if users is None else self.user_factors[users]), self.item_factors

    def score_items(self, users: Tensor, items: Tensor, history: Interactions | None) -> Tensor:
        check_indices(users, self.num_users, "users", "ALS.score_items")
        items = check_candidates(users, items, self.num_items, "ALS.score_items")  # (B, C)
        return torch.bmm(self.item_factors[items], self.user_factors[users].unsqueeze(2)).squeeze(2)  # (B, C)

    def recalculate_users(self, history: Interactions) -> Tensor:
        """Factors ``(U, k)`` of every user of ``history`` (users may be new) against the fixed item factors.

        The user half-step of training (same confidences and regularization), solved exactly for all
        users at once by the batched Cholesky path whatever ``solver`` is (``implicit``'s
        ``recalculate_user``). Users without interactions get zero factors.
        """
        if history.num_items != self.num_items:
            raise DataError(f"history has {history.num_items} items, model {self.num_items}", where="ALS.recalculate_users",
                            fix="build the history on the model's item vocabulary")
        rows = self._confidence_rows(history)
        device, y = self.device, self.item_factors
        c = _Rows(rows.rows.to(device), rows.cols.to(device), rows.conf.to(device), rows.shape)
        yty = y.T @ y + self.regularization * torch.eye(self.factors, device=device, dtype=y.dtype)  # (k, k)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            b = c.csr(c.conf) @ y  # (U, k)
            return self._cholesky(c, yty, b, y)

    def score_histories(self, history: Interactions) -> Tensor:
        """Scores ``(U, N)`` of the users of ``history`` from factors solved for them (:meth:`recalculate_users`)."""
        return self.recalculate_users(history) @ self.item_factors.T  # (U, N)

    def user_embeddings(self, users: Vocabulary) -> KeyedVectors:
        """User factors keyed by original user id (``data.users``)."""
        return keyed(users, self.user_factors)

    def item_embeddings(self, items: Vocabulary) -> KeyedVectors:
        """Item factors keyed by original item id (``data.items``)."""
        return keyed(items, self.item_factors)
