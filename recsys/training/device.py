"""Pick the torch device to train on: ``"auto"`` or an explicit name, validated."""

from __future__ import annotations

import torch

from recsys.errors import ConfigError


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def available_devices() -> list[str]:
    """Names of the devices this machine can train on, best first.

    >>> "cpu" in available_devices()
    True
    """
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        names.append("mps")
    return [*names, "cpu"]


def resolve_device(device: str = "auto") -> torch.device:
    """The device named by ``device``: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``,
    ``"cuda"``, ``"cuda:1"`` or ``"mps"``; raises :class:`ConfigError` if it is unavailable.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
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
            where="trainer.device",
            fix=f"use 'auto' or one of: {', '.join(available_devices())}",
        )
    return resolved
