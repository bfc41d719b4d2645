"""GRU4Rec: left padding never reaches the state, causality, the three losses, a learned i -> i+1 cycle through
the pipeline, saved runs, new users from histories, bad input."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch

import recsys
from recsys.data.interactions import Interactions
from recsys.data.sequence_batches import NextItemBatches
from recsys.errors import ConfigError, DataError
from recsys.models.gru4rec import GRU4Rec, realign
from recsys.models.sasrec import bce_loss, full_softmax_loss, sampled_softmax_loss

NUM_ITEMS = 10


def cycle_data(num_items: int = NUM_ITEMS, num_users: int = 60, length: int = 8) -> Interactions:
    """Each user walks a cycle over ``num_items`` items from a random start: item i is always followed by i + 1 (mod N)."""
    generator = torch.Generator().manual_seed(0)
    starts = torch.randint(0, num_items, (num_users,), generator=generator)
    items = ((starts[:, None] + torch.arange(length)) % num_items).flatten()
    users = torch.arange(num_users).repeat_interleave(length)
    times = torch.arange(length).repeat(num_users)
    return recsys.from_frame(pl.DataFrame({"user": users.numpy(), "item": items.numpy(), "timestamp": times.numpy()}))


def small(**kwargs: Any) -> GRU4Rec:
    torch.manual_seed(0)
    return GRU4Rec(**{"num_items": 20, "max_len": 8, "embedding_dim": 8, "hidden_size": 12, "dropout": 0.0, **kwargs}).eval()


def test_realign_round_trips_and_right_pads() -> None:
    x = torch.tensor([[0, 0, 3, 4], [0, 5, 6, 7], [1, 2, 3, 4], [0, 0, 0, 0]])
    lengths = (x != 0).sum(1)
    right = realign(x, x.shape[1] - lengths)
    assert right.tolist() == [[3, 4, 0, 0], [5, 6, 7, 0], [1, 2, 3, 4], [0, 0, 0, 0]]
    assert torch.equal(realign(right, lengths), x)
    features = torch.randn(4, 4, 3)  # trailing dimensions follow their row
    assert torch.equal(realign(realign(features, 4 - lengths), lengths), features)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_left_padding_does_not_change_scores(num_layers: int) -> None:
    model = small(num_layers=num_layers)
    history = [4, 6, 2]
    with torch.no_grad():
        short = model.score_sequences(torch.tensor([history]))
        padded = model.score_sequences(torch.tensor([[0] * 5 + history]))  # another max_len
        batched = model.score_sequences(torch.tensor([[0] * 5 + history, list(range(1, 9))]))[:1]
        # the reference: the GRU over the real items only, no padding at all
        h, _ = model.gru(model.item_embedding(torch.tensor([history])))
        reference = model.projection(h[:, -1]) @ model.item_embedding.weight[1 : model.num_items + 1].T
    torch.testing.assert_close(short, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched, reference, rtol=1e-5, atol=1e-5)


def test_pads_would_leak_into_a_plain_gru() -> None:
    """Why the realignment exists: zero inputs move a GRU's state (its biases), so naive left padding changes scores."""
    model = small()
    with torch.no_grad():
        x = model.item_embedding(torch.tensor([[0, 0, 0, 0, 0, 4, 6, 2]]))
        naive, _ = model.gru(x)
        clean, _ = model.gru(x[:, 5:])
    assert not torch.allclose(naive[:, -1], clean[:, -1], atol=1e-4)


def test_every_position_reads_only_its_past() -> None:
    model = small()
    sequence = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 13]])
    with torch.no_grad():
        h = model.encode(sequence)  # (1, T, D)
        for t in range(2, 8):  # position t equals the last position of the prefix ending at t
            prefix = model.encode(sequence[:, 2 : t + 1])[:, -1]
            torch.testing.assert_close(h[:, t], prefix, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", ["ce", "bce", "sampled_softmax"])
def test_loss_uses_positions_with_targets(loss: str) -> None:
    model = small(num_items=5, loss=loss)
    batch = {
        "inputs": torch.tensor([[0, 0, 1, 2], [3, 4, 5, 1]]),
        "targets": torch.tensor([[0, 0, 2, 3], [4, 5, 1, 2]]),
        "negatives": torch.tensor([[[1], [1], [4], [5]], [[1], [2], [3], [4]]]),
    }
    valid = batch["targets"] != 0
    h = model.encode(batch["inputs"])[valid]
    fn = {"ce": full_softmax_loss, "bce": bce_loss, "sampled_softmax": sampled_softmax_loss}[loss]
    expected = fn(h, batch["targets"][valid], batch["negatives"][valid], model.item_embedding.weight)
    value = model.loss(batch)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.gru.parameters())
    assert model.batch_arguments() == {"max_len": 8, "num_negatives": 0 if loss == "ce" else 1}


def fit(data: Interactions, run_dir: Path | None = None, epochs: int = 30, **kwargs: Any) -> recsys.RunResult:
    model = functools.partial(recsys.GRU4Rec, max_len=8, embedding_dim=16, hidden_size=32, dropout=0.0, **kwargs)
    return recsys.run_pipeline(
        data, model, batches=functools.partial(NextItemBatches, batch_size=32),
        optimizer=functools.partial(torch.optim.Adam, lr=0.02),
        trainer=recsys.Trainer(epochs=epochs, device="cpu", progress=False, tensorboard=False, monitor="hr@1", patience=None),
        evaluator=recsys.RankingEvaluator(ks=(1,), metrics=("hr",)), run_dir=run_dir,
    )


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[recsys.RunResult, Path]:
    run_dir = tmp_path_factory.mktemp("gru4rec") / "run"
    return fit(cycle_data(), run_dir), run_dir


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
@pytest.mark.slow  # multi-second: keeps the default run within its 3 minutes
def test_learns_next_item_cycle_through_the_pipeline(fitted: tuple[recsys.RunResult, Path]) -> None:
    result, _ = fitted
    assert result.test["hr@1"] >= 0.9


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
@pytest.mark.parametrize("loss", ["bce", "sampled_softmax"])
def test_sampled_losses_learn_the_cycle_too(loss: str) -> None:
    result = fit(cycle_data(), loss=loss)  # the pipeline hands the batches one negative per position
    assert result.test["hr@1"] >= 0.9


@pytest.mark.slow  # multi-second: keeps the default run within its 3 minutes
def test_saved_run_reproduces_scores_and_serves_new_users(fitted: tuple[recsys.RunResult, Path]) -> None:
    result, run_dir = fitted
    assert json.loads((run_dir / "run.json").read_text())["model"]["target"] == "recsys.models.gru4rec.GRU4Rec"
    loaded = recsys.load_run(run_dir)
    users = torch.arange(result.history.num_users)
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.score_users(users, loaded.history),
                                   result.model.score_users(users, result.history), rtol=0, atol=0)
    # a user the model never saw, scored from a history of original item ids: the cycle continues
    recs = loaded.recommend(["new"], N=1, histories={"new": [3, 4, 5]})
    assert recs["user"].to_list() == ["new"] and recs["item"].to_list() == [6]
    ids, scores = result.model.recommend([7, 8], k=2)  # the model's own API (prepared by the pipeline)
    assert ids[0] == 9 and scores.shape == (2,)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_len": 0}, {"num_items": 0}, {"embedding_dim": 0}, {"hidden_size": 0}, {"num_layers": 0}, {"loss": "hinge"}],
)
def test_bad_configuration(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        GRU4Rec(**{"num_items": 10, "embedding_dim": 8, **kwargs})


def test_bad_input() -> None:
    model = GRU4Rec(num_items=10, max_len=5, embedding_dim=8, loss="bce")
    with pytest.raises(DataError, match="out of range"):
        model.encode(torch.tensor([[0, 1, 11]]))  # 11 is the mask row, not an item
    with pytest.raises(DataError, match="T >= 1"):
        model.encode(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(DataError, match="negatives"):
        model.loss({"inputs": torch.tensor([[1, 2]]), "targets": torch.tensor([[2, 3]])})
    with pytest.raises(ConfigError, match="prepare"):
        model.recommend([1])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    model = small(num_items=30)
    seq = torch.tensor([[0, 0, 3, 5, 7, 9, 2, 4], [1, 2, 3, 4, 5, 6, 7, 8]])
    expected = model.score_sequences(seq)
    torch.testing.assert_close(model.cuda().score_sequences(seq.cuda()).cpu(), expected, rtol=1e-4, atol=1e-4)
