"""recsys.training.optim.Adam: torch.optim.Adam's update bit for bit, state dicts interchangeable, both paths
(torch._dynamo not imported / imported), CPU and CUDA."""

from __future__ import annotations

import pytest
import torch

from recsys.training import optim
from recsys.training.optim import Adam

OPTIONS = [{}, {"amsgrad": True, "weight_decay": 0.1}, {"maximize": True, "betas": (0.8, 0.99)}, {"foreach": True}]


def trajectory(cls: type[torch.optim.Optimizer], device: str = "cpu", steps: int = 4, **options):
    """Weights and optimizer state after ``steps`` Adam steps on a small quadratic (the same for any class)."""
    generator = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(30, 4, generator=generator).to(device))
    b = torch.nn.Parameter(torch.randn(4, generator=generator).to(device))
    opt = cls([{"params": [w]}, {"params": [b], "lr": 0.05}], lr=0.01, **options)
    for _ in range(steps):
        ((w @ b) ** 2).sum().backward()
        opt.step()
        opt.zero_grad()
    return [w.detach().cpu(), b.detach().cpu()], opt


def state_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    state = opt.state_dict()["state"]
    return [value.cpu() for i in sorted(state) for _, value in sorted(state[i].items())]


def assert_same(ours, theirs) -> None:
    (ours_w, ours_opt), (their_w, their_opt) = ours, theirs
    assert all(torch.equal(a, b) for a, b in zip(ours_w, their_w))
    assert all(torch.equal(a, b) for a, b in zip(state_tensors(ours_opt), state_tensors(their_opt)))
    assert ours_opt.state_dict()["param_groups"] == their_opt.state_dict()["param_groups"]


@pytest.mark.parametrize("dynamo_loaded", [False, True])
@pytest.mark.parametrize("options", OPTIONS)
def test_same_update_as_torch(monkeypatch: pytest.MonkeyPatch, options: dict, dynamo_loaded: bool) -> None:
    monkeypatch.setattr(optim, "_dynamo_loaded", lambda: dynamo_loaded)
    assert_same(trajectory(Adam, **options), trajectory(torch.optim.Adam, **options))


def test_state_dicts_interchange_with_torch_adam(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optim, "_dynamo_loaded", lambda: False)
    _, theirs = trajectory(torch.optim.Adam, steps=2)
    weights, ours = trajectory(Adam, steps=2)
    ours.load_state_dict(theirs.state_dict())  # a checkpoint written by torch.optim.Adam resumes here
    assert_same((weights, ours), (weights, theirs))


def test_step_runs_without_grad_and_returns_the_closure_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optim, "_dynamo_loaded", lambda: False)
    w = torch.nn.Parameter(torch.ones(3))
    opt = Adam([w], lr=0.1)
    seen = []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        seen.append(torch.is_grad_enabled())
        return loss

    assert opt.step(closure).item() == 3.0 and seen == [True]
    assert torch.is_grad_enabled()  # restored after the step
    assert torch.allclose(w.detach(), torch.full((3,), 0.9))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("options", [{}, {"fused": True}, {"capturable": True}])
def test_cuda_same_update_as_torch(monkeypatch: pytest.MonkeyPatch, options: dict) -> None:
    monkeypatch.setattr(optim, "_dynamo_loaded", lambda: False)
    assert_same(trajectory(Adam, "cuda", **options), trajectory(torch.optim.Adam, "cuda", **options))
