"""Dense is nn.Linear stored transposed: same initial draws, outputs and gradients; MLP builds from it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recsys.errors import ConfigError
from recsys.nn.mlp import MLP, Dense, Dice


def test_dense_equals_linear_from_the_same_seed() -> None:
    torch.manual_seed(3)
    linear = nn.Linear(6, 4)
    torch.manual_seed(3)
    dense = Dense(6, 4)
    assert torch.equal(dense.weight, linear.weight.T) and torch.equal(dense.bias, linear.bias)
    x = torch.randn(5, 2, 6)
    assert torch.allclose(dense(x), linear(x), atol=1e-6)
    dense(x).square().sum().backward()
    linear(x).square().sum().backward()
    assert torch.allclose(dense.weight.grad, linear.weight.grad.T, atol=1e-5)
    assert torch.allclose(dense.bias.grad, linear.bias.grad, atol=1e-5)


def test_mlp_is_dense_relu_blocks_and_rejects_bad_sizes() -> None:
    mlp = MLP(8, hidden_dims=(16, 4), out_dim=1)
    x = torch.randn(3, 8)
    first, second, out = (m for m in mlp.layers if isinstance(m, Dense))
    expected = out(torch.relu(second(torch.relu(first(x)))))
    assert torch.allclose(mlp(x), expected)
    with pytest.raises(ConfigError, match="positive"):
        MLP(0, hidden_dims=(4,))


def test_dice_inference_path_equals_the_formula_with_running_statistics() -> None:
    torch.manual_seed(0)
    dice = Dice(5)
    with torch.no_grad():
        dice.alpha.uniform_(-1, 1)
        dice.norm.weight.uniform_(0.5, 2)
        dice.norm.bias.uniform_(-1, 1)
        dice.norm.running_mean.uniform_(-1, 1)
        dice.norm.running_var.uniform_(0.5, 2)
    dice.eval()
    x = torch.randn(3, 4, 5)
    norm = dice.norm
    p = torch.sigmoid((x - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps) * norm.weight + norm.bias)
    expected = p * x + (1 - p) * dice.alpha * x  # the paper's formula
    with torch.no_grad():
        fast = dice(x.clone())  # the in-place inference path
    torch.testing.assert_close(fast, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(dice(x), expected, atol=1e-6, rtol=1e-5)  # with gradients: the general path


@pytest.mark.parametrize("momentum", [0.1, None])
def test_dice_compiled_training_step_equals_torch_ops(momentum: float | None) -> None:
    pytest.importorskip("numba")
    torch.manual_seed(0)
    ops, compiled = Dice(6, kernel="torch"), Dice(6, kernel="numba")
    with torch.no_grad():
        ops.alpha.uniform_(-1, 1)
        ops.norm.weight.uniform_(0.5, 2)
        ops.norm.bias.uniform_(-1, 1)
    compiled.load_state_dict(ops.state_dict())
    for dice in (ops, compiled):
        dice.norm.momentum = momentum
    for step in range(2):  # the running statistics follow batch norm's update, step after step
        x = torch.randn(40, 3, 6) * 2 + 0.5  # (..., dim): statistics over both leading axes
        weights = torch.randn(40, 3, 6)
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ops(a), compiled(b)
        (ya * weights).sum().backward()
        (yb * weights).sum().backward()
        torch.testing.assert_close(yb, ya, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-5)
        for p, q in zip(ops.parameters(), compiled.parameters()):
            torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-5)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(compiled.norm, name), getattr(ops.norm, name))
    with pytest.raises(ConfigError, match="kernel must be"):
        Dice(3, kernel="cython")
