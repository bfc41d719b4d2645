"""``recsys-train``: Hydra entry point. Bad input exits with code 2, one clear message, no run dir left."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from recsys.cli.config_dir import config_dir
from recsys.cli.experiment import run_experiment
from recsys.errors import RecsysError
from recsys.training import destroy_distributed, is_distributed, is_main_process

USAGE_ERROR = 2
INTERRUPTED = 130  # the shell's code for Ctrl-C


def _run(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
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
    print(
        f"\n{type(result.model).__name__} on {result.dataset} ({result.num_users:,} users, {result.num_items:,} items), "
        f"best epoch {result.best_epoch}, trained in {result.train_seconds:.1f} s"
    )
    print(result.table())
    print(f"run directory: {run_dir}")


def main(argv: list[str] | None = None) -> None:
    """Run ``recsys-train [overrides]``; ``argv`` defaults to the command line."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    started = []

    def task(cfg: DictConfig) -> None:
        started.append(True)
        _run(cfg)

    entry = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")(task)
    try:
        entry()
    except SystemExit as exit_:
        # Hydra reports config errors (unknown key, group or option) itself and exits 1 before the task.
        if exit_.code == 1 and not started:
            raise SystemExit(USAGE_ERROR) from None
        raise


if __name__ == "__main__":
    main()
