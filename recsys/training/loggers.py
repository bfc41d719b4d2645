"""Per-evaluation metric loggers: a CSV file always, TensorBoard when it is installed."""

from __future__ import annotations

import csv
import importlib.util
import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from recsys.runtime import atomic_write


class MetricLogger(Protocol):
    """Anything that records one row of numbers per evaluation."""

    def log(self, row: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class CSVLogger:
    """One CSV row per call; columns are the union of all keys seen, in first-seen order.

    The whole file is rewritten atomically on every call, so it is always complete.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.csv"
    >>> logger = CSVLogger(path)
    >>> logger.log({"epoch": 1, "loss": 0.5}, step=1); logger.log({"epoch": 2, "ndcg@10": 0.1}, step=2)
    >>> path.read_text().splitlines()
    ['epoch,loss,ndcg@10', '1,0.5,', '2,,0.1']
    """

    def __init__(self, path: str | Path, rows: Iterable[Mapping[str, float]] = ()) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = [dict(row) for row in rows]

    def log(self, row: Mapping[str, float], step: int) -> None:
        self.rows.append(dict(row))
        self._write()

    def close(self) -> None:
        """Nothing to release: every call already wrote the file."""

    def _write(self) -> None:
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(self.path, lambda file: file.write(text.getvalue().encode()))


def tensorboard_available() -> bool:
    """True when ``torch.utils.tensorboard`` can be imported (the ``tensorboard`` package is installed)."""
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoardLogger:
    """Scalars to TensorBoard under ``log_dir``; needs the optional ``tensorboard`` package."""

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, row: Mapping[str, float], step: int) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def make_loggers(
    run_dir: str | Path | None, *, tensorboard: bool = True, history: Iterable[Mapping[str, float]] = ()
) -> list[MetricLogger]:
    """``run_dir/metrics.csv`` (continuing ``history``), plus ``run_dir/tb`` when asked and available."""
    if run_dir is None:
        return []
    run_dir = Path(run_dir)
    loggers: list[MetricLogger] = [CSVLogger(run_dir / "metrics.csv", rows=history)]
    if tensorboard and tensorboard_available():
        try:
            loggers.append(TensorBoardLogger(run_dir / "tb"))
        except ImportError:  # tensorboard present but broken: CSV only, as documented
            pass
    return loggers
