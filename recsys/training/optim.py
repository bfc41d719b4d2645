"""Adam that starts fast: ``torch.optim.Adam``'s update, without importing ``torch._dynamo`` in eager runs.

Every ``torch.optim.Optimizer`` wraps ``add_param_group``, ``zero_grad``, ``state_dict`` and
``load_state_dict`` in ``torch._disable_dynamo`` and ``step`` in graph breaks; the wrappers import
``torch._dynamo`` (and sympy) on first use, about 0.8 s, whatever the options (``foreach``, ``fused``,
``capturable`` change nothing). They matter only while ``torch.compile`` traces, which needs
``torch._dynamo`` imported: :class:`Adam` calls torch's undecorated methods until something has imported
it and torch's decorated ones after, so compiled code sees what it would with ``torch.optim.Adam``.
The update, the state and the ``state_dict`` are torch's own.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import torch

__all__ = ["Adam"]

try:  # torch internals: where a torch release moves them, fall back to torch.optim.Adam's own wrapped methods
    from torch.optim.optimizer import _use_grad_for_differentiable
except ImportError:  # pragma: no cover - depends on the torch release
    _use_grad_for_differentiable = None

_Optimizer = torch.optim.Optimizer
_EAGER = {name: inspect.unwrap(getattr(_Optimizer, name))
          for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict")}
_ADAM_STEP = inspect.unwrap(torch.optim.Adam.step)  # the update, under torch's profiling/grad wrappers
_GUARDED_STEP = (torch.optim.Adam.step if _use_grad_for_differentiable is None
                 else _use_grad_for_differentiable(_ADAM_STEP))  # torch's wrapper, minus the profiler hook (ours runs it)


def _dynamo_loaded() -> bool:
    """Whether anything may be compiling: nothing can before ``torch._dynamo`` is imported.

    True as well where this torch lacks the internals the eager path needs, so torch's methods run."""
    return _use_grad_for_differentiable is None or "torch._dynamo" in sys.modules


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` (same arguments, update and ``state_dict``) that does not import ``torch._dynamo``.

    >>> import sys
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> opt = Adam([w], lr=0.1)
    >>> w.grad = torch.ones(2)
    >>> opt.step()
    >>> opt.zero_grad()
    >>> [round(x, 4) for x in w.tolist()]  # one Adam step moves each weight by lr
    [0.9, 0.9]
    >>> sorted(opt.state_dict()["state"][0])
    ['exp_avg', 'exp_avg_sq', 'step']
    """

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if _dynamo_loaded():
            return super().add_param_group(param_group)
        return _EAGER["add_param_group"](self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if _dynamo_loaded():
            return super().zero_grad(set_to_none)
        return _EAGER["zero_grad"](self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        if _dynamo_loaded():
            return super().state_dict()
        return _EAGER["state_dict"](self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if _dynamo_loaded():
            return super().load_state_dict(state_dict)
        return _EAGER["load_state_dict"](self, state_dict)

    def step(self, closure: Any = None) -> Any:
        """One Adam step (``closure`` re-evaluates the loss, as in torch)."""
        if _dynamo_loaded():
            return _GUARDED_STEP(self, closure)
        prev = torch.is_grad_enabled()
        try:  # what torch's wrapper does, less its graph breaks
            torch.set_grad_enabled(self.defaults["differentiable"])
            return _ADAM_STEP(self, closure)
        finally:
            torch.set_grad_enabled(prev)
