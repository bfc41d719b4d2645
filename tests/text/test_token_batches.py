"""Token-budget batching in encode_texts: every text once, budgets respected, outputs independent of the
batching, no attention mask for equal-length batches, bf16 only when asked."""

import numpy as np
import pytest
import torch

import recsys.nn.transformer as transformer
from recsys.errors import ConfigError
from recsys.text.encode import encode_texts, token_batches
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer

TEXTS = [
    "toy story", "heat", "the matrix reloaded revolutions trilogy box set", "", "heat crime thriller",
    "toy story toy story toy story toy story toy story toy story", "casino", "story of a toy",
]


def _model():
    tok = TextTokenizer.train(TEXTS * 3, vocab_size=80, max_length=24)
    torch.manual_seed(0)
    return BertEncoder(tok.vocab_size, dim=16, num_layers=2, num_heads=2, max_len=32).eval(), tok


def test_token_batches_cover_every_row_within_budget():
    lengths = np.array([5, 30, 7, 7, 2, 12, 7, 30, 1, 9])
    batches = token_batches(lengths, batch_size=3, max_tokens=24)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(10))
    assert (np.diff(lengths[flat]) <= 0).all()  # longest first
    assert flat[lengths[flat] == 7].tolist() == [2, 3, 6]  # ties keep input order
    for rows in batches:
        assert len(rows) <= 3
        assert len(rows) == 1 or len(rows) * lengths[rows].max() <= 24  # an over-budget text comes alone
    assert [len(b) for b in batches[:2]] == [1, 1]  # the two 30-token texts
    with pytest.raises(ConfigError):
        token_batches(lengths, batch_size=0, max_tokens=24)


def test_encode_texts_independent_of_batching_and_in_input_order():
    enc, tok = _model()
    alone = torch.nn.functional.normalize(torch.cat([enc.embed(**tok([t]), normalize=False) for t in TEXTS]), dim=-1)
    for batch_size, max_tokens in ((64, None), (3, 10), (1, 1), (8, 40)):
        got = encode_texts(enc, tok, TEXTS, batch_size=batch_size, max_tokens=max_tokens, progress=False, device="cpu")
        assert got.dtype == torch.float32 and got.shape == (len(TEXTS), 16)
        assert torch.allclose(got, alone, atol=1e-5), (batch_size, max_tokens)
    raw = encode_texts(enc, tok, TEXTS, normalize=False, max_tokens=10, progress=False, device="cpu")
    assert torch.allclose(raw, torch.cat([enc.embed(**tok([t]), normalize=False) for t in TEXTS]), atol=1e-5)
    assert encode_texts(enc, tok, [], progress=False, device="cpu").shape == (0, 16)


def test_equal_length_batches_attend_without_a_mask(monkeypatch):
    enc, tok = _model()
    masks = []
    sdpa = transformer.F.scaled_dot_product_attention

    def spy(*args, attn_mask=None, **kwargs):
        masks.append(attn_mask is not None)
        return sdpa(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(transformer.F, "scaled_dot_product_attention", spy)
    texts = ["heat", "casino", "toy story", "story of a toy"]
    lengths = tok.lengths(texts)
    encode_texts(enc, tok, texts, batch_size=1, progress=False, device="cpu")  # one row: never padded
    assert masks == [False] * (2 * len(texts))
    masks.clear()
    encode_texts(enc, tok, texts, batch_size=4, progress=False, device="cpu")
    assert masks == [len(set(lengths.tolist())) > 1] * 2  # one batch, 2 layers: masked only if lengths differ


def test_bf16_is_opt_in_and_close():
    enc, tok = _model()
    default = encode_texts(enc, tok, TEXTS, progress=False, device="cpu")
    fp32 = encode_texts(enc, tok, TEXTS, progress=False, device="cpu", dtype=torch.float32)
    bf16 = encode_texts(enc, tok, TEXTS, progress=False, device="cpu", dtype=torch.bfloat16)
    assert torch.equal(default, fp32)
    assert bf16.dtype == torch.float32 and torch.allclose(bf16.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)
    assert 0 < (bf16 - fp32).abs().max() < 5e-2  # bf16 rounding, not another model
    assert next(enc.parameters()).dtype == torch.float32  # the encoder itself is not converted
    with pytest.raises(ConfigError):
        encode_texts(enc, tok, TEXTS, progress=False, device="cpu", dtype=torch.float16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    enc, tok = _model()
    cpu = encode_texts(enc, tok, TEXTS, max_tokens=10, progress=False, device="cpu")
    cuda = encode_texts(enc, tok, TEXTS, max_tokens=10, progress=False, device="cuda")
    bf16 = encode_texts(enc, tok, TEXTS, max_tokens=10, progress=False, device="cuda", dtype=torch.bfloat16)
    assert torch.allclose(cpu, cuda, atol=1e-4) and (bf16 - cpu).abs().max() < 5e-2
