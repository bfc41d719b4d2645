"""Causal-LM pieces: the causal mask holds with padding, the loss is the shifted cross-entropy, batches
are seeded, and a causal encoder embeds, pools on its last token and round-trips through checkpoints."""

import json

import pytest
import torch
import torch.nn.functional as F

from recsys.errors import ConfigError
from recsys.text.causal_lm import CausalLanguageModel, CausalLMBatches
from recsys.text.checkpoint import load_pretrained, save_pretrained
from recsys.text.encode import encode_texts
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer

IDS = torch.tensor([[2, 6, 7, 8, 9, 3], [2, 10, 11, 3, 0, 0]])  # right padding in row 1
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])


def _encoder(causal: bool = True, positions: str = "learned", **kwargs) -> BertEncoder:
    torch.manual_seed(0)
    return BertEncoder(vocab_size=20, dim=16, num_layers=2, num_heads=2, max_len=8, dropout=0.0,
                       positions=positions, causal=causal, **kwargs).eval()


def test_bidirectional_encoder_is_refused():
    with pytest.raises(ConfigError, match="causal=True"):
        CausalLanguageModel(_encoder(causal=False))


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_later_tokens_do_not_change_earlier_states(positions):
    enc = _encoder(positions=positions)
    hidden = enc(IDS, MASK)  # (B, T, D): explicit (B, 1, T, T) mask, padding in row 1
    assert torch.allclose(enc(IDS[:1]), hidden[:1], atol=1e-5)  # no padding: SDPA's is_causal path agrees
    for t in range(IDS.shape[1] - 1):
        changed = IDS.clone()
        changed[:, t + 1 :] = torch.randint(5, 20, changed[:, t + 1 :].shape, generator=torch.Generator().manual_seed(t))
        assert torch.allclose(enc(changed, MASK)[:, : t + 1], hidden[:, : t + 1], atol=1e-5), t
    other = IDS.clone()
    other[:, -1] = 4
    bidirectional = _encoder(causal=False, positions=positions)
    assert not torch.allclose(bidirectional(other, MASK)[0, 0], bidirectional(IDS, MASK)[0, 0], atol=1e-5)  # the check can fail


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_loss_is_the_shifted_cross_entropy(positions):
    enc = _encoder(positions=positions)
    model = CausalLanguageModel(enc).eval()
    loss = model.loss({"input_ids": IDS, "attention_mask": MASK})
    hidden = enc(IDS, MASK)
    logits = model.transform(hidden) @ enc.embeddings.word.weight.T + model.bias  # (B, T, V), explicit
    targets = torch.where(MASK[:, 1:].bool(), IDS[:, 1:], -100)  # token t+1 from positions <= t; padding ignored
    reference = F.cross_entropy(logits[:, :-1].reshape(-1, enc.vocab_size), targets.reshape(-1), ignore_index=-100)
    assert torch.allclose(loss, reference, atol=1e-6)
    assert torch.allclose(model.logits(IDS, MASK), logits, atol=1e-6)
    assert (targets != -100).sum() == 5 + 3  # [CLS] never a target, [SEP] is, padding is not
    loss.backward()
    assert enc.embeddings.word.weight.grad.abs().sum() > 0 and torch.isfinite(loss)


def test_decoder_is_tied_and_forward_is_the_loss():
    model = CausalLanguageModel(_encoder()).eval()
    vocab_tables = [p for p in model.parameters() if p.shape == (20, 16)]
    assert len(vocab_tables) == 1 and vocab_tables[0] is model.encoder.embeddings.word.weight
    batch = {"input_ids": IDS, "attention_mask": MASK}
    assert torch.equal(model(batch), model.loss(batch))
    only_cls = {"input_ids": torch.tensor([[2]]), "attention_mask": torch.tensor([[1]])}
    assert model.loss(only_cls).item() == 0.0


def test_sequence_log_prob_sums_the_loss_terms():
    model = CausalLanguageModel(_encoder()).eval()
    log_prob = model.sequence_log_prob(IDS, MASK)  # (B,)
    for row, length in enumerate(MASK.sum(1).tolist()):
        one = {"input_ids": IDS[row : row + 1, :length], "attention_mask": MASK[row : row + 1, :length]}
        assert torch.allclose(log_prob[row], -model.loss(one) * (length - 1), atol=1e-5)


def test_batches_seeded_per_epoch_and_trimmed():
    texts = [f"{a} {b} story" for a in ("red", "green", "blue", "dark") for b in ("apple", "car", "house", "night")]
    texts += ["red", "a long dark night story of a red car"]
    tok = TextTokenizer.train(texts, vocab_size=60)
    batches = CausalLMBatches(texts, tok, batch_size=4, seed=3)
    first = [b["input_ids"] for b in batches]
    assert all(torch.equal(a, b) for a, b in zip(first, (b["input_ids"] for b in batches)))
    assert sorted(map(tuple, (r[r > 0].tolist() for b in first for r in b))) == sorted(
        map(tuple, (r[r > 0].tolist() for r in tok(texts)["input_ids"])))  # every text once
    assert all(bool(b["attention_mask"][:, -1].any()) for b in batches)  # no all-padding column
    batches.set_epoch(1)
    assert not all(torch.equal(a, b["input_ids"]) for a, b in zip(first, batches))
    with pytest.raises(ConfigError, match="batch_size"):
        CausalLMBatches(texts, tok, batch_size=0)


def test_last_pooling_is_the_last_real_token():
    enc = _encoder(pooling="last")
    hidden = enc(IDS, MASK)
    assert torch.allclose(enc.embed(IDS, MASK, normalize=False), hidden[[0, 1], [5, 3]])
    assert torch.allclose(enc.embed(IDS[:1], None, normalize=False), hidden[0, -1])
    with pytest.raises(ConfigError, match="pooling"):
        enc.embed(IDS, MASK, pooling="max")


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_encode_texts_with_a_causal_encoder(pooling):
    texts = ["red apple", "green apple pie", "red car", "a car"]
    tok = TextTokenizer.train(texts * 2, vocab_size=50)
    torch.manual_seed(0)
    enc = BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=16, causal=True, pooling=pooling)
    together = encode_texts(enc, tok, texts, batch_size=4, progress=False, device="cpu")
    alone = torch.cat([encode_texts(enc, tok, [t], progress=False, device="cpu") for t in texts])
    assert together.shape == (4, 8) and torch.allclose(together, alone, atol=1e-5)  # padding never leaks in


def test_causal_encoder_round_trips_through_a_checkpoint(tmp_path):
    texts = ["toy story adventure", "heat crime thriller", "story of a toy"] * 3
    tok = TextTokenizer.train(texts, vocab_size=60)
    torch.manual_seed(0)
    enc = BertEncoder(tok.vocab_size, dim=16, num_layers=2, num_heads=4, max_len=32, causal=True, pooling="last").eval()
    folder = save_pretrained(enc, tok, tmp_path / "model")
    assert json.loads((folder / "config.json").read_text())["is_decoder"] is True
    loaded, tok2 = load_pretrained(folder)
    assert loaded.causal and loaded.pooling == "last" and loaded.config() == enc.config()
    batch = tok2(["toy story", "heat crime thriller"])
    assert torch.allclose(loaded.embed(**batch), enc.embed(**batch), atol=1e-6)
    config = json.loads((folder / "config.json").read_text())
    del config["is_decoder"]  # a directory written before the key existed
    (folder / "config.json").write_text(json.dumps(config))
    old, _ = load_pretrained(folder)
    assert not old.causal and not old.config()["causal"]
