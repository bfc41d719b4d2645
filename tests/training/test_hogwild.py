"""Hogwild workers: results by rank, shared tables written by every worker, failures reported."""

from __future__ import annotations

import os

import pytest
import torch

from recsys.training import hogwild
from recsys.training.hogwild import run_workers, shared_zeros

MODES = [pytest.param(True, id="processes"), pytest.param(False, id="threads")]


@pytest.fixture
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    forked = request.param and hogwild.can_fork()
    if request.param and not forked:
        pytest.skip("this platform has no fork")
    monkeypatch.setattr(hogwild, "can_fork", lambda: forked)
    return forked


@pytest.mark.parametrize("mode", MODES, indirect=True)
def test_every_worker_writes_its_rows_of_a_shared_table(mode: bool) -> None:
    table = shared_zeros(4, 3) if mode else torch.zeros(4, 3)

    def work(rank: int) -> tuple[int, int]:
        table[rank] += rank + 1  # each worker its own row
        assert torch.get_num_threads() == 1
        return rank, os.getpid()

    results = run_workers(work, workers=4)
    assert [rank for rank, _ in results] == [0, 1, 2, 3]
    assert table[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert (len({pid for _, pid in results}) == 4) == mode  # processes: four pids; threads: one


@pytest.mark.parametrize("mode", MODES, indirect=True)
def test_a_failing_worker_is_reported_with_its_traceback(mode: bool) -> None:
    def work(rank: int) -> int:
        if rank == 1:
            raise ValueError("bad shard")
        return rank

    with pytest.raises((RuntimeError, ValueError), match="bad shard"):
        run_workers(work, workers=2)


def test_torch_threads_are_restored() -> None:
    before = torch.get_num_threads()
    run_workers(lambda rank: rank, workers=2)
    assert torch.get_num_threads() == before
