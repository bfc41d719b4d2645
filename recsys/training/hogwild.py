"""Hogwild workers: run ``work(rank)`` for ``rank < workers`` at once, all writing to the same CPU tables.

The machinery under the Hogwild engines (:mod:`recsys.training.sgns`, :mod:`recsys.training.bpr_hogwild`).

Python threads do not scale for training loops made of many small torch ops (every op re-takes
the GIL; two threads measured 1.1-1.2x of one). So on Linux, ranks ``1..workers-1`` run in forked
processes and rank 0 in the caller; the tables they update must live in memory that survives the
fork as *shared*, which :func:`shared_zeros` allocates (an anonymous ``MAP_SHARED`` mapping, so
no ``/dev/shm`` size limit applies). Where ``fork`` is not available, threads run the ranks.
Every worker uses one intra-op torch thread.
"""

from __future__ import annotations

import math
import mmap
import multiprocessing
import sys
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
from torch import Tensor

__all__ = ["can_fork", "run_workers", "seed_from", "shared_zeros"]

T = TypeVar("T")


def can_fork() -> bool:
    """True where workers run as forked processes (Linux, not inside a daemonic process); elsewhere they are threads."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon


def seed_from(generator: torch.Generator | None) -> int:
    """An integer seed drawn from ``generator`` (0 when there is none), from which the engines derive
    one generator per epoch and worker, so every worker's draws are reproducible.

    >>> seed_from(torch.Generator().manual_seed(0)) == seed_from(torch.Generator().manual_seed(0))
    True
    """
    if generator is None:
        return 0
    return int(torch.randint(1 << 62, (1,), generator=generator))


def shared_zeros(*shape: int) -> Tensor:
    """A zero float32 CPU tensor whose memory forked children share with this process.

    >>> table = shared_zeros(3, 2)
    >>> table.shape, float(table.abs().sum())
    (torch.Size([3, 2]), 0.0)
    """
    count = math.prod(shape)
    buffer = mmap.mmap(-1, max(count, 1) * 4)  # anonymous, MAP_SHARED, zero-filled
    return torch.frombuffer(buffer, dtype=torch.float32, count=count).view(shape)


def run_workers(work: Callable[[int], T], workers: int) -> list[T]:
    """``[work(0), ..., work(workers - 1)]``, run concurrently with one torch thread each.

    A failing worker raises ``RuntimeError`` with its traceback here, after every worker has ended.

    >>> run_workers(lambda rank: rank * 10, workers=3)
    [0, 10, 20]
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if workers <= 1:
            return [work(0)]
        if can_fork():
            return _forked(work, workers)
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(work, range(workers)))
    finally:
        torch.set_num_threads(threads)


def _forked(work: Callable[[int], T], workers: int) -> list[T]:
    context = multiprocessing.get_context("fork")
    pipes = [context.Pipe(duplex=False) for _ in range(1, workers)]

    def child(rank: int, send: multiprocessing.connection.Connection) -> None:
        torch.set_num_threads(1)
        try:
            send.send((work(rank), None))
        except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises
            send.send((None, "".join(traceback.format_exception(error))))

    processes = [context.Process(target=child, args=(rank, send), daemon=True) for rank, (_, send) in enumerate(pipes, 1)]
    with warnings.catch_warnings():  # Python >= 3.12 warns on fork with threads alive; children only run torch ops
        warnings.simplefilter("ignore", DeprecationWarning)
        for process in processes:
            process.start()
    for _, send in pipes:  # the children hold the write ends; a dead child then reads as end-of-file
        send.close()
    results: list[T] = []
    errors: list[str] = []
    try:
        results.append(work(0))
    except Exception as error:  # noqa: BLE001 - reported with the children's errors below
        errors.append(f"worker 0:\n{''.join(traceback.format_exception(error))}")
    except BaseException:  # KeyboardInterrupt: stop the children too
        for process in processes:
            process.terminate()
        raise
    for rank, (process, (receive, _)) in enumerate(zip(processes, pipes), 1):
        try:
            value, error = receive.recv()
        except EOFError:
            value, error = None, "exited without a result"
        process.join()
        results.append(value)
        if error is not None:
            errors.append(f"worker {rank} (exit code {process.exitcode}):\n{error}")
    if errors:
        raise RuntimeError("Hogwild workers failed:\n" + "\n".join(errors))
    return results
