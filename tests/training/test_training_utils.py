"""Device resolution, seeding and metric loggers."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from recsys.errors import ConfigError
from recsys.training import CSVLogger, resolve_device, seed_everything
from recsys.training.loggers import make_loggers, tensorboard_available


def test_resolve_device_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = (
        "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    )
    assert resolve_device().type == expected


@pytest.mark.parametrize("name", ["tpu", "cuda:99", "gpu0", ""])
def test_unavailable_or_invalid_device_lists_what_is_available(name: str) -> None:
    with pytest.raises(ConfigError, match=r"(?s)not available.*fix: .*cpu"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_a_gpu() -> None:
    with pytest.raises(ConfigError, match="'cuda'"):
        resolve_device("cuda")


def test_seed_everything_repeats_all_generators() -> None:
    import random

    import numpy as np

    def draw() -> tuple:
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    seed_everything(3)
    first = draw()
    seed_everything(3)
    assert draw() == first


def test_csv_logger_unions_columns_and_continues_history(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    logger = CSVLogger(path, rows=[{"epoch": 1, "loss": 2.0}])
    logger.log({"epoch": 2, "loss": 1.0, "ndcg@10": 0.3}, step=2)
    logger.close()
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows == [
        {"epoch": "1", "loss": "2.0", "ndcg@10": ""},
        {"epoch": "2", "loss": "1.0", "ndcg@10": "0.3"},
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_make_loggers() -> None:
    assert make_loggers(None) == []


def test_tensorboard_only_when_installed(tmp_path: Path) -> None:
    loggers = make_loggers(tmp_path, tensorboard=True)
    assert len(loggers) == (2 if tensorboard_available() else 1)
    assert len(make_loggers(tmp_path, tensorboard=False)) == 1
    for logger in loggers:
        logger.log({"epoch": 1, "loss": 0.5}, step=1)
        logger.close()
    if tensorboard_available():
        assert any((tmp_path / "tb").iterdir())


class FakeWriter:
    """Stands in for ``torch.utils.tensorboard.SummaryWriter`` where tensorboard is not installed."""

    scalars: list[tuple[str, float, int]] = []

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        self.scalars.append((tag, value, global_step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_trainer_logs_to_tensorboard_when_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import functools
    import sys
    import types

    from tests.training.training_toys import LinearToy, ToyBatches

    from recsys.training import Trainer, loggers

    monkeypatch.setitem(
        sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter)
    )
    monkeypatch.setattr(loggers, "tensorboard_available", lambda: True)
    FakeWriter.scalars = []
    Trainer(epochs=2, device="cpu", progress=False).fit(
        LinearToy(),
        ToyBatches(num_batches=1),
        functools.partial(torch.optim.SGD, lr=0.01),
        validate=lambda m: {"ndcg@10": 0.5},
        run_dir=tmp_path,
    )
    assert [(tag, step) for tag, _, step in FakeWriter.scalars if tag != "seconds"] == [
        ("loss", 1),
        ("ndcg@10", 1),
        ("loss", 2),
        ("ndcg@10", 2),
    ]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sparse", [False, True])
def test_mixed_precision_on_cuda(sparse: bool) -> None:
    import functools

    from tests.training.test_trainer import PairBatches
    from tests.training.training_toys import LinearToy, SparseToy, ToyBatches

    from recsys.training import Trainer

    torch.manual_seed(0)
    model, batches, optimizer = (
        (SparseToy(), PairBatches(), functools.partial(torch.optim.SparseAdam, lr=0.05))
        if sparse
        else (LinearToy(), ToyBatches(), functools.partial(torch.optim.Adam, lr=0.05))
    )
    result = Trainer(epochs=5, device="cuda", mixed_precision=True, grad_clip_norm=10.0, progress=False).fit(
        model, batches, optimizer
    )
    assert model.device.type == "cuda"
    assert result.history[-1]["loss"] < result.history[0]["loss"]
