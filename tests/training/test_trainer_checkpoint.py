"""Checkpoints: atomic writes, corrupt files, wrong content, and resuming a run exactly."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import pytest
import torch

from recsys.errors import CheckpointError
from recsys.training import Trainer, load_checkpoint, save_checkpoint
from tests.training.training_toys import (
    LinearToy,
    SparseToy,
    ToyBatches,
    regression_mse,
)

ADAM = functools.partial(torch.optim.Adam, lr=0.05)


def test_round_trip(tmp_path: Path) -> None:
    state = {
        "model": {"w": torch.arange(3.0)},
        "epoch": 2,
        "history": [{"loss": 0.5}],
        "name": "x",
        "best": None,
    }
    save_checkpoint(tmp_path / "sub" / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "sub" / "c.pt")
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["history"] == [{"loss": 0.5}]


def failing_save(obj, file, *args, **kwargs) -> None:
    file.write(b"PK\x03\x04 half a zip")
    raise OSError("disk full")


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "checkpoint.pt", {"model": {}})
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 1})
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}, "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"(?s)not found.*missing\.pt.*fix"):
        load_checkpoint(tmp_path / "missing.pt")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(
        bytes(
            torch.randint(
                0, 256, (1000,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
            ).tolist()
        )
    )
    with pytest.raises(CheckpointError, match=r"(?s)corrupt.*noise\.pt.*fix"):
        load_checkpoint(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.pt"
    save_checkpoint(path, {"model": {"w": torch.randn(1000)}})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"(?s)corrupt.*cut\.pt"):
        load_checkpoint(path)


class Unsafe:
    pass


def test_not_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pt"
    torch.save({"model": Unsafe()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(path)
    path.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_wrong_content(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"weights": {}})
    with pytest.raises(CheckpointError, match=r"(?s)lacks keys \['model'\].*c\.pt"):
        load_checkpoint(path)
    save_checkpoint(path, torch.ones(2))  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(path)
    save_checkpoint(path, {"model": {}})
    with pytest.raises(CheckpointError, match="optimizer"):
        Trainer(epochs=2, device="cpu", progress=False).fit(LinearToy(), ToyBatches(), ADAM, resume_from=path)


def test_resume_into_a_different_model_says_so(tmp_path: Path) -> None:
    Trainer(epochs=1, device="cpu", progress=False).fit(
        LinearToy(), ToyBatches(num_batches=1), ADAM, run_dir=tmp_path
    )
    with pytest.raises(CheckpointError, match="does not match"):
        Trainer(epochs=2, device="cpu", progress=False).fit(
            LinearToy(dim=3), ToyBatches(num_batches=1, dim=3), ADAM, resume_from=tmp_path / "last.pt"
        )


def run(epochs: int, run_dir: Path, init: dict, *, resume: bool = False, validate=None):
    model = LinearToy(dropout=0.2)
    model.load_state_dict(init)
    result = Trainer(epochs=epochs, device="cpu", progress=False, patience=2).fit(
        model,
        ToyBatches(num_batches=4),
        ADAM,
        validate=validate,
        run_dir=run_dir,
        resume_from=run_dir / "last.pt" if resume else None,
    )
    return model, result


@pytest.mark.parametrize("validated", [False, True])
def test_resume_equals_training_straight_through(tmp_path: Path, validated: bool) -> None:
    torch.manual_seed(0)
    init = LinearToy(dropout=0.2).state_dict()
    validate = (lambda m: {"ndcg@10": -regression_mse(m)}) if validated else None
    torch.manual_seed(1)
    straight, straight_result = run(4, tmp_path / "straight", init, validate=validate)
    torch.manual_seed(1)
    run(2, tmp_path / "split", init, validate=validate)
    torch.manual_seed(99)  # the resumed process starts from a different global RNG state
    resumed, resumed_result = run(4, tmp_path / "split", init, resume=True, validate=validate)
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    drop_time = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]  # noqa: E731
    assert drop_time(resumed_result.history) == drop_time(straight_result.history)
    assert len(resumed_result.history) == 4 and resumed_result.best_epoch == straight_result.best_epoch
    csv_rows = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 4


def test_resume_a_finished_run_restores_best_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    scores = iter([0.5, 0.1, 0.1, 0.1])
    model = LinearToy()
    Trainer(epochs=10, device="cpu", progress=False, patience=3).fit(
        model, ToyBatches(num_batches=2), ADAM, validate=lambda m: {"ndcg@10": next(scores)}, run_dir=tmp_path
    )
    fresh = LinearToy()
    result = Trainer(epochs=10, device="cpu", progress=False, patience=3).fit(
        fresh,
        ToyBatches(num_batches=2),
        ADAM,
        validate=lambda m: {"ndcg@10": 0.0},
        resume_from=tmp_path / "last.pt",
    )
    assert result.stopped_early and result.best_epoch == 1 and len(result.history) == 4
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, model.state_dict()[name])


def test_sparse_adam_state_survives_a_checkpoint(tmp_path: Path) -> None:
    from tests.training.test_trainer import PairBatches

    torch.manual_seed(0)
    Trainer(epochs=1, device="cpu", progress=False).fit(
        SparseToy(), PairBatches(), functools.partial(torch.optim.SparseAdam, lr=0.05), run_dir=tmp_path
    )
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["optimizer"]["state"] and state["epoch"] == 1


def _saves(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record (file name, epoch) of every checkpoint the trainer serializes."""
    import recsys.training.trainer as trainer_module

    calls: list[tuple[str, int]] = []
    real = trainer_module.save_checkpoint

    def counting(path, state):
        calls.append((Path(path).name, state["epoch"]))
        real(path, state)

    monkeypatch.setattr(trainer_module, "save_checkpoint", counting)
    return calls


def test_last_checkpoint_is_throttled_but_never_older_than_the_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _saves(monkeypatch)
    scores = iter([0.1, 0.5, 0.2, 0.2, 0.2])  # epoch 2 is the best, then no improvement
    torch.manual_seed(0)
    Trainer(epochs=5, device="cpu", progress=False, patience=None, checkpoint_every_s=3600).fit(
        LinearToy(), ToyBatches(num_batches=2), ADAM, validate=lambda m: {"ndcg@10": next(scores)}, run_dir=tmp_path
    )
    # improving epochs write checkpoint.pt once (last.pt becomes a link to it); plain epochs wait; the last one writes
    assert calls == [("checkpoint.pt", 1), ("checkpoint.pt", 2), ("last.pt", 5)]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 5
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2
    assert not list(tmp_path.glob(".*.tmp"))


def test_last_checkpoint_links_the_best_when_the_last_epoch_improves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _saves(monkeypatch)
    scores = iter([0.1, 0.2, 0.3])
    Trainer(epochs=3, device="cpu", progress=False, checkpoint_every_s=3600).fit(
        LinearToy(), ToyBatches(num_batches=2), ADAM, validate=lambda m: {"ndcg@10": next(scores)}, run_dir=tmp_path
    )
    assert [name for name, _ in calls] == ["checkpoint.pt"] * 3
    assert (tmp_path / "last.pt").samefile(tmp_path / "checkpoint.pt")
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3


def test_checkpoint_every_zero_writes_last_after_every_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _saves(monkeypatch)
    scores = iter([0.5, 0.1, 0.1])
    Trainer(epochs=3, device="cpu", progress=False, checkpoint_every_s=0).fit(
        LinearToy(), ToyBatches(num_batches=2), ADAM, validate=lambda m: {"ndcg@10": next(scores)}, run_dir=tmp_path
    )
    assert calls == [("checkpoint.pt", 1), ("last.pt", 2), ("last.pt", 3)]


def test_resume_from_a_throttled_last_checkpoint_equals_straight_through(tmp_path: Path) -> None:
    """A run killed between two writes of last.pt resumes from the older one and ends where a straight run does."""
    torch.manual_seed(0)
    init = LinearToy(dropout=0.2).state_dict()

    def killed_at(epoch: int):
        def callback(row: dict) -> bool:
            if row["epoch"] == epoch:
                raise KeyboardInterrupt  # the process dies after epoch 3 trained, before last.pt is due
            return False
        return callback

    def fit(run_dir: Path, resume: bool = False, callbacks=()):
        model = LinearToy(dropout=0.2)
        model.load_state_dict(init)
        Trainer(epochs=4, device="cpu", progress=False, patience=None, checkpoint_every_s=3600).fit(
            model, ToyBatches(num_batches=4), ADAM, validate=lambda m: {"ndcg@10": 0.0}, run_dir=run_dir,
            resume_from=run_dir / "last.pt" if resume else None, callbacks=callbacks)
        return model

    torch.manual_seed(1)
    straight = fit(tmp_path / "straight")
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "split", callbacks=[killed_at(3)])
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 1  # the best epoch's link, epochs 2-3 lost
    torch.manual_seed(99)
    resumed = fit(tmp_path / "split", resume=True)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 4
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 1
    assert len((tmp_path / "split" / "metrics.csv").read_text().splitlines()) == 1 + 4  # epochs 2-3 not doubled
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
