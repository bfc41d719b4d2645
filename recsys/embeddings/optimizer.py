"""``CombinedOptimizer``: a dense optimizer for dense parameters and a sparse one for embedding tables, as one."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from recsys.embeddings.sparse_optim import is_sparse_param
from recsys.errors import CheckpointError, ConfigError

OptimizerFactory = Callable[[Iterable[Tensor]], torch.optim.Optimizer]


class CombinedOptimizer(torch.optim.Optimizer):
    """Split parameters by the sparse marker that tables built with ``sparse=True`` carry; optimize each part.

    Behaves like one ``torch.optim.Optimizer`` (``step``, ``zero_grad``, ``state_dict``, ``param_groups`` for
    schedulers and ``GradScaler``), so the Trainer needs no special casing. Hand it to a Trainer as a factory:
    ``functools.partial(CombinedOptimizer, dense=partial(torch.optim.Adam, lr=1e-3), sparse=partial(RowWiseAdagrad, lr=0.05))``
    (in Hydra: ``_target_: recsys.embeddings.CombinedOptimizer`` with ``_partial_: true``).

    >>> from functools import partial
    >>> from recsys.embeddings import EmbeddingCollection, EmbeddingField, RowWiseAdagrad
    >>> model = nn.Sequential(EmbeddingCollection([EmbeddingField("item", 100, 8)]), nn.Linear(8, 1))
    >>> opt = CombinedOptimizer(model.parameters(), dense=partial(torch.optim.Adam, lr=1e-3),
    ...                         sparse=partial(RowWiseAdagrad, lr=0.1))
    >>> [type(o).__name__ for o in opt.optimizers]
    ['Adam', 'RowWiseAdagrad']
    >>> model(torch.tensor([[3], [7]])).sum().backward(); opt.step(); opt.zero_grad(set_to_none=True)
    """

    def __init__(self, params: Iterable[Tensor], dense: OptimizerFactory, sparse: OptimizerFactory) -> None:
        dense_params, sparse_params = [], []
        for param in params:
            if param.requires_grad:
                (sparse_params if is_sparse_param(param) else dense_params).append(param)
        if not dense_params and not sparse_params:
            raise ConfigError("no trainable parameters", where="CombinedOptimizer", fix="pass model.parameters() of a model with trainable weights")
        self.dense = dense(dense_params) if dense_params else None
        self.sparse = sparse(sparse_params) if sparse_params else None
        self.optimizers = [o for o in (self.dense, self.sparse) if o is not None]
        self.defaults: dict[str, Any] = {}
        self._optimizer_step_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._zero_grad_profile_name = "CombinedOptimizer.zero_grad"

    @property  # type: ignore[override]
    def param_groups(self) -> list[dict[str, Any]]:
        """The groups of both optimizers (the same dicts: an LR scheduler changes them in place)."""
        return [group for o in self.optimizers for group in o.param_groups]

    @param_groups.setter
    def param_groups(self, value: Any) -> None:  # Optimizer internals may assign; groups live in the parts
        pass

    @property  # type: ignore[override]
    def state(self) -> dict[Tensor, Any]:
        """Per-parameter state of both optimizers, merged (read-only view)."""
        return {p: s for o in self.optimizers for p, s in o.state.items()}

    @state.setter
    def state(self, value: Any) -> None:
        pass

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"dense": None if self.dense is None else self.dense.state_dict(), "sparse": None if self.sparse is None else self.sparse.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"dense", "sparse"}:
            raise CheckpointError(
                f"optimizer state has keys {sorted(state_dict)}, expected ['dense', 'sparse']",
                where="CombinedOptimizer.load_state_dict",
                fix="load a state saved by CombinedOptimizer with the same model",
            )
        for name, optimizer in (("dense", self.dense), ("sparse", self.sparse)):
            if (optimizer is None) != (state_dict[name] is None):
                raise CheckpointError(
                    f"the checkpoint's {name} optimizer does not match this model's parameters",
                    where="CombinedOptimizer.load_state_dict",
                    fix="resume with the model (sparse=True/False tables) that wrote the checkpoint",
                )
            if optimizer is not None:
                optimizer.load_state_dict(state_dict[name])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        raise ConfigError("CombinedOptimizer splits parameters once", where="CombinedOptimizer.add_param_group", fix="build a new one with all parameters")

    def __repr__(self) -> str:
        return f"CombinedOptimizer(dense={self.dense!r}, sparse={self.sparse!r})"


def build_optimizer(model: nn.Module, dense: OptimizerFactory, sparse: OptimizerFactory) -> CombinedOptimizer:
    """``CombinedOptimizer(model.parameters(), dense, sparse)``."""
    return CombinedOptimizer(model.parameters(), dense=dense, sparse=sparse)
