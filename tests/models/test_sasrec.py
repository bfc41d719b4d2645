"""SASRec: hand-computed losses, causality, padding invariance, a learned i -> i+1 cycle, inference API, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
import torch

from recsys.data.frame import from_frame
from recsys.data.interactions import Interactions
from recsys.data.sequence_batches import NextItemBatches
from recsys.data.splits import leave_one_out
from recsys.errors import ConfigError, DataError
from recsys.evaluation.ranking import RankingEvaluator
from recsys.models.sasrec import SASRec, bce_loss, full_softmax_loss, sampled_softmax_loss


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# item table rows: 0 padding, 1..3 items, 4 mask; two positions with hidden states h
H = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
W = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, -1.0], [-1.0, 0.0], [9.0, 9.0]])
TARGETS = torch.tensor([1, 3])
NEGATIVES = torch.tensor([[2, 3], [1, 2]])


def test_bce_loss_hand_computed() -> None:
    # position 0: pos h.w1 = 1, negs 0.5, -1; position 1: pos h.w3 = 0, negs 2, -2
    expected = (
        -(math.log(_sigmoid(1)) + math.log(_sigmoid(-0.5)) + math.log(_sigmoid(1)))
        - (math.log(_sigmoid(0)) + math.log(_sigmoid(-2)) + math.log(_sigmoid(2)))
    ) / 2
    assert bce_loss(H, TARGETS, NEGATIVES, W).item() == pytest.approx(expected, rel=1e-6)


def test_sampled_softmax_loss_hand_computed() -> None:
    first = -1 + math.log(math.exp(1) + math.exp(0.5) + math.exp(-1))
    second = -0 + math.log(math.exp(0) + math.exp(2) + math.exp(-2))
    assert sampled_softmax_loss(H, TARGETS, NEGATIVES, W).item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_full_softmax_loss_hand_computed_ignores_padding_and_mask_rows() -> None:
    # logits over items 1..3 only: position 0 -> (1, 0.5, -1), target item 1; position 1 -> (2, -2, 0), target 3
    first = -1 + math.log(math.exp(1) + math.exp(0.5) + math.exp(-1))
    second = -0 + math.log(math.exp(2) + math.exp(-2) + math.exp(0))
    assert full_softmax_loss(H, TARGETS, None, W).item() == pytest.approx((first + second) / 2, rel=1e-6)


@pytest.mark.parametrize("loss", ["ce", "bce", "sampled_softmax"])
def test_model_loss_uses_positions_with_targets(loss: str) -> None:
    torch.manual_seed(0)
    model = SASRec(num_items=5, max_len=4, embedding_dim=8, loss=loss, dropout=0.0).eval()
    batch = {
        "inputs": torch.tensor([[0, 0, 1, 2], [3, 4, 5, 1]]),
        "targets": torch.tensor([[0, 0, 2, 3], [4, 5, 1, 2]]),
        "negatives": torch.tensor([[[1], [1], [4], [5]], [[1], [2], [3], [4]]]),
    }
    valid = batch["targets"] != 0
    h = model.encode(batch["inputs"])[valid]
    fn = {"ce": full_softmax_loss, "bce": bce_loss, "sampled_softmax": sampled_softmax_loss}[loss]
    expected = fn(h, batch["targets"][valid], batch["negatives"][valid], model.item_embedding.weight)
    assert model.loss(batch).item() == pytest.approx(expected.item(), rel=1e-6)


def test_no_position_sees_the_future() -> None:
    torch.manual_seed(0)
    model = SASRec(num_items=20, max_len=6, embedding_dim=8, dropout=0.0).eval()
    seq = torch.tensor([[0, 3, 5, 7, 9, 11]])
    changed = seq.clone()
    changed[0, 4] = 17
    a, b = model.encode(seq), model.encode(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_padding_does_not_change_scores() -> None:
    torch.manual_seed(0)
    model = SASRec(num_items=20, max_len=8, embedding_dim=8, dropout=0.0).eval()
    short = model.score_sequences(torch.tensor([[4, 6, 2]]))
    padded = model.score_sequences(torch.tensor([[0, 0, 0, 0, 0, 4, 6, 2]]))
    batched = model.score_sequences(torch.tensor([[0, 0, 0, 0, 0, 4, 6, 2], [1, 2, 3, 4, 5, 6, 7, 8]]))[:1]
    torch.testing.assert_close(short, padded, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched, padded, rtol=1e-5, atol=1e-5)


def _cycle_data(num_items: int = 20, num_users: int = 100, length: int = 10) -> Interactions:
    """Each user reads consecutive items around a cycle from a random start: i is always followed by i + 1 (mod N)."""
    generator = torch.Generator().manual_seed(0)
    starts = torch.randint(0, num_items, (num_users,), generator=generator)
    items = ((starts[:, None] + torch.arange(length)) % num_items).flatten()
    users = torch.arange(num_users).repeat_interleave(length)
    times = torch.arange(length).repeat(num_users)
    frame = pl.DataFrame({"user": users.numpy(), "item": items.numpy(), "timestamp": times.numpy()})
    return from_frame(frame)


def _train(model: SASRec | torch.nn.Module, batches, steps: int, lr: float = 0.01) -> None:  # type: ignore[no-untyped-def]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    step = 0
    while step < steps:
        batches.set_epoch(step)
        for batch in batches:
            loss = model.loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
@pytest.mark.parametrize("loss, negatives", [("ce", 0), ("bce", 1), ("sampled_softmax", 5)])
def test_learns_next_item_cycle(loss: str, negatives: int) -> None:
    torch.manual_seed(0)
    data = _cycle_data()
    split = leave_one_out(data)
    model = SASRec(data.num_items, max_len=8, embedding_dim=32, num_layers=1, dropout=0.0, loss=loss)
    model.prepare(split.train)
    batches = NextItemBatches(split.train, max_len=8, batch_size=50, num_negatives=negatives, seed=0)
    _train(model, batches, steps=100)
    metrics = RankingEvaluator(ks=(1,), metrics=("hr",)).evaluate_model(model, split.train.concat(split.valid), split.test)
    assert metrics["hr@1"] > 0.95


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_history_masking_and_inference_api() -> None:
    torch.manual_seed(0)
    data = _cycle_data()
    model = SASRec(data.num_items, max_len=8, embedding_dim=32, num_layers=1, dropout=0.0)
    model.prepare(data)
    _train(model, NextItemBatches(data, max_len=8, batch_size=50, num_negatives=0), steps=100)
    ids, scores = model.recommend([3, 4, 5], k=3)
    assert ids[0] == 6 and scores.shape == (3,) and bool((scores[:-1] >= scores[1:]).all())
    # an already seen item is filtered unless asked otherwise
    assert 4 not in model.recommend([4, 5, 4], k=19)[0]
    assert 4 in model.recommend([4, 5, 4], k=20, filter_already_liked_items=False)[0]
    with pytest.raises(DataError, match="unknown id"):
        model.recommend([3, 999])
    assert model.recommend([3, 999, 4], k=1, skip_unknown=True)[0] == [5]
    with pytest.raises(DataError, match="empty history"):
        model.recommend([])
    with pytest.raises(DataError, match="empty history"):
        model.recommend([999], skip_unknown=True)
    # all users in batches: seen items never recommended, equal to score_users' top-k otherwise
    top, values = model.recommend_users(data, k=5, batch_size=32)
    assert top.shape == (data.num_users, 5)
    seen = data.user_item_matrix().to_dense().bool()
    assert not seen.gather(1, top).any()
    scores = model.score_users(torch.arange(data.num_users), data).masked_fill(seen, float("-inf"))
    torch.testing.assert_close(values, scores.topk(5, dim=1).values)
    # score_users reads each user's own history: the last item decides the prediction
    last = data.padded_sequences(1)[:, 0] - 1
    predicted = model.score_users(torch.arange(data.num_users), data).argmax(1)
    assert (predicted == (last + 1) % data.num_items).float().mean() > 0.9


def test_state_dict_round_trip() -> None:
    model = SASRec(num_items=10, max_len=5, embedding_dim=8).eval()
    other = SASRec(num_items=10, max_len=5, embedding_dim=8).eval()
    other.load_state_dict(model.state_dict())
    seq = torch.tensor([[0, 1, 2, 3, 4]])
    torch.testing.assert_close(model.score_sequences(seq), other.score_sequences(seq))


@pytest.mark.parametrize(
    "kwargs",
    [{"max_len": 0}, {"max_len": -1}, {"num_items": 0}, {"embedding_dim": 0}, {"loss": "hinge"},
     {"activation": "tanh"}, {"num_heads": 3}],
)
def test_bad_configuration(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SASRec(**{"num_items": 10, "embedding_dim": 8, **kwargs})


def test_bad_input() -> None:
    model = SASRec(num_items=10, max_len=5, embedding_dim=8, loss="bce")
    with pytest.raises(DataError, match="out of range"):
        model.encode(torch.tensor([[0, 1, 11]]))  # 11 > num_items in the +1 layout (10 is the last item)
    with pytest.raises(DataError, match="out of range"):
        model.encode(torch.tensor([[-1, 1, 2]]))
    with pytest.raises(DataError, match="T >= 1"):
        model.encode(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ConfigError, match="exceeds max_len"):
        model.encode(torch.ones(1, 6, dtype=torch.long))
    with pytest.raises(DataError, match="negatives"):
        model.loss({"inputs": torch.tensor([[1, 2]]), "targets": torch.tensor([[2, 3]])})
    with pytest.raises(ConfigError, match="prepare"):
        model.recommend([1])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    model = SASRec(num_items=30, max_len=6, embedding_dim=16, dropout=0.0).eval()
    seq = torch.tensor([[0, 0, 3, 5, 7, 9], [1, 2, 3, 4, 5, 6]])
    expected = model.score_sequences(seq)
    torch.testing.assert_close(model.cuda().score_sequences(seq.cuda()).cpu(), expected, rtol=1e-4, atol=1e-4)


def test_run_pipeline_hands_the_model_its_batch_arguments() -> None:
    """max_len and the negatives are set once, on the model: open batch arguments follow it, bound ones stay."""
    import functools

    import polars as pl

    import recsys

    rows = [(u, (u * 7 + t) % 25, t) for u in range(30) for t in range(12)]
    data = recsys.from_frame(pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row"))
    seen: dict = {}

    @functools.wraps(recsys.NextItemBatches)
    def recording(*args, **kwargs):
        seen.clear()
        seen.update(kwargs)
        return recsys.NextItemBatches(*args, **kwargs)

    trainer = recsys.Trainer(epochs=1, progress=False, tensorboard=False, monitor="ndcg@5")
    evaluator = recsys.RankingEvaluator(ks=(5,))
    for loss, negatives in (("ce", 0), ("bce", 1)):
        recsys.run_pipeline(data, functools.partial(recsys.SASRec, max_len=7, embedding_dim=8, loss=loss),
                            batches=functools.partial(recording, batch_size=16), trainer=trainer, evaluator=evaluator,
                            optimizer=functools.partial(torch.optim.Adam, lr=0.01))
        assert seen["max_len"] == 7 and seen["num_negatives"] == negatives, loss
    recsys.run_pipeline(data, functools.partial(recsys.SASRec, max_len=7, embedding_dim=8),
                        batches=functools.partial(recording, batch_size=16, max_len=5, num_negatives=2),
                        trainer=trainer, evaluator=evaluator, optimizer=functools.partial(torch.optim.Adam, lr=0.01))
    assert seen["max_len"] == 5 and seen["num_negatives"] == 2  # what the caller bound is kept
    assert recsys.SASRec(num_items=3).dropout.p == 0.5  # the default of conf/model/sasrec*.yaml


@pytest.mark.slow  # trains to HR@1 0.9 (~10 s); the sinusoidal table itself is tested fast in tests/nn
def test_sinusoidal_positions_have_no_parameters_and_learn_the_cycle() -> None:
    from recsys.nn.transformer import sinusoidal_table

    torch.manual_seed(0)
    data = _cycle_data(num_items=10, num_users=60, length=8)  # smaller than the learned-position test: a few seconds
    split = leave_one_out(data)
    model = SASRec(data.num_items, max_len=8, embedding_dim=16, num_layers=1, dropout=0.0, positions="sinusoidal")
    assert not [name for name, _ in model.named_parameters() if name.startswith("position")]
    assert not [key for key in model.state_dict() if key.startswith("position")]
    assert torch.equal(model.position(3, right_aligned=True), sinusoidal_table(8, 16)[5:] * model.init_std)  # right-aligned, at the items' scale
    model.prepare(split.train)
    _train(model, NextItemBatches(split.train, max_len=8, batch_size=60, num_negatives=0, seed=0), steps=40, lr=0.02)
    metrics = RankingEvaluator(ks=(1,), metrics=("hr",)).evaluate_model(model, split.train.concat(split.valid), split.test)
    assert metrics["hr@1"] >= 0.9
    with pytest.raises(ConfigError, match="unknown positions 'rotary'"):
        SASRec(num_items=10, positions="rotary")


def test_runs_saved_before_the_positions_option_still_load(tmp_path: Path) -> None:
    """A run.json without ``positions`` (older runs) rebuilds the default learned table and the same scores."""
    import functools
    import json

    import recsys

    rows = [(u, (u * 7 + t) % 25, t) for u in range(30) for t in range(12)]
    data = recsys.from_frame(pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row"))
    result = recsys.run_pipeline(
        data, functools.partial(recsys.SASRec, max_len=7, embedding_dim=8, positions="learned"),
        batches=functools.partial(recsys.NextItemBatches, batch_size=16),
        trainer=recsys.Trainer(epochs=1, progress=False, tensorboard=False, monitor="ndcg@5"),
        evaluator=recsys.RankingEvaluator(ks=(5,)), optimizer=functools.partial(torch.optim.Adam, lr=0.01),
        run_dir=tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    info["model"]["kwargs"].pop("positions", None)
    (tmp_path / "run" / "run.json").write_text(json.dumps(info))
    loaded = recsys.load_run(tmp_path / "run")
    assert loaded.model.position.positions == "learned"
    users = torch.arange(data.num_users)
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.score_users(users, loaded.history),
                                   result.model.score_users(users, result.history), rtol=0, atol=0)
