"""The MLM pretraining recipe: the shared Trainer fits the encoder in place."""

import pytest
import torch

from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer
from recsys.training.mlm import pretrain_mlm


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_pretraining_lowers_loss_and_updates_the_encoder():
    texts = [f"{a} {b} story" for a in ("red", "green", "blue", "dark") for b in ("apple", "car", "house", "night")] * 4
    tok = TextTokenizer.train(texts, vocab_size=60)
    torch.manual_seed(0)
    enc = BertEncoder(tok.vocab_size, dim=32, num_layers=1, num_heads=2, max_len=16)
    before = enc.embeddings.word.weight.detach().clone()
    result = pretrain_mlm(texts, tok, enc, epochs=8, batch_size=8, lr=3e-3, probability=0.3, progress=False, device="cpu")
    losses = [row["loss"] for row in result.history]
    assert [row["epoch"] for row in result.history] == list(range(1, 9))
    assert losses[-1] < 0.7 * losses[0]
    assert not torch.equal(before, enc.embeddings.word.weight) and not enc.training


def test_pretraining_is_seeded():
    texts = ["red apple", "green apple", "red car", "blue car"] * 4
    tok = TextTokenizer.train(texts, vocab_size=40)
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        enc = BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=8)
        pretrain_mlm(texts, tok, enc, epochs=2, batch_size=4, seed=5, progress=False, device="cpu")
        runs.append(enc.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
