"""ALS: each half-step equals the direct solve of every user's normal equations."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from recsys.data.frame import from_frame
from recsys.models.als import ALS


def data_and_matrix(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    dense = (torch.rand(7, 9, generator=generator) < 0.4).float() * torch.randint(1, 6, (7, 9), generator=generator)
    dense[torch.arange(9) % 7, torch.arange(9)] = 3.0  # every user and item has an interaction
    users, items = dense.nonzero(as_tuple=True)
    frame = pl.DataFrame({"user": users.numpy(), "item": items.numpy(), "rating": dense[users, items].numpy()})
    return from_frame(frame), dense


def reference(x_other: torch.Tensor, conf: torch.Tensor, pref: torch.Tensor, reg: float) -> torch.Tensor:
    """x_u = (Y^T C_u Y + reg I)^-1 Y^T C_u p_u, one torch.linalg.solve per row (float64)."""
    y = x_other.double()
    rows = []
    for c, p in zip(conf.double(), pref.double()):
        a = y.T @ torch.diag(c) @ y + reg * torch.eye(y.shape[1], dtype=torch.float64)
        rows.append(torch.linalg.solve(a, y.T @ (c * p)))
    return torch.stack(rows)


@pytest.mark.parametrize("confidence,values", [("implicit", "ones"), ("hu", "ones"), ("hu", "ratings")])
def test_cholesky_half_step_equals_direct_solve(confidence: str, values: str) -> None:
    data, dense = data_and_matrix()
    model = ALS(7, 9, factors=3, regularization=0.3, alpha=2.0, confidence=confidence, values=values,
                solver="cholesky", block_size=3)
    rows = model.confidences(data)
    r = dense if values == "ratings" else (dense > 0).float()
    conf = torch.where(dense > 0, 2.0 * r if confidence == "implicit" else 1 + 2.0 * r, 1.0)  # (U, N)
    y = torch.randn(9, 3, generator=torch.Generator().manual_seed(1))
    x = model.solve(rows, torch.zeros(7, 3), y)
    expected = reference(y, conf, (dense > 0).float(), 0.3)
    torch.testing.assert_close(x.double(), expected, rtol=1e-4, atol=1e-5)


def test_cg_converges_to_the_direct_solve() -> None:
    data, dense = data_and_matrix(2)
    model = ALS(7, 9, factors=4, regularization=0.5, alpha=3.0, confidence="hu", solver="cg", cg_steps=30)
    y = torch.randn(9, 4, generator=torch.Generator().manual_seed(3))
    x = model.solve(model.confidences(data), torch.zeros(7, 4), y)
    conf = torch.where(dense > 0, 4.0, 1.0)
    torch.testing.assert_close(x.double(), reference(y, conf, (dense > 0).float(), 0.5), rtol=1e-3, atol=1e-4)


def test_item_half_step_and_full_fit_match_cholesky_reference() -> None:
    """After prepare, item factors solve their own normal equations given the final user factors."""
    data, dense = data_and_matrix(4)
    model = ALS(7, 9, factors=3, regularization=0.2, alpha=4.0, iterations=3, solver="cholesky")
    model.prepare(data)
    conf = torch.where(dense > 0, 4.0, 1.0)
    expected = reference(model.user_factors, conf.T, (dense > 0).float().T, 0.2)
    torch.testing.assert_close(model.item_factors.double(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    data, _ = data_and_matrix()
    cpu = ALS(7, 9, factors=3, iterations=3)
    gpu = ALS(7, 9, factors=3, iterations=3).to("cuda")
    cpu.prepare(data, torch.Generator().manual_seed(0))
    gpu.prepare(data, torch.Generator().manual_seed(0))
    assert gpu.user_factors.is_cuda
    torch.testing.assert_close(gpu.user_factors.cpu(), cpu.user_factors, rtol=1e-3, atol=1e-4)


def test_init_comes_from_the_generator_and_state_dict_round_trips() -> None:
    data, _ = data_and_matrix()
    first, second, other = (ALS(7, 9, factors=3, iterations=2) for _ in range(3))
    first.prepare(data, torch.Generator().manual_seed(5))
    second.prepare(data, torch.Generator().manual_seed(5))
    other.prepare(data, torch.Generator().manual_seed(6))
    assert torch.equal(first.user_factors, second.user_factors)
    assert not torch.equal(first.user_factors, other.user_factors)
    clone = ALS(7, 9, factors=3)
    clone.load_state_dict(first.state_dict())
    users = torch.arange(7)
    assert torch.equal(clone.score_users(users, data), first.score_users(users, data))
