"""Dice's training step on CPU as compiled loops (numba; this module is imported on first use by :class:`~recsys.nn.mlp.Dice`).

In training, Dice is ``x * (alpha + (1 - alpha) * sigmoid(batchnorm(x)))`` with batch statistics: as torch ops that
is about twenty passes over the ``(N, D)`` activations (forward and autograd's backward), and in DIN's attention
unit, whose activations are one row per behaviour, those passes were about half of a training step. Here the
forward is two passes (column sums, then the output and the gate's sigmoid, kept for the backward, as autograd keeps
it) and the backward two (column sums of the parameter gradients, then the input gradient). Sums accumulate in float64.

The functions are module-level so that numba's cache (``cache=True``) finds them again in a new process.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from recsys.runtime import numba_threads, once

__all__ = ["DiceFunction", "dice_train"]


@numba.njit(parallel=True, nogil=True, cache=True)
def column_sums(x, blocks):  # (N, D) float32 -> (2, D) float64: sum and sum of squares of each column
    n, d = x.shape
    step = (n + blocks - 1) // blocks
    partial = np.zeros((blocks, 2, d))
    for b in numba.prange(blocks):
        for i in range(b * step, min(n, (b + 1) * step)):
            for j in range(d):
                v = np.float64(x[i, j])
                partial[b, 0, j] += v
                partial[b, 1, j] += v * v
    return partial.sum(0)


@numba.njit(parallel=True, nogil=True, cache=True, fastmath=True)
def forward(x, scale, shift, alpha, out, gate):  # gate = sigmoid(x * scale + shift), out = x * (alpha + (1 - alpha) gate)
    n, d = x.shape
    one = np.float32(1.0)
    for i in numba.prange(n):
        for j in range(d):
            v = x[i, j]
            p = one / (one + np.exp(-(v * scale[j] + shift[j])))
            gate[i, j] = p
            out[i, j] = v * (alpha[j] + (one - alpha[j]) * p)


@numba.njit(parallel=True, nogil=True, cache=True, fastmath=True)
def backward_sums(x, grad, gate, mean, rstd, alpha, blocks):  # (3, D) float64: sum gz, sum gz * xhat, grad alpha
    n, d = x.shape
    one = np.float32(1.0)
    step = (n + blocks - 1) // blocks
    partial = np.zeros((blocks, 3, d))
    for b in numba.prange(blocks):
        for i in range(b * step, min(n, (b + 1) * step)):
            for j in range(d):
                v, p = x[i, j], gate[i, j]
                gv = grad[i, j] * v
                gz = gv * (one - alpha[j]) * p * (one - p)  # the loss's gradient at the batch norm's output
                partial[b, 0, j] += gz
                partial[b, 1, j] += gz * ((v - mean[j]) * rstd[j])
                partial[b, 2, j] += gv * (one - p)
    return partial.sum(0)


@numba.njit(parallel=True, nogil=True, cache=True, fastmath=True)
def backward_input(x, grad, gate, mean, rstd, alpha, weight, mean_gz, mean_gz_xhat, out):
    """out = grad * gate + rstd * weight * (gz - mean(gz) - xhat * mean(gz * xhat)): the gate's own term and batch norm's."""
    n, d = x.shape
    one = np.float32(1.0)
    for i in numba.prange(n):
        for j in range(d):
            v, p, g = x[i, j], gate[i, j], grad[i, j]
            gz = g * v * (one - alpha[j]) * p * (one - p)
            xhat = (v - mean[j]) * rstd[j]
            out[i, j] = g * (alpha[j] + (one - alpha[j]) * p) + rstd[j] * weight[j] * (gz - mean_gz[j] - xhat * mean_gz_xhat[j])


def _blocks() -> int:
    return 4 * numba.get_num_threads()


class DiceFunction(torch.autograd.Function):
    """``(x (N, D), weight, bias, alpha, eps) -> (out (N, D), batch mean (D,), unbiased batch variance (D,))``, float32
    CPU tensors; gradients for ``x``, ``weight``, ``bias`` and ``alpha`` (the statistics are outputs without one)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, alpha: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        n = len(x)
        arr = x.detach().numpy()
        out, gate = torch.empty_like(x), torch.empty_like(x)
        with numba_threads():
            sums = column_sums(arr, _blocks())
            mean64 = sums[0] / n
            var64 = np.maximum(sums[1] / n - mean64 * mean64, 0.0)  # biased: the normalization's
            rstd = torch.from_numpy(1.0 / np.sqrt(var64 + eps)).float()
            mean = torch.from_numpy(mean64).float()
            scale = (weight.detach() * rstd).contiguous()
            shift = (bias.detach() - mean * scale).contiguous()
            forward(arr, scale.numpy(), shift.numpy(), alpha.detach().contiguous().numpy(), out.numpy(), gate.numpy())
        ctx.save_for_backward(x, weight, alpha, mean, rstd, gate)
        unbiased = torch.from_numpy(var64 * n / max(n - 1, 1)).float()
        ctx.mark_non_differentiable(mean, unbiased)
        return out, mean, unbiased

    @staticmethod
    def backward(ctx, grad: Tensor, *_: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight, alpha, mean, rstd, gate = ctx.saved_tensors
        n = len(x)
        arrays = [t.detach().contiguous().numpy() for t in (x, grad, gate, mean, rstd, alpha)]
        grad_x = torch.empty_like(x)
        with numba_threads():
            sums = backward_sums(*arrays, _blocks())
            backward_input(*arrays, weight.detach().contiguous().numpy(), (sums[0] / n).astype(np.float32),
                           (sums[1] / n).astype(np.float32), grad_x.numpy())
        grad_bias, grad_weight, grad_alpha = (torch.from_numpy(s).float() for s in sums)
        return grad_x, grad_weight, grad_bias, grad_alpha, None


def dice_train(x: Tensor, norm: torch.nn.BatchNorm1d, alpha: Tensor) -> Tensor:
    """Dice in training mode on rows ``x (N, D)`` (float32, CPU, contiguous, N >= 2): the output, with ``norm``'s
    running statistics updated as ``BatchNorm1d`` updates them."""
    out, mean, var = DiceFunction.apply(x, norm.weight, norm.bias, alpha, norm.eps)
    with torch.no_grad():
        norm.num_batches_tracked.add_(1)
        momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        norm.running_mean.lerp_(mean, momentum)
        norm.running_var.lerp_(var, momentum)
    return out


@once
def load() -> None:
    """Compile the loops, or load them from numba's cache, so that the first training step does not pay for it."""
    x = torch.randn(4, 2, requires_grad=True)
    norm = torch.nn.BatchNorm1d(2)
    alpha = torch.zeros(2, requires_grad=True)
    dice_train(x, norm, alpha).sum().backward()
