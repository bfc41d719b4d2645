"""Trainer: learning, validation, early stopping, metrics.csv, non-trainable models, NaN, clipping, sparse."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import pytest
import torch

from recsys.errors import ConfigError
from recsys.training import NonFiniteLossError, Trainer, clip_grad_norm, load_checkpoint
from tests.training.training_toys import (
    LinearToy,
    Popularity,
    SparseToy,
    ToyBatches,
    regression_mse,
)

ADAM = functools.partial(torch.optim.Adam, lr=0.05)


def trainer(**kwargs) -> Trainer:
    return Trainer(**{"device": "cpu", "progress": False, **kwargs})


def scripted(values: list[float], snapshots: list[dict] | None = None):
    """A validate callable returning ``values`` in turn (and snapshotting the weights it saw)."""
    it = iter(values)

    def validate(model: LinearToy) -> dict[str, float]:
        assert not model.training and not torch.is_grad_enabled()
        if snapshots is not None:
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"ndcg@10": next(it), "mse": regression_mse(model)}

    return validate


def test_loss_decreases_and_the_planted_signal_is_learned() -> None:
    torch.manual_seed(0)
    model = LinearToy()
    before = regression_mse(model)
    batches = ToyBatches()
    result = trainer(epochs=6, patience=None).fit(model, batches, ADAM)
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < losses[0] / 10
    assert regression_mse(model) < before / 10
    assert batches.epochs_seen == list(range(6))  # set_epoch got the 0-based epoch index
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5, 6]
    assert result.best_epoch == 6 and result.checkpoint is None and not result.stopped_early
    assert result.train_seconds > 0


def test_accepts_a_built_optimizer() -> None:
    torch.manual_seed(0)
    model = LinearToy()
    result = trainer(epochs=3).fit(model, ToyBatches(), torch.optim.SGD(model.parameters(), lr=0.05))
    assert result.history[-1]["loss"] < result.history[0]["loss"]


@pytest.mark.parametrize("with_run_dir", [False, True])
def test_early_stopping_after_patience_restores_best_weights(tmp_path: Path, with_run_dir: bool) -> None:
    torch.manual_seed(0)
    model, snapshots = LinearToy(), []
    run_dir = tmp_path / "run" if with_run_dir else None
    result = trainer(epochs=20, patience=3).fit(
        model,
        ToyBatches(),
        ADAM,
        validate=scripted([0.1, 0.3, 0.2, 0.25, 0.2, 0.9], snapshots),
        run_dir=run_dir,
    )
    assert result.stopped_early and len(result.history) == 5  # 3 evaluations without improvement
    assert (
        result.best_epoch == 2 and result.best_metrics["ndcg@10"] == 0.3 and result.best_metrics["epoch"] == 2
    )
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshots[1][name])
        assert not torch.equal(value, snapshots[-1][name])
    if with_run_dir:
        assert result.checkpoint == run_dir / "checkpoint.pt"
        best = load_checkpoint(result.checkpoint)
        assert best["epoch"] == 2 and torch.equal(
            best["model"]["linear.weight"], snapshots[1]["linear.weight"]
        )
        assert load_checkpoint(run_dir / "last.pt")["epoch"] == 5


def test_mode_min_on_a_loss_like_metric() -> None:
    torch.manual_seed(0)
    result = trainer(epochs=4, monitor="mse", mode="min", patience=1).fit(
        LinearToy(), ToyBatches(), ADAM, validate=scripted([0.0] * 4)
    )
    mses = [row["mse"] for row in result.history]
    assert result.best_metrics["mse"] == min(mses) and result.best_epoch == mses.index(min(mses)) + 1


def test_metrics_csv_has_one_row_per_evaluation(tmp_path: Path) -> None:
    torch.manual_seed(0)
    result = trainer(epochs=5, eval_every=2, tensorboard=False).fit(
        LinearToy(), ToyBatches(num_batches=2), ADAM, validate=scripted([0.1, 0.2, 0.3]), run_dir=tmp_path
    )
    with open(tmp_path / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == [2, 4, 5]  # every 2nd epoch and the last
    assert list(rows[0]) == ["epoch", "loss", "seconds", "ndcg@10", "mse"]
    assert [float(row["ndcg@10"]) for row in rows] == [0.1, 0.2, 0.3]
    assert (
        len(result.history) == 3
        and (tmp_path / "checkpoint.pt").is_file()
        and (tmp_path / "last.pt").is_file()
    )


def test_missing_monitor_lists_available_metrics() -> None:
    with pytest.raises(ConfigError, match=r"ndcg@10.*\n.*\n.*fix: .*mse"):
        trainer(epochs=2).fit(LinearToy(), ToyBatches(num_batches=1), ADAM, validate=lambda m: {"mse": 1.0})


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "maximum"}, {"epochs": -1}, {"patience": 0}, {"eval_every": 0}, {"grad_clip_norm": 0.0}],
)
def test_invalid_arguments_raise_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        Trainer(**kwargs)


def test_trainable_model_needs_batches_and_optimizer() -> None:
    with pytest.raises(ConfigError, match="optimizer"):
        trainer().fit(LinearToy(), ToyBatches(), None)


def test_non_trainable_model_validates_once(tmp_path: Path) -> None:
    model = Popularity()
    assert not model.trainable
    result = trainer(epochs=10).fit(
        model, None, None, validate=lambda m: {"ndcg@10": float(m.counts.sum())}, run_dir=tmp_path
    )
    assert result.history == [{"epoch": 0, "seconds": 0.0, "ndcg@10": 10.0}]
    assert result.best_epoch == 0 and result.best_metrics["ndcg@10"] == 10.0 and not result.stopped_early
    assert torch.equal(load_checkpoint(result.checkpoint)["model"]["counts"], model.counts)
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 2


class NanAt(LinearToy):
    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__()
        self.at, self.calls = (epoch, batch), 0

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        epoch, index = divmod(self.calls, 4)
        self.calls += 1
        loss = super().loss(batch)
        return loss * float("nan") if (epoch + 1, index) == self.at else loss


def test_nan_loss_names_epoch_and_batch() -> None:
    with pytest.raises(NonFiniteLossError, match=r"(?s)nan.*epoch 2, batch 3.*learning rate.*grad_clip_norm"):
        trainer(epochs=3).fit(NanAt(epoch=2, batch=3), ToyBatches(num_batches=4), ADAM)


class RecordingSGD(torch.optim.SGD):
    """SGD that records the global gradient norm it is asked to apply."""

    norms: list[float]

    def step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return super().step(closure)


@pytest.mark.parametrize("clip", [None, 0.5])
def test_grad_clipping_bounds_the_gradient_norm(clip: float | None) -> None:
    torch.manual_seed(0)
    RecordingSGD.norms = []
    trainer(epochs=1, grad_clip_norm=clip).fit(
        LinearToy(), ToyBatches(num_batches=5, scale=100.0), functools.partial(RecordingSGD, lr=1e-4)
    )
    if clip is None:
        assert max(RecordingSGD.norms) > 10
    else:
        assert max(RecordingSGD.norms) <= clip + 1e-4


def test_clip_grad_norm_handles_sparse_and_dense_gradients() -> None:
    model = SparseToy()
    dense = torch.nn.Parameter(torch.ones(3))
    users, items = torch.tensor([1, 1, 2]), torch.tensor([3, 3, 4])
    (model.loss({"user": users, "item": items, "y": torch.full((3,), 50.0)}) + (dense * 100).sum()).backward()
    assert model.users.weight.grad.is_sparse
    params = [*model.parameters(), dense]
    expected = torch.linalg.vector_norm(
        torch.stack([(p.grad.to_dense() if p.grad.is_sparse else p.grad).norm() for p in params])
    )
    total = clip_grad_norm(params, max_norm=1.0)
    torch.testing.assert_close(total, expected)
    after = torch.linalg.vector_norm(
        torch.stack([(p.grad.to_dense() if p.grad.is_sparse else p.grad).norm() for p in params])
    )
    assert after <= 1.0 + 1e-4 and model.users.weight.grad.is_sparse


class PairBatches:
    """Batches of (user, item, rating) from a planted low-rank matrix."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.truth = torch.randn(20, 2, generator=generator) @ torch.randn(2, 30, generator=generator)
        self.pairs = torch.cartesian_prod(torch.arange(20), torch.arange(30))

    def __iter__(self):
        for chunk in self.pairs.split(100):
            users, items = chunk.unbind(-1)
            yield {"user": users, "item": items, "y": self.truth[users, items]}


def test_sparse_embedding_model_trains_with_sparse_adam() -> None:
    torch.manual_seed(0)
    result = trainer(epochs=15, grad_clip_norm=10.0).fit(
        SparseToy(), PairBatches(), functools.partial(torch.optim.SparseAdam, lr=0.05)
    )
    assert result.history[-1]["loss"] < result.history[0]["loss"] / 5


class DtypeRecordingToy(LinearToy):
    """A LinearToy that appends the dtype its linear layer computes in to ``seen``, every step."""

    def __init__(self, seen: list[torch.dtype]) -> None:
        super().__init__()
        self.seen = seen

    def loss(self, batch):
        self.seen.append(self.linear(batch["x"]).dtype)
        return super().loss(batch).float()


def test_an_autocast_the_caller_opened_stays_in_force_on_cpu() -> None:
    seen: list[torch.dtype] = []
    Recording = functools.partial(DtypeRecordingToy, seen)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = trainer(epochs=10).fit(Recording(), ToyBatches(), ADAM)
    trainer(epochs=10).fit(Recording(), ToyBatches(), ADAM)
    batches = len(seen) // 2
    assert batches > 0 and set(seen[:batches]) == {torch.bfloat16} and set(seen[batches:]) == {torch.float32}
    # the cast cache is cleared every step: the forward sees the updated weights, so the signal is learned
    assert result.history[-1]["loss"] < 0.1 * result.history[0]["loss"]


def test_cpu_bf16_autocasts_the_forward_and_still_learns() -> None:
    seen: list[torch.dtype] = []
    torch.manual_seed(0)
    model = DtypeRecordingToy(seen)
    result = trainer(epochs=10, cpu_bf16=True).fit(model, ToyBatches(), ADAM)
    assert seen and set(seen) == {torch.bfloat16}
    assert model.linear.weight.dtype == torch.float32  # master weights stay fp32
    assert result.history[-1]["loss"] < 0.1 * result.history[0]["loss"]
