"""What every layer shares about the machine and the file system: the one device resolver, the one
atomic writer and the run-once guard of compiled kernels. Imports nothing of recsys but its errors, so data,
models, text and training all use it."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from recsys.errors import ConfigError

__all__ = ["atomic_write", "atomic_write_text", "available_devices", "numba_available", "numba_threads", "once", "progress_bar",
           "resolve_device"]


def progress_bar(*args: Any, **kwargs: Any) -> Any:
    """A tqdm bar: a widget in Jupyter when ipywidgets is installed, the text bar otherwise (``tqdm.auto``
    warns in a kernel without ipywidgets; this does not).

    >>> sum(progress_bar(range(3), disable=True))
    3
    """
    return _bar_class()(*args, **kwargs)


def once(function: Callable[[], None]) -> Callable[[], None]:
    """``function`` run at most once (after a success), thread-safe: a caller that arrives while another thread
    runs it waits for that run. Loading compiled kernels needs it: a background warm-up and a fit must not both
    launch the kernel, and numba's ``workqueue`` threading layer (its default where OpenMP and TBB are missing)
    aborts the process on concurrent launches.

    >>> calls = []
    >>> hello = once(lambda: calls.append(1))
    >>> hello(); hello(); calls
    [1]
    """
    lock, done = threading.Lock(), threading.Event()

    @functools.wraps(function)
    def call() -> None:
        if done.is_set():
            return
        with lock:
            if not done.is_set():
                function()
                done.set()

    return call


def numba_available() -> bool:
    """Whether numba imports here: the compiled CPU loops (BPR, SGNS, top-k selection, Dice) need it, and each falls back
    to vectorized torch without it.

    >>> isinstance(numba_available(), bool)
    True
    """
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        return False
    return True


@contextlib.contextmanager
def numba_threads() -> Any:
    """numba's thread count set to torch's (``torch.get_num_threads()``) inside the block, restored after."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@functools.cache
def _bar_class() -> type:
    if importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def available_devices() -> list[str]:
    """Names of the devices this machine can compute on, best first.

    >>> "cpu" in available_devices()
    True
    """
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        names.append("mps")
    return [*names, "cpu"]


def resolve_device(device: str | torch.device = "auto", where: str = "device") -> torch.device:
    """The device named by ``device``: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``,
    ``"cuda"``, ``"cuda:1"`` or ``"mps"``; raises :class:`ConfigError` if it is unavailable.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        resolved = None
    usable = resolved is not None and (
        resolved.type == "cpu"
        or (resolved.type == "mps" and _mps_available())
        or (
            resolved.type == "cuda"
            and torch.cuda.is_available()
            and (resolved.index is None or resolved.index < torch.cuda.device_count())
        )
    )
    if not usable:
        raise ConfigError(
            f"device {device!r} is not available on this machine",
            where=where,
            fix=f"use 'auto' or one of: {', '.join(available_devices())}",
        )
    return resolved


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it onto ``path``.

    Readers see the old file or the new one, never half of one; on failure (or Ctrl-C) the
    temporary file is removed and ``path`` is left as it was. Returns ``path``.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_write(target, lambda file: file.write(b"hi")).read_text()
    'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600: results on a shared machine stay readable
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda file: file.write(text.encode("utf-8")))
