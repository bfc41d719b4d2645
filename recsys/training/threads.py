"""How many CPU threads torch uses while training: what this process may use, less what others keep busy.

On a shared machine torch's default (one thread per core) oversubscribes the CPUs: a default run took
3.0 s idle, 31 s at load 7.6 and 4.4 s with one thread under the same load.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from recsys.errors import ConfigError

__all__ = ["auto_threads", "resolve_threads", "torch_threads", "usable_cpus"]


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (cgroups/taskset) where the OS has one, else all."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def auto_threads(usable: int, load: float | None) -> int:
    """The rule behind ``trainer.threads: null``: ``usable - round(load) + 1``, clamped to ``[1, usable]``.

    ``load`` is the 1-minute load average (runnable tasks); one of them is this process itself, so
    every task beyond it takes one CPU away. ``None`` (no load average on this OS) means ``usable``.

    >>> auto_threads(16, 0.1), auto_threads(16, 1.0), auto_threads(16, 4.4), auto_threads(2, 7.6)
    (16, 16, 13, 1)
    """
    if load is None:
        return usable
    return max(1, min(usable, usable - round(load) + 1))


def resolve_threads(threads: int | None) -> int:
    """``threads`` if given (an explicit int wins), else :func:`auto_threads` for this machine now."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"invalid trainer.threads: {threads!r}", where="trainer.threads",
                              fix="an int >= 1, or null for automatic")
        return threads
    try:
        load: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows, or no /proc/loadavg
        load = None
    return auto_threads(usable_cpus(), load)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """``torch.set_num_threads(threads)`` inside the block, the previous count restored after it.

    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)
