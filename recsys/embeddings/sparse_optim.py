"""Optimizers for embedding tables with sparse (COO) gradients: they read and write only the rows in the batch.

All three coalesce duplicate rows once (``index_add_`` into a zeroed buffer for tables that are small next to
the batch, ``torch.unique`` + ``index_add_`` otherwise), compute in float32 whatever the
table dtype, and apply weight decay (L2, added to the gradient) to the touched rows only. Dense gradients
are accepted too and treated as "every row touched". SGD and row-wise Adagrad update a small table whole
(untouched rows have zero gradient, so they and their state stay as they are): a few dense ops, no gathers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from recsys.errors import ConfigError

SPARSE_MARKER = "_recsys_sparse"
# coalesce by a scatter into a zeroed (rows, D) buffer (O(rows + nnz)) instead of torch.unique's sort
# (O(nnz log nnz)) while the table has at most this many rows per gradient value
_SCATTER_ROWS_PER_VALUE = 8
# rows at most this wide are summed by a flat 1-D index_add_ (see _sum_rows)
_FLAT_SUM_MAX_WIDTH = 12


def mark_sparse(param: nn.Parameter) -> nn.Parameter:
    """Mark ``param`` as an embedding table with sparse gradients (read by :class:`CombinedOptimizer`)."""
    setattr(param, SPARSE_MARKER, True)
    return param


def is_sparse_param(param: Tensor) -> bool:
    """True for parameters marked by :func:`mark_sparse` (tables built with ``sparse=True``)."""
    return bool(getattr(param, SPARSE_MARKER, False))


def coalesce_rows(grad: Tensor) -> tuple[Tensor, Tensor]:
    """Unique touched rows ``(U,)`` and their summed float32 gradients ``(U, D)`` from a sparse or dense grad.

    >>> g = torch.sparse_coo_tensor(torch.tensor([[3, 1, 3]]), torch.ones(3, 2), size=(5, 2), check_invariants=True)
    >>> rows, values = coalesce_rows(g)
    >>> rows.tolist(), values.tolist()
    ([1, 3], [[1.0, 1.0], [2.0, 2.0]])
    """
    if not grad.is_sparse:
        return torch.arange(grad.shape[0], device=grad.device), grad.float()
    indices, values = grad._indices()[0], grad._values()
    if grad.is_coalesced():
        return indices, values.float()
    if grad.shape[0] <= _SCATTER_ROWS_PER_VALUE * len(indices):  # small table: sum into every row, no sort
        summed = _sum_rows(grad.shape, indices, values.float())
        rows = torch.bincount(indices, minlength=grad.shape[0]).nonzero().squeeze(1)  # ascending, as torch.unique
        return rows, summed.index_select(0, rows)
    rows, inverse = torch.unique(indices, return_inverse=True)
    summed = torch.zeros(len(rows), *values.shape[1:], dtype=torch.float32, device=values.device)
    return rows, summed.index_add_(0, inverse, values.float())


def _sum_rows(shape: torch.Size, indices: Tensor, values: Tensor) -> Tensor:
    """Dense ``(R, D)`` sums of ``values`` ``(N, D)`` per row ``indices``.

    Narrow rows go through one 1-D ``index_add_`` on flat element positions: for a few columns the 2-D op
    takes a scatter kernel that is ~4x slower on CPU (and slower still with two threads).
    """
    rows, width = shape
    summed = torch.zeros(rows * width, dtype=values.dtype, device=values.device)
    if width > _FLAT_SUM_MAX_WIDTH or rows * width >= 2**31 or values.device.type != "cpu":
        return summed.view(rows, width).index_add_(0, indices, values)
    columns = torch.arange(width, dtype=torch.int32, device=values.device)
    flat = (indices.int().unsqueeze(1) * width + columns).view(-1)  # (N * D,) int32: int64 broadcasting is slower
    return summed.index_add_(0, flat, values.reshape(-1)).view(rows, width)


def summed_rows(grad: Tensor, touched: bool = True) -> tuple[Tensor, Tensor | None]:
    """Dense float32 per-row sums ``(R, D)`` of a sparse or dense gradient, and which rows it touched ``(R,)``
    (``None`` unless ``touched``).

    >>> g = torch.sparse_coo_tensor(torch.tensor([[2, 0, 2]]), torch.ones(3, 1), size=(4, 1), check_invariants=True)
    >>> summed, touched = summed_rows(g)
    >>> summed.squeeze(1).tolist(), touched.tolist()
    ([1.0, 0.0, 2.0, 0.0], [True, False, True, False])
    """
    if not grad.is_sparse:  # a copy: the updates work in place on it
        every = torch.ones(grad.shape[0], dtype=torch.bool, device=grad.device) if touched else None
        return grad.to(torch.float32, copy=True), every
    indices = grad._indices()[0]
    summed = _sum_rows(grad.shape, indices, grad._values().float())
    return summed, torch.bincount(indices, minlength=grad.shape[0]) > 0 if touched else None


def _write_rows(param: Tensor, rows: Tensor, old: Tensor, delta: Tensor) -> None:
    """``param[rows] = old + delta`` (rows unique); float32 tables add in place, half tables round once."""
    if param.dtype == torch.float32:
        param.index_add_(0, rows, delta)
    else:
        param.index_copy_(0, rows, (old + delta).to(param.dtype))


class _SparseOptimizer(torch.optim.Optimizer):
    def _check(self, lr: float, weight_decay: float) -> None:
        if lr <= 0 or weight_decay < 0:
            raise ConfigError(
                f"need lr > 0 and weight_decay >= 0, got lr={lr}, weight_decay={weight_decay}",
                where=type(self).__name__,
                fix="set a positive learning rate and a non-negative weight decay",
            )

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def, override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if self._updates_every_row and _small_table(param.grad):
                    self._step_every_row(param, group, param.grad)
                    continue
                rows, grad = coalesce_rows(param.grad)
                if len(rows) == 0:
                    continue
                old = param.index_select(0, rows).float()  # (U, D)
                if group["weight_decay"]:
                    grad = grad.add(old, alpha=group["weight_decay"])
                _write_rows(param, rows, old, self._delta(param, group, rows, grad))
        return loss

    # True when a zero row gradient leaves a row and its state unchanged (SGD, row-wise Adagrad): a small
    # table is then updated whole, in a few dense ops, instead of gathering and scattering its touched rows
    _updates_every_row = False

    def _step_every_row(self, param: Tensor, group: dict, grad: Tensor) -> None:
        old = param.float()  # (R, D)
        summed, touched = summed_rows(grad, touched=bool(group["weight_decay"]))  # zero rows where untouched
        if touched is not None:  # L2 on the touched rows only (a dense gradient touches every row)
            summed = summed.addcmul(old, touched.unsqueeze(1), value=group["weight_decay"])
        delta = self._delta(param, group, None, summed)
        if param.dtype == torch.float32:
            param.add_(delta)
        else:
            param.copy_((old + delta).to(param.dtype))

    def _delta(self, param: Tensor, group: dict, rows: Tensor | None, grad: Tensor) -> Tensor:
        """The update of rows ``rows`` (``None``: every row) from their summed float32 gradients ``grad``."""
        raise NotImplementedError


def _small_table(grad: Tensor) -> bool:
    """Dense gradients, and sparse ones with at least one value per ``_SCATTER_ROWS_PER_VALUE`` table rows."""
    return not grad.is_sparse or grad.shape[0] <= _SCATTER_ROWS_PER_VALUE * grad._nnz()


class SparseSGD(_SparseOptimizer):
    """Plain SGD on the touched rows: ``w[r] -= lr * (g[r] + weight_decay * w[r])``.

    >>> table = nn.Parameter(torch.ones(4, 2))
    >>> opt = SparseSGD([table], lr=0.5)
    >>> table.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.ones(1, 2), size=(4, 2), check_invariants=True)
    >>> _ = opt.step(); table[:, 0].tolist()
    [1.0, 0.5, 1.0, 1.0]
    """

    def __init__(self, params: Iterable[Tensor], lr: float, weight_decay: float = 0.0) -> None:
        self._check(lr, weight_decay)
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    _updates_every_row = True

    def _delta(self, param: Tensor, group: dict, rows: Tensor | None, grad: Tensor) -> Tensor:
        return grad.mul_(-group["lr"])


class RowWiseAdagrad(_SparseOptimizer):
    """Row-wise Adagrad (as in FBGEMM): one accumulator per row, the mean of the squared row gradient.

    ``s[r] += mean(g[r]**2); w[r] -= lr * g[r] / (sqrt(s[r]) + eps)``: state is ``R`` floats, not ``R x D``.

    >>> table = nn.Parameter(torch.zeros(1000, 16))
    >>> opt = RowWiseAdagrad([table], lr=0.1)
    >>> table.grad = torch.sparse_coo_tensor(torch.tensor([[5, 5]]), torch.ones(2, 16), size=(1000, 16), check_invariants=True)
    >>> _ = opt.step(); opt.state[table]["sum"].shape, round(table[5, 0].item(), 4)
    (torch.Size([1000]), -0.1)
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.01,
        eps: float = 1e-10,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
    ) -> None:
        self._check(lr, weight_decay)
        defaults = {"lr": lr, "eps": eps, "weight_decay": weight_decay, "initial_accumulator_value": initial_accumulator_value}
        super().__init__(params, defaults)

    _updates_every_row = True

    def _delta(self, param: Tensor, group: dict, rows: Tensor | None, grad: Tensor) -> Tensor:
        state = self.state[param]
        if "sum" not in state:
            state["sum"] = torch.full(param.shape[:1], group["initial_accumulator_value"], dtype=torch.float32, device=param.device)
        acc = state["sum"]
        if rows is None:  # every row: untouched rows add 0 and move by 0
            row_sum = acc.add_(grad.pow(2).mean(dim=1)).clone()  # (R,)
        else:
            row_sum = acc.index_select(0, rows).add_(grad.pow(2).mean(dim=1))  # (U,)
            acc.index_copy_(0, rows, row_sum)
        scale = row_sum.sqrt_().add_(group["eps"]).reciprocal_().mul_(-group["lr"])
        return grad.mul_(scale.unsqueeze(1))


class SparseAdam(_SparseOptimizer):
    """Lazy Adam: moments and weights of the touched rows only; one global step count for bias correction.

    On rows present in every batch it equals ``torch.optim.Adam`` (L2 ``weight_decay`` included); other
    rows keep their moments instead of decaying them. State: two float32 values per element.

    >>> table = nn.Parameter(torch.zeros(10, 4))
    >>> opt = SparseAdam([table], lr=0.1)
    >>> table.grad = torch.sparse_coo_tensor(torch.tensor([[2]]), torch.ones(1, 4), size=(10, 4), check_invariants=True)
    >>> _ = opt.step(); round(table[2, 0].item(), 4), table[3, 0].item()
    (-0.1, 0.0)
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self._check(lr, weight_decay)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ConfigError(f"betas must lie in [0, 1), got {betas}", where="SparseAdam", fix="use e.g. betas=(0.9, 0.999)")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def _delta(self, param: Tensor, group: dict, rows: Tensor | None, grad: Tensor) -> Tensor:
        state = self.state[param]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros(param.shape, dtype=torch.float32, device=param.device)
            state["exp_avg_sq"] = torch.zeros(param.shape, dtype=torch.float32, device=param.device)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        exp_avg = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        bias1 = 1 - beta1 ** state["step"]
        bias2_sqrt = math.sqrt(1 - beta2 ** state["step"])
        denom = exp_avg_sq.sqrt_().div_(bias2_sqrt).add_(group["eps"])
        return exp_avg.div_(denom).mul_(-group["lr"] / bias1)


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the tensors in an optimizer's state (step counters included).

    >>> state_bytes(torch.optim.SGD([nn.Parameter(torch.zeros(3))], lr=0.1))
    0
    """
    inner = getattr(optimizer, "optimizers", None)
    if inner is not None:
        return sum(state_bytes(o) for o in inner)
    return sum(
        v.numel() * v.element_size() for state in optimizer.state.values() for v in state.values() if isinstance(v, Tensor)
    )
