"""BERT4Rec: hand-computed Cloze loss, bidirectional attention, appended mask at inference, a learned cycle, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from recsys.data.sequence_batches import ClozeBatches
from recsys.data.splits import leave_one_out
from recsys.errors import ConfigError, DataError
from recsys.evaluation.ranking import RankingEvaluator
from recsys.models.bert4rec import BERT4Rec

from .test_sasrec import _cycle_data, _train


def test_loss_is_cross_entropy_over_masked_positions_only() -> None:
    torch.manual_seed(0)
    model = BERT4Rec(num_items=4, max_len=4, embedding_dim=8, dropout=0.0).eval()
    batch = {"inputs": torch.tensor([[0, 1, 5, 3], [5, 2, 3, 5]]), "labels": torch.tensor([[0, 0, 2, 0], [4, 0, 0, 1]])}
    logits = model.logits(model.encode(batch["inputs"]))  # (B, T, N)
    rows = [(0, 2, 1), (1, 0, 3), (1, 3, 0)]  # (sequence, position, item index) of each masked position
    expected = sum(
        -logits[b, t, i].item() + math.log(sum(math.exp(x) for x in logits[b, t].tolist())) for b, t, i in rows
    ) / len(rows)
    assert model.loss(batch).item() == pytest.approx(expected, rel=1e-5)
    # the same through F.cross_entropy on the three positions
    picked = torch.stack([logits[b, t] for b, t, _ in rows])
    assert model.loss(batch).item() == pytest.approx(F.cross_entropy(picked, torch.tensor([1, 3, 0])).item(), rel=1e-5)


def test_attention_is_bidirectional_and_ignores_padding() -> None:
    torch.manual_seed(0)
    model = BERT4Rec(num_items=20, max_len=6, embedding_dim=8, dropout=0.0).eval()
    seq = torch.tensor([[0, 0, 3, 5, 7, 21]])
    changed = seq.clone()
    changed[0, 4] = 9
    assert not torch.allclose(model.encode(seq)[:, 2], model.encode(changed)[:, 2])  # earlier sees later
    torch.testing.assert_close(model.encode(seq)[:, 2:], model.encode(seq[:, 2:]), rtol=1e-5, atol=1e-5)


def test_inference_appends_a_mask_after_the_last_items() -> None:
    torch.manual_seed(0)
    model = BERT4Rec(num_items=20, max_len=4, embedding_dim=8, dropout=0.0).eval()
    history = torch.tensor([[0, 0, 4, 6, 2]])  # longer than max_len - 1: only the last 3 items count
    expected = model.logits(model.encode(torch.tensor([[4, 6, 2, 21]]))[:, -1])
    torch.testing.assert_close(model.score_sequences(history), expected)
    torch.testing.assert_close(model.score_sequences(history[:, -3:]), expected)
    assert model.history_len == 3


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_learns_next_item_cycle() -> None:
    torch.manual_seed(0)
    data = _cycle_data()
    split = leave_one_out(data)
    model = BERT4Rec(data.num_items, max_len=8, embedding_dim=32, num_layers=1, num_heads=1, dropout=0.0)
    batches = ClozeBatches(split.train, max_len=8, batch_size=50, mask_prob=0.3, seed=0)
    _train(model, batches, steps=150, lr=0.003)
    metrics = RankingEvaluator(ks=(1,), metrics=("hr",)).evaluate_model(model, split.train.concat(split.valid), split.test)
    assert metrics["hr@1"] > 0.95


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="max_len >= 2"):
        BERT4Rec(num_items=10, max_len=1)
    with pytest.raises(ConfigError):
        BERT4Rec(num_items=10, max_len=0)
    with pytest.raises(ConfigError):
        BERT4Rec(num_items=0)
    model = BERT4Rec(num_items=10, max_len=5, embedding_dim=8)
    model.encode(torch.tensor([[0, 1, 11]]))  # 11 = mask token: allowed
    with pytest.raises(DataError, match="out of range"):
        model.encode(torch.tensor([[0, 1, 12]]))
    with pytest.raises(DataError, match="empty history"):
        model.prepare(_cycle_data())
        model.recommend([])


def test_sinusoidal_positions() -> None:
    from recsys.nn.transformer import sinusoidal_table

    model = BERT4Rec(num_items=6, max_len=4, embedding_dim=8, positions="sinusoidal", dropout=0.0).eval()
    assert not [key for key in model.state_dict() if key.startswith("position")]
    assert torch.equal(model.position(2, right_aligned=True), sinusoidal_table(4, 8)[2:] * model.init_std)  # the items' scale
    batch = {"inputs": torch.tensor([[0, 1, 7, 3]]), "labels": torch.tensor([[0, 0, 2, 0]])}
    assert torch.isfinite(model.loss(batch)) and model.score_sequences(torch.tensor([[0, 1, 2]])).shape == (1, 6)
    with pytest.raises(ConfigError, match="positions"):
        BERT4Rec(num_items=6, positions="relative")
