"""The causal-LM pretraining recipe: the shared Trainer learns a planted deterministic language."""

import math

import pytest
import torch

from recsys.errors import ConfigError
from recsys.text.causal_lm import CausalLanguageModel, next_token_targets
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer
from recsys.training.causal_lm import pretrain_causal_lm

LETTERS = "abcdefgh"
TEXTS = [" ".join(LETTERS[(i + k) % 8] for k in range(4)) for i in range(8)] * 8  # "a b c d", "b c d e", ..., "h a b c"


@pytest.mark.slow  # multi-second training: the slow step of CI runs it
def test_next_token_of_a_planted_language_is_learned():
    tok = TextTokenizer.train(TEXTS, vocab_size=40)
    torch.manual_seed(0)
    enc = BertEncoder(tok.vocab_size, dim=32, num_layers=1, num_heads=2, max_len=8, dropout=0.0, causal=True)
    lm = CausalLanguageModel(enc)
    result = pretrain_causal_lm(TEXTS, tok, lm, epochs=8, batch_size=8, lr=2e-2, weight_decay=0.0,
                                progress=False, device="cpu")
    assert not enc.training and [r["epoch"] for r in result.history] == list(range(1, 9))
    batch = tok(TEXTS[:8])  # (8, 6): [CLS] w1 w2 w3 w4 [SEP]
    targets, _ = next_token_targets(batch["input_ids"])
    with torch.no_grad():
        predicted = lm.logits(**batch)[:, :-1].argmax(-1)  # (8, 5)
    # the first word is uniform over 8 letters; every later target (3 letters, then [SEP]) is determined
    assert (predicted[:, 1:] == targets[:, 1:]).float().mean() > 0.9
    floor = math.log(8) / 5  # the best achievable mean loss
    assert result.history[-1]["loss"] < floor + 0.1 < result.history[0]["loss"]


def test_pretraining_is_seeded_and_needs_a_causal_encoder():
    runs = []
    tok = TextTokenizer.train(TEXTS, vocab_size=40)
    for _ in range(2):
        torch.manual_seed(1)
        enc = BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=8, causal=True)
        pretrain_causal_lm(TEXTS[:16], tok, enc, epochs=2, batch_size=4, seed=5, progress=False, device="cpu")
        runs.append(enc.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    with pytest.raises(ConfigError, match="causal=True"):
        pretrain_causal_lm(TEXTS, tok, BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2), progress=False)
