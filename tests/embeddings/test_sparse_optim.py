"""Sparse optimizers: only batch rows move, and they move exactly as a dense reference would."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from torch import nn

from recsys.embeddings import (
    CombinedOptimizer,
    EmbeddingCollection,
    EmbeddingField,
    RowWiseAdagrad,
    SparseAdam,
    SparseSGD,
    build_optimizer,
    is_sparse_param,
    state_bytes,
)
from recsys.embeddings.sparse_optim import coalesce_rows
from recsys.errors import CheckpointError

ROWS, DIM = 40, 6
BATCHES = [torch.tensor([[3, 5], [5, 9], [3, 3]]), torch.tensor([[5, 3], [9, 9], [3, 5]])]  # same rows, duplicates


def _tables(sparse: bool, rows: int = ROWS) -> nn.Embedding:
    torch.manual_seed(0)  # test-only: both copies start from the same weights
    return nn.Embedding(rows, DIM, sparse=sparse)


def _run(table: nn.Embedding, optimizer: torch.optim.Optimizer, target: torch.Tensor) -> None:
    for ids in BATCHES:
        optimizer.zero_grad(set_to_none=True)
        ((table(ids) - target) ** 2).sum().backward()
        optimizer.step()


def _dense_rowwise_adagrad(table: nn.Embedding, target: torch.Tensor, lr: float, weight_decay: float) -> None:
    acc = torch.zeros(table.num_embeddings)
    for ids in BATCHES:
        table.zero_grad()
        ((table(ids) - target) ** 2).sum().backward()
        with torch.no_grad():
            touched = torch.unique(ids)
            g = table.weight.grad[touched] + weight_decay * table.weight[touched]
            acc[touched] += g.pow(2).mean(1)
            table.weight[touched] -= lr * g / (acc[touched].sqrt().unsqueeze(1) + 1e-10)


# 40 rows: small next to the 6 values per batch (SGD and Adagrad update the table whole); 1000: touched rows only
@pytest.mark.parametrize("rows", [ROWS, 1000])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("name", ["sgd", "adam", "rowwise_adagrad"])
def test_sparse_update_matches_dense_reference_and_touches_only_batch_rows(name, weight_decay, rows):
    target = torch.randn(DIM, generator=torch.Generator().manual_seed(1))
    sparse, dense = _tables(sparse=True, rows=rows), _tables(sparse=False, rows=rows)
    start = sparse.weight.detach().clone()
    optimizers = {
        "sgd": (SparseSGD, torch.optim.SGD, {"lr": 0.05}),
        "adam": (SparseAdam, torch.optim.Adam, {"lr": 0.05}),
        "rowwise_adagrad": (RowWiseAdagrad, None, {"lr": 0.05}),
    }
    sparse_cls, dense_cls, kwargs = optimizers[name]
    _run(sparse, sparse_cls(sparse.parameters(), weight_decay=weight_decay, **kwargs), target)
    if dense_cls is None:
        _dense_rowwise_adagrad(dense, target, kwargs["lr"], weight_decay)
    else:
        _run(dense, dense_cls(dense.parameters(), weight_decay=weight_decay, **kwargs), target)
    touched = torch.tensor([3, 5, 9])
    others = torch.ones(rows, dtype=torch.bool)
    others[touched] = False
    assert torch.equal(sparse.weight[others], start[others])  # untouched rows never move, decay included
    assert not torch.allclose(sparse.weight[touched], start[touched])
    torch.testing.assert_close(sparse.weight[touched], dense.weight[touched], atol=1e-6, rtol=1e-5)


def test_rowwise_adagrad_state_is_one_float_per_row():
    table = _tables(sparse=True)
    opt = RowWiseAdagrad(table.parameters(), lr=0.1)
    _run(table, opt, torch.zeros(DIM))
    assert state_bytes(opt) == ROWS * 4
    dense = _tables(sparse=False)
    adam = torch.optim.Adam(dense.parameters())
    _run(dense, adam, torch.zeros(DIM))
    assert state_bytes(opt) * 2 * DIM <= state_bytes(adam)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_tables_update_in_float32(dtype):
    table = nn.Parameter(torch.zeros(10, 4, dtype=dtype))
    opt = RowWiseAdagrad([table], lr=0.5)
    table.grad = torch.sparse_coo_tensor(torch.tensor([[2, 2]]), torch.ones(2, 4, dtype=dtype), size=(10, 4), check_invariants=True)
    opt.step()
    assert table.dtype == dtype and table[2, 0].item() == -0.5 and opt.state[table]["sum"].dtype == torch.float32


def _model() -> nn.Module:
    return nn.Sequential(EmbeddingCollection([EmbeddingField("item", 50, 4)], generator=torch.Generator().manual_seed(0)), nn.Flatten(), nn.Linear(4, 1))


def test_combined_optimizer_splits_steps_and_round_trips():
    model = _model()
    factory = partial(CombinedOptimizer, dense=partial(torch.optim.Adam, lr=1e-2), sparse=partial(RowWiseAdagrad, lr=0.1))
    opt = factory(model.parameters())  # how the Trainer calls an optimizer factory
    table = model[0].tables["4"].weight
    assert is_sparse_param(table) and not is_sparse_param(model[2].weight)
    assert opt.sparse.param_groups[0]["params"] == [table] and len(opt.dense.param_groups[0]["params"]) == 2
    assert len(opt.param_groups) == 2
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    before_table, before_dense = table.detach().clone(), model[2].weight.detach().clone()
    model(torch.tensor([[1], [2]])).sum().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    assert table.grad is None
    changed = (table != before_table).any(1).nonzero().flatten().tolist()
    assert changed == [1, 2] and not torch.equal(model[2].weight, before_dense)
    scheduler.step()
    assert opt.sparse.param_groups[0]["lr"] == pytest.approx(0.05)
    state = copy.deepcopy(opt.state_dict())
    other = build_optimizer(model, dense=partial(torch.optim.Adam, lr=1e-2), sparse=partial(RowWiseAdagrad, lr=0.1))
    other.load_state_dict(state)
    torch.testing.assert_close(other.sparse.state[table]["sum"], opt.sparse.state[table]["sum"])
    with pytest.raises(CheckpointError, match="dense', 'sparse"):
        other.load_state_dict({"state": {}, "param_groups": []})


def test_combined_optimizer_with_grad_scaler_and_only_sparse_params():
    model = EmbeddingCollection([EmbeddingField("item", 50, 4)])
    opt = CombinedOptimizer(model.parameters(), dense=partial(torch.optim.Adam, lr=1e-2), sparse=partial(SparseAdam, lr=0.1))
    assert opt.dense is None
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    scaler.scale(model(torch.tensor([[1], [2]])).sum()).backward()
    scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    assert opt.sparse.state[model.tables["4"].weight]["step"] == 1


@pytest.mark.parametrize("num_rows", [12, 10_000], ids=["small-table-scatter", "large-table-unique"])
def test_coalesce_rows_sums_duplicates_into_ascending_unique_rows(num_rows):
    generator = torch.Generator().manual_seed(0)
    indices = torch.randint(0, 12, (50,), generator=generator) * (num_rows // 12)
    values = torch.randn(50, 3, generator=generator)
    grad = torch.sparse_coo_tensor(indices.unsqueeze(0), values, size=(num_rows, 3), check_invariants=True)
    rows, summed = coalesce_rows(grad)
    reference = grad.coalesce()
    assert torch.equal(rows, reference.indices()[0])
    torch.testing.assert_close(summed, reference.values())
    dense_rows, dense_values = coalesce_rows(grad.to_dense())  # dense gradient: every row counts as touched
    assert torch.equal(dense_rows, torch.arange(num_rows)) and torch.equal(dense_values, grad.to_dense())
