"""The engine's fused BPR step (one shared table, a (3, B, D) block): implicit's update, the two-table step's numbers, the layout round trip."""

from __future__ import annotations

import pytest
import torch

from recsys.models.bpr import BPRMF
from recsys.training.bpr_hogwild import BPRHogwild, bpr_step, fused_bpr_step
from tests.estimators.test_bpr import reference_update
from tests.models.test_cf_contract import planted


def two_tables(generator: torch.Generator, users: int = 5, items: int = 9, dim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    user_table, item_table = torch.randn(users, dim + 1, generator=generator), torch.randn(items, dim + 1, generator=generator)
    user_table[:, -1] = 1.0  # implicit's layout: the item bias against a constant 1
    return user_table, item_table


def fused_layout(user_table: torch.Tensor, item_table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    factors = torch.cat([user_table[:, :-1], item_table[:, :-1]])  # (U+N, D)
    bias = torch.cat([torch.zeros(len(user_table)), item_table[:, -1]])  # (U+N,)
    return factors, bias


@pytest.mark.parametrize("reg", [0.01, 0.0])
def test_fused_step_equals_implicits_update_on_distinct_rows(reg: float) -> None:
    user_table, item_table = two_tables(torch.Generator().manual_seed(0))
    triples = [(0, 1, 2), (1, 3, 4), (3, 5, 0), (4, 8, 7)]  # no row twice: batched == sequential
    expected_users, expected_items = user_table.clone(), item_table.clone()
    reference_update(expected_users, expected_items, triples, lr=0.1, reg=reg)
    factors, bias = fused_layout(user_table, item_table)
    u, i, j = (torch.tensor(column) for column in zip(*triples))
    fused_bpr_step(factors, bias, torch.stack([u, i + 5, j + 5]), lr=0.1, reg=reg)
    assert torch.allclose(factors, fused_layout(expected_users, expected_items)[0], atol=1e-6)
    assert torch.allclose(bias[5:], expected_items[:, -1], atol=1e-6)
    assert (bias[:5] == 0).all()  # the users' bias entries never move


def test_fused_step_equals_the_two_table_step_with_repeated_rows() -> None:
    """Repeated users and items in one batch: both steps sum the same per-triple updates."""
    gen = torch.Generator().manual_seed(1)
    user_table, item_table = two_tables(gen, users=3, items=4, dim=6)
    u, i, j = torch.randint(3, (64,), generator=gen), torch.randint(4, (64,), generator=gen), torch.randint(4, (64,), generator=gen)
    factors, bias = fused_layout(user_table, item_table)
    bpr_step(user_table, item_table, u, i, j, lr=0.05, reg=0.02)
    fused_bpr_step(factors, bias, torch.stack([u, i + 3, j + 3]), lr=0.05, reg=0.02)
    expected_factors, expected_bias = fused_layout(user_table, item_table)
    assert torch.allclose(factors, expected_factors, atol=1e-5)
    assert torch.allclose(bias, expected_bias, atol=1e-5)


def test_a_non_contiguous_slice_of_rows_is_one_batch() -> None:
    """The engine passes ``rows[:, start:stop]`` of a (3, S) tensor: the same step as the contiguous copy."""
    gen = torch.Generator().manual_seed(2)
    factors, bias = torch.randn(12, 4, generator=gen), torch.randn(12, generator=gen)
    bias[:4] = 0.0
    rows = torch.stack([torch.randint(4, (10,), generator=gen), torch.randint(4, 12, (10,), generator=gen), torch.randint(4, 12, (10,), generator=gen)])
    copy_factors, copy_bias = factors.clone(), bias.clone()
    fused_bpr_step(factors, bias, rows[:, 3:8], lr=0.1, reg=0.01)
    fused_bpr_step(copy_factors, copy_bias, rows[:, 3:8].contiguous(), lr=0.1, reg=0.01)
    assert torch.equal(factors, copy_factors) and torch.equal(bias, copy_bias)


def test_continuing_from_the_model_keeps_its_bias_and_factors_in_place() -> None:
    """``init="model"`` loads the model's tables into the shared layout and writes them back to the right rows."""
    data, _, _ = planted()
    model = BPRMF(data.num_users, data.num_items, embedding_dim=4)
    with torch.no_grad():
        model.item_bias.weight.copy_(torch.arange(data.num_items, dtype=torch.float32).unsqueeze(1))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    BPRHogwild(learning_rate=1e-6, regularization=0.0, iterations=1, workers=1, init="model").fit_seeded(
        model, data, device=torch.device("cpu"), seed=0)
    for name, value in model.state_dict().items():
        assert torch.allclose(value, before[name], atol=1e-4), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_step_on_cuda_equals_cpu() -> None:
    gen = torch.Generator().manual_seed(3)
    factors, bias = torch.randn(20, 8, generator=gen), torch.randn(20, generator=gen)
    bias[:5] = 0.0
    rows = torch.stack([torch.randint(5, (256,), generator=gen), torch.randint(5, 20, (256,), generator=gen), torch.randint(5, 20, (256,), generator=gen)])
    cuda_factors, cuda_bias = factors.cuda(), bias.cuda()
    fused_bpr_step(factors, bias, rows, lr=0.1, reg=0.01)
    fused_bpr_step(cuda_factors, cuda_bias, rows.cuda(), lr=0.1, reg=0.01)
    assert torch.allclose(cuda_factors.cpu(), factors, atol=1e-5) and torch.allclose(cuda_bias.cpu(), bias, atol=1e-5)
