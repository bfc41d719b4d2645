"""trainer.threads: the automatic rule as a pure function, explicit counts, and no lasting global change."""

from __future__ import annotations

import functools

import pytest
import torch

from recsys.errors import ConfigError
from recsys.training import Trainer
from recsys.training import threads as threads_module
from recsys.training.threads import auto_threads, resolve_threads, torch_threads
from tests.training.training_toys import LinearToy, ToyBatches

ADAM = functools.partial(torch.optim.Adam, lr=0.05)


@pytest.mark.parametrize(
    ("usable", "load", "expected"),
    [
        (2, 0.0, 2),  # idle
        (2, 1.0, 2),  # this process alone
        (2, 2.2, 1),  # one other busy task
        (2, 7.6, 1),  # the measured shared machine: 31 s with 2 threads, 4.4 s with 1
        (16, 4.4, 13),
        (16, 40.0, 1),
        (8, None, 8),  # no load average on this OS
    ],
)
def test_auto_rule(usable: int, load: float | None, expected: int) -> None:
    assert auto_threads(usable, load) == expected


def test_resolve_reads_affinity_and_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads_module, "usable_cpus", lambda: 4)
    monkeypatch.setattr(threads_module.os, "getloadavg", lambda: (3.0, 1.0, 0.5))
    assert resolve_threads(None) == 2
    assert resolve_threads(3) == 3  # an explicit count wins over the load


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_invalid_counts_fail_clearly(bad) -> None:
    with pytest.raises(ConfigError, match="trainer.threads"):
        resolve_threads(bad)
    with pytest.raises(ConfigError, match="threads"):
        Trainer(threads=bad)


class ThreadProbe(LinearToy):
    """Records torch's thread count at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def loss(self, batch):
        self.seen.append(torch.get_num_threads())
        return super().loss(batch)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def test_fit_uses_the_count_and_restores_it(two_threads: int) -> None:
    model = ThreadProbe()
    Trainer(epochs=2, device="cpu", progress=False, threads=1).fit(model, ToyBatches(num_batches=2), ADAM)
    assert set(model.seen) == {1}
    assert torch.get_num_threads() == two_threads


def test_fit_restores_the_count_when_it_fails(two_threads: int) -> None:
    class Boom(ThreadProbe):
        def loss(self, batch):
            super().loss(batch)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(epochs=1, device="cpu", progress=False, threads=1).fit(Boom(), ToyBatches(num_batches=1), ADAM)
    assert torch.get_num_threads() == two_threads


def test_context_restores_after_an_error(two_threads: int) -> None:
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError
    assert torch.get_num_threads() == two_threads
