"""BPR's pairwise loss over embedding tables as one autograd node, its gradients written by hand.

Autograd runs BPR-MF's loss as a dozen ops (three gathers, a product, a sum, a log-sigmoid, the L2 terms),
each saving its input and adding a backward pass; the tables' gradients then come from
``embedding_dense_backward``, which sorts the indices. With ``S`` negatives per positive that is most of a
CPU step. :func:`bpr_loss` computes the same loss and writes the three table gradients directly: the
per-row gradients in closed form, then one ``index_add_`` per table (dense gradients, so Adam's update is
unchanged). Its value and gradients equal the autograd ops' (tested in float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bpr_loss"]


class _BPRLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, user_weight: Tensor, item_weight: Tensor, bias_weight: Tensor, users: Tensor,  # type: ignore[override]
                items: Tensor, reg: float, mean: bool) -> Tensor:
        user = user_weight.index_select(0, users)  # (B, D)
        item = item_weight.index_select(0, items.reshape(-1)).view(*items.shape, -1)  # (B, K, D), K = 1 + S
        bias = bias_weight.view(-1).index_select(0, items.reshape(-1)).view(items.shape)  # (B, K)
        score = torch.bmm(item, user.unsqueeze(2)).squeeze(2) + bias  # (B, K)
        diff = score[:, :1] - score[:, 1:]  # (B, S)
        total = F.softplus(-diff).sum()  # -log sigmoid(diff)
        if reg > 0:
            norms = item.pow(2).sum(-1) + bias.pow(2)  # (B, K)
            negatives = diff.shape[1]
            total = total + reg * (negatives * (user.pow(2).sum() + norms[:, 0].sum()) + norms[:, 1:].sum())
        ctx.save_for_backward(users, items, user, item, bias, diff)
        ctx.reg, ctx.mean = reg, mean
        ctx.shapes = (user_weight.shape, item_weight.shape, bias_weight.shape)
        return total / diff.numel() if mean else total

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        users, items, user, item, bias, diff = ctx.saved_tensors
        scale = grad / diff.numel() if ctx.mean else grad
        pair = torch.sigmoid(-diff).mul_(-scale)  # (B, S): d loss / d diff
        score = torch.cat([pair.sum(1, keepdim=True), pair.neg()], 1)  # (B, K): d loss / d score
        grad_user = torch.bmm(score.unsqueeze(1), item).squeeze(1)  # (B, D)
        grad_item = score.unsqueeze(2) * user.unsqueeze(1)  # (B, K, D)
        grad_bias = score
        if ctx.reg > 0:
            weight = torch.ones_like(score)  # each pair holds its user's and positive's norms, and its negative's
            weight[:, 0] = diff.shape[1]
            weight.mul_(2 * ctx.reg * scale)
            grad_user = grad_user + (2 * ctx.reg * diff.shape[1]) * scale * user
            grad_item = grad_item + weight.unsqueeze(2) * item
            grad_bias = grad_bias + weight * bias
        user_shape, item_shape, bias_shape = ctx.shapes
        flat = items.reshape(-1)
        need_user, need_item, need_bias = ctx.needs_input_grad[:3]  # e.g. fold-in trains the user table only
        grad_users = user.new_zeros(user_shape).index_add_(0, users, grad_user) if need_user else None
        grad_items = item.new_zeros(item_shape).index_add_(0, flat, grad_item.reshape(len(flat), -1)) if need_item else None
        grad_biases = (bias.new_zeros(bias_shape).view(-1).index_add_(0, flat, grad_bias.reshape(-1)).view(bias_shape)
                       if need_bias else None)
        return grad_users, grad_items, grad_biases, None, None, None, None


def bpr_loss(user_weight: Tensor, item_weight: Tensor, bias_weight: Tensor, users: Tensor, items: Tensor,
             reg: float = 0.0, reduction: str = "mean") -> Tensor:
    """Mean (or sum) over pairs of ``-log sigmoid(x_ui - x_uj) + reg (||u||^2 + ||i||^2 + b_i^2 + ||j||^2 + b_j^2)``,
    ``x_ui = u . i + b_i``: ``users`` ``(B,)`` rows of ``user_weight`` ``(U, D)``, ``items`` ``(B, 1 + S)`` rows of
    ``item_weight`` ``(N, D)`` and ``bias_weight`` ``(N, 1)``, the positive first, then ``S`` negatives.

    >>> u, i, b = (torch.ones(2, 3, requires_grad=True), torch.zeros(4, 3, requires_grad=True),
    ...            torch.zeros(4, 1, requires_grad=True))
    >>> loss = bpr_loss(u, i, b, torch.tensor([0, 1]), torch.tensor([[0, 1], [2, 3]]))
    >>> loss.backward(); round(loss.item(), 4), i.grad[0].tolist()
    (0.6931, [-0.25, -0.25, -0.25])
    """
    return _BPRLoss.apply(user_weight, item_weight, bias_weight, users, items, float(reg), reduction == "mean")
