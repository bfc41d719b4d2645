"""bpr_loss against the autograd ops it replaces (BPRMF's loss on sparse-free tables), in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recsys.models import BPRMF
from recsys.nn.pairwise import bpr_loss


def reference(user_w, item_w, bias_w, users, items, reg, reduction):
    user, item, bias = user_w[users], item_w[items], bias_w[items].squeeze(-1)
    score = (user.unsqueeze(1) * item).sum(-1) + bias
    pair = -F.logsigmoid(score[:, :1] - score[:, 1:])
    norms = item.pow(2).sum(-1) + bias.pow(2)
    pair = pair + reg * (user.pow(2).sum(-1, keepdim=True) + norms[:, :1] + norms[:, 1:])
    return pair.sum() if reduction == "sum" else pair.mean()


@pytest.mark.parametrize("negatives", [1, 4])
@pytest.mark.parametrize("reg", [0.0, 0.01])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_value_and_gradients_equal_the_autograd_ops(negatives: int, reg: float, reduction: str) -> None:
    gen = torch.Generator().manual_seed(negatives)
    tables = [torch.randn(7, 5, generator=gen, dtype=torch.float64), torch.randn(11, 5, generator=gen, dtype=torch.float64),
              torch.randn(11, 1, generator=gen, dtype=torch.float64)]
    users = torch.randint(0, 7, (32,), generator=gen)  # repeated users and items: gradients must accumulate
    items = torch.randint(0, 11, (32, 1 + negatives), generator=gen)
    ours = [t.clone().requires_grad_() for t in tables]
    theirs = [t.clone().requires_grad_() for t in tables]
    loss = bpr_loss(*ours, users, items, reg=reg, reduction=reduction)
    expected = reference(*theirs, users, items, reg, reduction)
    (3.0 * loss).backward()  # an upstream gradient other than 1
    (3.0 * expected).backward()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_frozen_tables_get_no_gradient() -> None:
    user = torch.randn(3, 4, requires_grad=True)
    item, bias = torch.randn(5, 4), torch.zeros(5, 1)  # frozen, as in fold-in
    bpr_loss(user, item, bias, torch.tensor([0, 2]), torch.tensor([[1, 3], [4, 0]]), reg=0.1).backward()
    assert user.grad is not None and user.grad[1].abs().sum() == 0 and user.grad[0].abs().sum() > 0


def test_bprmf_uses_it_on_dense_tables_and_autograd_on_sparse_ones() -> None:
    torch.manual_seed(0)
    dense, sparse = BPRMF(6, 9, 4, reg=0.01), BPRMF(6, 9, 4, reg=0.01, sparse=True)
    sparse.load_state_dict(dense.state_dict())
    batch = {"users": torch.tensor([0, 5, 5]), "items": torch.tensor([1, 2, 8]), "negatives": torch.tensor([[3, 4], [0, 1], [8, 2]])}
    a, b = dense.loss(batch), sparse.loss(batch)
    a.backward(); b.backward()
    assert a.grad_fn is not None and "BPRLoss" in type(a.grad_fn).__name__
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(dense.item_embedding.weight.grad, sparse.item_embedding.weight.grad.to_dense())
    torch.testing.assert_close(dense.user_embedding.weight.grad, sparse.user_embedding.weight.grad.to_dense())
