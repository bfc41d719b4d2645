"""``recsys-train``: Hydra entry point. Bad input exits with code 2, one clear message, no run dir left.

Each run owns its directory: it claims ``run.lock`` there exclusively before anything else, and a run that
finds the lock taken (two started in the same microsecond, or the same ``hydra.run.dir`` twice) moves to
``<dir>-2``, ``<dir>-3``, ... A run reads no other run's files but the ``resume_from`` it is given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from recsys.cli.config_dir import config_dir
from recsys.cli.experiment import run_experiment
from recsys.data.ctr_files import default_name
from recsys.errors import RecsysError
from recsys.training import destroy_distributed, is_distributed, is_main_process

USAGE_ERROR = 2
INTERRUPTED = 130  # the shell's code for Ctrl-C
LOCK = "run.lock"
RUN_FILES = ("config.yaml", "last.pt", "checkpoint.pt")  # a folder holding one is a run's, lock or not


def _lock(run_dir: Path) -> bool:
    """Create ``run_dir/run.lock`` exclusively (holding this process's host and pid); False if it exists."""
    try:
        fd = os.open(run_dir / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as file:
        file.write(f"{socket.gethostname()} {os.getpid()}\n")
    return True


def claim_run_dir(run_dir: Path) -> Path:
    """``run_dir`` if this process could lock it, else the first ``<run_dir>-N`` (N = 2, 3, ...) it creates.

    Hydra has already made ``run_dir`` (and ``.hydra/``) when two runs share it; the one that loses the
    lock gets a fresh folder, made with ``mkdir(exist_ok=False)`` so no two runs can get the same one, and
    its own ``.hydra/`` (copied from Hydra's, which both runs wrote with the same content).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if not any((run_dir / name).exists() for name in RUN_FILES) and _lock(run_dir):
        return run_dir
    for n in range(2, 10_000):
        candidate = run_dir.with_name(f"{run_dir.name}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        if not _lock(candidate):  # cannot happen: the folder is ours; be safe anyway
            continue
        if (run_dir / ".hydra").is_dir():
            shutil.copytree(run_dir / ".hydra", candidate / ".hydra")
        _move_log_files(run_dir, candidate)
        print(f"{run_dir} belongs to another run; this run writes to {candidate}", file=sys.stderr)
        return candidate
    raise RuntimeError(f"no free run directory beside {run_dir}")


def _move_log_files(old: Path, new: Path) -> None:
    """Point the log file handlers Hydra opened in ``old`` (``train.log``) at the same name in ``new``."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == old.resolve():
            handler.acquire()
            try:
                handler.close()
                handler.baseFilename = str(new.resolve() / Path(handler.baseFilename).name)
                handler.stream = handler._open()
            finally:
                handler.release()


def _run(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 writes the run
        run_dir = claim_run_dir(run_dir)
    try:
        result = run_experiment(cfg, run_dir)
        main_process = is_main_process()  # read before the process group is torn down
    except RecsysError as error:
        shutil.rmtree(run_dir, ignore_errors=True)
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None
    except KeyboardInterrupt:
        last = run_dir / "last.pt"
        if last.is_file():
            print(f"\ninterrupted; resume with: recsys-train <same overrides> resume_from={last}", file=sys.stderr)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
            print("\ninterrupted before the first epoch ended; nothing to resume", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    finally:
        if is_distributed():
            destroy_distributed()
    if not main_process:
        return
    size = (f"{result.num_users:,} users, {result.num_items:,} items" if result.num_users or result.num_items
            else f"{result.fit_interactions:,} training rows")  # CTR rows have no user/item vocabularies
    print(f"\n{type(result.model).__name__} on {result.dataset} ({size}), best epoch {result.best_epoch} "
          f"(trainer.monitor={cfg.trainer.monitor}), trained in {result.train_seconds:.1f} s")
    print(result.table())
    print(f"run directory: {run_dir}")


def dataset_slug(dataset: object) -> str:
    """The run directory's dataset part, from the ``dataset`` config (or its name): a dataset name as is, a file
    path by its stem (``/x/Beauty.txt`` -> ``Beauty``), CTR files by their ``name`` or the train file's stem.

    >>> dataset_slug("ml-100k"), dataset_slug("/data/my clicks.csv")
    ('ml-100k', 'my_clicks')
    >>> dataset_slug({"name": None, "train": "/data/frappe/frappe.train.libfm"})
    'frappe'
    """
    if isinstance(dataset, (DictConfig, Mapping)):
        name = dataset.get("name")
        dataset = name if name is not None or dataset.get("train") is None else default_name(dataset["train"])
    text = str(dataset)
    if "/" in text or "\\" in text or Path(text).suffix in (".csv", ".parquet", ".txt", ".tsv"):
        text = Path(text).stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "dataset"


def _multirun(argv: list[str]) -> bool:
    """Whether a command line asks for Hydra's multirun (``-m``, ``--multirun`` or a ``hydra.mode`` override)."""
    return any(arg in ("-m", "--multirun") or arg.lstrip("+~").startswith("hydra.mode=") for arg in argv)


@contextlib.contextmanager
def _compose_once(argv: list[str]) -> Iterator[None]:
    """A single run composes its config once, not twice: Hydra 1.3 composes the whole config an extra time only
    to read ``hydra.mode`` (``Hydra.get_mode``, about 0.2 s of the default run), and a ``None`` answer means
    "a run" when the command line has no ``-m``. Without ``-m`` the answer is ``None`` here, so a config
    setting ``hydra.mode: MULTIRUN`` by itself (none of ``conf/`` does) needs ``-m``; Hydra is left as it was
    after the run, and untouched where its internals differ."""
    from hydra._internal.hydra import Hydra

    original = Hydra.__dict__.get("get_mode")
    if _multirun(argv) or original is None:
        yield
        return
    Hydra.get_mode = lambda self, config_name, overrides: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        Hydra.get_mode = original  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    """Run ``recsys-train [overrides]``; ``argv`` defaults to the command line."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    OmegaConf.register_new_resolver("dataset_slug", dataset_slug, replace=True)  # conf/train.yaml's run directory
    started = []

    def task(cfg: DictConfig) -> None:
        started.append(True)
        _run(cfg)

    entry = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")(task)
    try:
        with _compose_once(sys.argv[1:]):
            entry()
    except SystemExit as exit_:
        # Hydra reports config errors (unknown key, group or option) itself and exits 1 before the task.
        if exit_.code == 1 and not started:
            raise SystemExit(USAGE_ERROR) from None
        raise


if __name__ == "__main__":
    main()
