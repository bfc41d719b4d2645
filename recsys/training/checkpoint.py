"""Checkpoints: atomic writes, weights-only loads with errors that say how to fix them, and what a
training run saves to be resumed exactly."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recsys.errors import CheckpointError
from recsys.runtime import atomic_write

log = logging.getLogger(__name__)

#: Keys every checkpoint holds; the trainer's own checkpoints hold :data:`TRAINER_KEYS` too.
MODEL_KEYS: tuple[str, ...] = ("model",)
TRAINER_KEYS: tuple[str, ...] = ("model", "optimizer", "epoch", "best_epoch", "best_metrics", "history")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, dicts, lists, numbers, strings) to ``path`` atomically.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "checkpoint.pt"
    >>> save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 3})
    >>> load_checkpoint(path)["epoch"]
    3
    """
    atomic_write(path, lambda file: torch.save(state, file))


def link_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Make ``target`` atomically hold what ``source`` holds, without serializing it again: a hard link (the
    bytes are written once; a later atomic rewrite of either name leaves the other as it was), or a copy
    where the filesystem has no hard links. Returns ``target``.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> save_checkpoint(folder / "checkpoint.pt", {"model": {"w": torch.ones(2)}, "epoch": 3})
    >>> load_checkpoint(link_checkpoint(folder / "checkpoint.pt", folder / "last.pt"))["epoch"]
    3
    """
    source, target = Path(source), Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link.tmp")
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:  # no hard links here (some network and FAT filesystems): copy the bytes
            return atomic_write(target, lambda file: file.write(source.read_bytes()))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return target


_STARTED: float | None = None  # filled by the first process_start_time()


def process_start_time() -> float:
    """When this process started (seconds since the epoch): from ``/proc`` on Linux, else an upper bound
    (the first call)."""
    global _STARTED
    if _STARTED is None:
        try:
            ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
            boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])  # btime is whole seconds
            _STARTED = boot + ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AttributeError):
            _STARTED = time.time()
    return _STARTED


def remove_stale_temp_files(directory: str | Path, before: float | None = None) -> list[Path]:
    """Delete the temporary files :func:`~recsys.runtime.atomic_write` leaves when its process is killed
    (``.{name}.XXXX.tmp``) and last modified before ``before`` (default: this process's start); returns them.

    A writer that is still alive keeps touching its file, so only files older than this process count as
    left over; call it on directories no live process of before this one writes to.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / ".last.pt.abc123.tmp").write_bytes(b"half")
    >>> [p.name for p in remove_stale_temp_files(folder, before=time.time() + 1)]
    ['.last.pt.abc123.tmp']
    """
    before = process_start_time() if before is None else before
    removed = []
    for path in Path(directory).glob(".*.tmp"):
        try:
            if path.is_file() and path.stat().st_mtime < before:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another cleaner got there first
            continue
    if removed:
        log.info("removed %d temporary file(s) left by a killed write in %s", len(removed), directory)
    return removed


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device | None = "cpu",
    *,
    required: Iterable[str] = MODEL_KEYS,
    mmap: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``;
    ``mmap=True`` maps the tensors instead of reading them (a cheap look at the run state).

    Raises :class:`CheckpointError` when the file is missing, corrupt or truncated, holds
    anything but weights-only types, or lacks one of the ``required`` keys.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            "checkpoint not found",
            where=str(path),
            fix="check the path; the trainer writes run_dir/checkpoint.pt (best) "
            "and run_dir/last.pt (to resume)",
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises many types for damaged files
        raise CheckpointError(
            f"checkpoint is corrupt, truncated or not weights-only ({type(error).__name__}: {error})",
            where=str(path),
            fix="delete it and train again, or resume from another checkpoint (e.g. last.pt)",
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint holds a {type(state).__name__}, expected a dict",
            where=str(path),
            fix="save checkpoints with recsys.training.save_checkpoint",
        )
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint lacks keys {missing} (it has {sorted(map(str, state))})",
            where=str(path),
            fix="pass a checkpoint written by recsys.training.Trainer (run_dir/last.pt to resume)",
        )
    return state


def _random_states(device: torch.device, batches: Any = None) -> dict[str, Any]:
    """Global torch (and CUDA) RNG states, plus the batch iterable's: its ``state_dict()`` if it
    has one, else the state of its ``generator`` attribute; keys ``"rng"`` and ``"batches"``."""
    state: dict[str, Any] = {"rng": {"torch": torch.get_rng_state()}}
    if device.type == "cuda":
        state["rng"]["cuda"] = torch.cuda.get_rng_state(device)
    if hasattr(batches, "state_dict") and hasattr(batches, "load_state_dict"):
        state["batches"] = batches.state_dict()
    elif isinstance(getattr(batches, "generator", None), torch.Generator):
        state["batches"] = {"generator": batches.generator.get_state()}
    return state


def _restore_random_states(state: dict[str, Any], device: torch.device, batches: Any = None) -> None:
    """Put back what :func:`_random_states` captured (keys absent from ``state`` are skipped)."""
    rng = state.get("rng", {})
    if "torch" in rng:
        torch.set_rng_state(rng["torch"].cpu())
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)
    if "batches" in state:
        if hasattr(batches, "load_state_dict"):
            batches.load_state_dict(state["batches"])
        elif isinstance(getattr(batches, "generator", None), torch.Generator):
            batches.generator.set_state(state["batches"]["generator"].cpu())


@dataclass
class RunState:
    """Where a training run stands: saved in every trainer checkpoint beside weights and optimizer.

    ``epoch`` counts completed epochs; ``evals_since_best`` is the early-stopping counter;
    ``best_checkpoint`` is the file holding the best weights, if any.
    """

    epoch: int = 0
    best_epoch: int = 0
    best_value: float | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    evals_since_best: int = 0
    best_checkpoint: str | None = None


def training_state(
    run: RunState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    batches: Any = None,
) -> dict[str, Any]:
    """A weights-only-safe checkpoint of a run: model, optimizer, grad scaler, :class:`RunState`
    fields, and RNG states (global torch/CUDA and the batch iterable's)."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "optimizer_class": type(optimizer).__name__,
        "scaler": scaler.state_dict() if scaler is not None else {},
        **asdict(run),
        **_random_states(device, batches),
    }


def resume_training(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    batches: Any = None,
) -> RunState:
    """Load what :func:`training_state` saved into ``model``, ``optimizer``, ``scaler``, the RNGs and
    ``batches``; return the run's :class:`RunState`.

    The optimizer keeps its own hyperparameters (``lr``, ``betas``, ...: what the caller configured, so the
    recorded config is what runs) and takes the checkpoint's state (moments, step counts); a checkpoint of
    another optimizer type is refused. Temporary files a killed write left beside ``path`` are removed.
    """
    device = next(iter(model.parameters()), torch.empty(0)).device
    state = load_checkpoint(path, map_location=device, required=TRAINER_KEYS)
    remove_stale_temp_files(Path(path).parent)
    saved_class = state.get("optimizer_class", type(optimizer).__name__)
    if saved_class != type(optimizer).__name__:
        raise CheckpointError(
            f"checkpoint was trained with {saved_class}, not {type(optimizer).__name__}",
            where=str(path),
            fix="resume with the optimizer that wrote the checkpoint, or train a new run",
        )
    hyperparameters = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group, own in zip(optimizer.param_groups, hyperparameters, strict=True):
            group.update(own)
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(
            f"checkpoint does not match this model or optimizer ({error})",
            where=str(path),
            fix="resume with the same model and optimizer configuration that wrote the checkpoint",
        ) from error
    if scaler is not None and scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    _restore_random_states(state, device, batches)
    log.info("resumed from %s after epoch %d", path, state["epoch"])
    return RunState(**{f.name: state[f.name] for f in fields(RunState) if f.name in state})
