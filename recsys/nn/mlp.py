"""MLP block: Dense -> [BatchNorm] -> activation -> [Dropout], repeated, optional output layer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recsys.errors import ConfigError
from recsys.runtime import numba_available

__all__ = ["MLP", "Dense", "Dice"]


class Dice(nn.Module):
    """Dice (Zhou et al. 2018, DIN): ``p * x + (1 - p) * alpha * x`` with ``p = sigmoid(batchnorm(x))``, a PReLU whose
    rectifier point follows the batch statistics of each unit. Reads ``(..., dim)``; statistics over all leading axes.

    ``kernel``: ``"auto"`` trains float32 CPU batches of at least 4,096 values with the compiled loops of
    :mod:`recsys.nn.dice_kernels` when numba imports (the same values and gradients, in four passes instead of about
    twenty), else torch ops; ``"torch"`` always the torch ops; ``"numba"`` requires the loops.

    >>> Dice(4)(torch.randn(3, 5, 4)).shape
    torch.Size([3, 5, 4])
    """

    def __init__(self, dim: int, eps: float = 1e-8, kernel: str = "auto") -> None:
        super().__init__()
        if kernel not in ("auto", "numba", "torch"):
            raise ConfigError(f"Dice kernel must be 'auto', 'numba' or 'torch', got {kernel!r}", where="Dice")
        self.norm = nn.BatchNorm1d(dim, eps=eps)
        self.alpha = nn.Parameter(torch.zeros(dim))
        self.kernel = kernel

    def _compiled(self, flat: Tensor) -> bool:
        usable = flat.device.type == "cpu" and flat.dtype == torch.float32 and len(flat) >= 2 and numba_available()
        if self.kernel == "numba" and not usable:
            raise ConfigError("Dice kernel='numba' needs numba, a float32 CPU batch and at least 2 rows", where="Dice",
                              fix="pip install numba, or kernel='auto'")
        return self.kernel == "numba" or (self.kernel == "auto" and usable and flat.numel() >= 4096)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training and not torch.is_grad_enabled():  # inference: the running statistics' affine map, in place
            norm = self.norm
            scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)  # (dim,)
            p = torch.sigmoid_(torch.addcmul(norm.bias - norm.running_mean * scale, x, scale))
            return p.mul_(1 - self.alpha).add_(self.alpha).mul_(x)  # x * (alpha + (1 - alpha) p), one buffer
        flat = x.reshape(-1, x.shape[-1])
        if self.training and self._compiled(flat):
            from recsys.nn.dice_kernels import dice_train  # numba, imported on first use

            return dice_train(flat.contiguous(), self.norm, self.alpha).view_as(x)
        if self.training and len(flat) < 2:  # no batch statistics from one row: the running ones
            norm = self.norm
            flat = nn.functional.batch_norm(flat, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)
            return x * (torch.sigmoid(flat).view_as(x) * (1 - self.alpha) + self.alpha)
        p = torch.sigmoid(self.norm(flat)).view_as(x)
        return x * torch.addcmul(self.alpha, p, 1 - self.alpha)  # x * (alpha + (1 - alpha) p): (dim,)-sized algebra


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
                "prelu": nn.PReLU, "dice": Dice}


class Dense(nn.Module):
    """``x @ weight + bias`` with ``weight`` stored ``(in_dim, out_dim)``: ``nn.Linear`` transposed.

    Forward and backward are then row-major GEMMs, which MKL runs faster than ``nn.Linear``'s ``x @ W.T`` and
    its weight gradient for the tall, narrow batches of CTR towers (a DeepFM step on CPU is ~5-10% faster).
    Initialized exactly as ``nn.Linear`` (same distribution and random draws, stored transposed).

    >>> layer = Dense(3, 2)
    >>> layer.weight.shape, layer(torch.ones(4, 3)).shape, layer(torch.ones(5, 4, 3)).shape
    (torch.Size([3, 2]), torch.Size([4, 2]), torch.Size([5, 4, 2]))
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        weight = torch.empty(out_dim, in_dim)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # nn.Linear.reset_parameters
        bound = 1 / math.sqrt(in_dim)
        self.weight = nn.Parameter(weight.t().contiguous())  # (in_dim, out_dim)
        self.bias = nn.Parameter(torch.empty(out_dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            return torch.addmm(self.bias, x, self.weight)  # (B, out_dim)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class MLP(nn.Module):
    """Feed-forward tower ``in_dim -> hidden_dims... [-> out_dim]`` (no activation after the output layer).

    >>> import torch
    >>> mlp = MLP(8, hidden_dims=(16, 4), out_dim=1, dropout=0.1)
    >>> mlp(torch.zeros(2, 8)).shape
    torch.Size([2, 1])
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int] = (256, 128), out_dim: int | None = None,
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        if in_dim <= 0 or any(h <= 0 for h in hidden_dims) or (out_dim is not None and out_dim <= 0):
            raise ConfigError(f"layer sizes must be positive, got in_dim={in_dim}, hidden_dims={list(hidden_dims)}, "
                              f"out_dim={out_dim}", where="MLP", fix="use positive sizes")
        if activation not in _ACTIVATIONS or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"need activation in {sorted(_ACTIVATIONS)} and 0 <= dropout < 1, got {activation!r}, {dropout}",
                              where="MLP")
        layers: list[nn.Module] = []
        for size in hidden_dims:  # build time
            layers.append(Dense(in_dim, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            # in place after Dense / BatchNorm (neither needs its output for backward): one (B, size) buffer less
            if activation == "dice":  # per-unit batch statistics: sized
                layers.append(Dice(size))
            else:
                layers.append(nn.ReLU(inplace=True) if activation == "relu" else _ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = size
        if out_dim is not None:
            layers.append(Dense(in_dim, out_dim))
        self.layers = nn.Sequential(*layers)
        self.out_features = in_dim if out_dim is None else out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (B, out_features)
