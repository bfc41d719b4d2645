"""Shared Transformer blocks: reference equality, causal and padding masks, configuration errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from recsys.errors import ConfigError
from recsys.nn.transformer import (
    MultiHeadSelfAttention,
    PositionalEmbedding,
    TransformerBlock,
    TransformerEncoder,
    attention_bias,
    sinusoidal_table,
)


def _naive_attention(attn: MultiHeadSelfAttention, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    B, T, D = x.shape
    H = attn.num_heads
    q, k, v = attn.qkv(x).split(D, dim=2)
    q, k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
    logits = q @ k.transpose(-1, -2) / math.sqrt(D // H)
    logits = logits.masked_fill(~allowed, float("-inf"))
    y = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
    return attn.proj(y)


def test_attention_equals_naive_softmax_attention() -> None:
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(dim=8, num_heads=2).eval()
    x = torch.randn(2, 5, 8)
    real = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    for causal in (True, False):
        mask = attention_bias(real, 5, causal)
        expected = _naive_attention(attn, x, mask)
        torch.testing.assert_close(attn(x, mask), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("causal", [True, False])
def test_block_matches_torch_transformer_encoder_layer(norm_first: bool, causal: bool) -> None:
    torch.manual_seed(0)
    ours = TransformerBlock(dim=8, num_heads=2, hidden_dim=16, dropout=0.0, activation="relu", norm_first=norm_first).eval()
    ref = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(ours.attn.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(ours.attn.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(ours.attn.proj.weight)
        ref.self_attn.out_proj.bias.copy_(ours.attn.proj.bias)
        ref.linear1.load_state_dict(ours.mlp.fc.state_dict())
        ref.linear2.load_state_dict(ours.mlp.proj.state_dict())
        ref.norm1.load_state_dict(ours.ln_1.state_dict())
        ref.norm2.load_state_dict(ours.ln_2.state_dict())
    x = torch.randn(3, 6, 8)
    causal_mask = nn.Transformer.generate_square_subsequent_mask(6) if causal else None
    expected = ref(x, src_mask=causal_mask, is_causal=causal)
    mask = attention_bias(torch.ones(3, 6, dtype=torch.bool), 6, causal)
    torch.testing.assert_close(ours(x, mask), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours(x, None, is_causal=causal), expected, rtol=1e-5, atol=1e-5)


def test_causal_mask_hides_the_future() -> None:
    """Changing a later token leaves every earlier output unchanged; an earlier change reaches later ones."""
    torch.manual_seed(0)
    encoder = TransformerEncoder(num_layers=2, dim=8, num_heads=2, dropout=0.0, causal=True).eval()
    x = torch.randn(2, 7, 8)
    changed = x.clone()
    changed[:, 4] = torch.randn(changed.shape[0], 8)
    for mask in (None, torch.ones(2, 7, dtype=torch.bool)):
        a, b = encoder(x, mask), encoder(changed, mask)
        torch.testing.assert_close(a[:, :4], b[:, :4])
        assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_bidirectional_sees_the_future() -> None:
    torch.manual_seed(0)
    encoder = TransformerEncoder(num_layers=1, dim=8, num_heads=1, dropout=0.0, causal=False).eval()
    x = torch.randn(1, 5, 8)
    changed = x.clone()
    changed[:, 4] = torch.randn(changed.shape[0], 8)
    assert not torch.allclose(encoder(x)[:, 0], encoder(changed)[:, 0])


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("norm_first", [True, False])
def test_padding_does_not_change_real_positions(causal: bool, norm_first: bool) -> None:
    """Left padding of any length and content leaves real outputs as without padding."""
    torch.manual_seed(0)
    encoder = TransformerEncoder(num_layers=2, dim=8, num_heads=2, dropout=0.0, causal=causal, norm_first=norm_first).eval()
    real = torch.randn(2, 4, 8)
    alone = encoder(real)  # no padding at all
    for pad in (1, 3):
        padded = torch.cat([torch.randn(2, pad, 8) * 10, real], dim=1)
        mask = torch.cat([torch.zeros(2, pad, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool)], dim=1)
        out = encoder(padded, mask)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[:, pad:], alone, rtol=1e-5, atol=1e-5)


def test_right_padding_for_text() -> None:
    torch.manual_seed(0)
    encoder = TransformerEncoder(num_layers=1, dim=8, num_heads=2, dropout=0.0).eval()
    real = torch.randn(1, 3, 8)
    padded = torch.cat([real, torch.randn(1, 2, 8)], dim=1)
    out = encoder(padded, torch.tensor([[1, 1, 1, 0, 0]]))
    torch.testing.assert_close(out[:, :3], encoder(real), rtol=1e-5, atol=1e-5)


def test_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    encoder = TransformerEncoder(num_layers=1, dim=8, dropout=0.5, attention_dropout=0.5)
    x = torch.randn(2, 4, 8)
    assert not torch.equal(encoder(x), encoder(x))
    encoder.eval()
    assert torch.equal(encoder(x), encoder(x))


def test_positional_embedding_alignment() -> None:
    pos = PositionalEmbedding(max_len=6, dim=3)
    assert torch.equal(pos(4), pos.weight[:4])
    assert torch.equal(pos(4, right_aligned=True), pos.weight[2:])
    with pytest.raises(ConfigError, match="exceeds max_len"):
        pos(7)


def test_sinusoidal_table_hand_computed() -> None:
    table = sinusoidal_table(max_len=4, dim=4)  # frequencies 1 and 1 / 10000^(2/4) = 0.01
    assert table.shape == (4, 4) and table.dtype == torch.float32
    assert table[0].tolist() == [0.0, 1.0, 0.0, 1.0]
    expected = {(1, 0): math.sin(1), (1, 1): math.cos(1), (1, 2): math.sin(0.01), (1, 3): math.cos(0.01),
                (3, 0): math.sin(3), (3, 2): math.sin(0.03), (3, 3): math.cos(0.03)}
    for (pos, column), value in expected.items():
        assert table[pos, column].item() == pytest.approx(value, abs=1e-7)


@pytest.mark.parametrize("max_len, dim", [(50, 16), (7, 5), (3, 1)])
def test_sinusoidal_table_matches_a_numpy_reference(max_len: int, dim: int) -> None:
    # the formula entry by entry: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d))
    reference = np.zeros((max_len, dim))
    for pos in range(max_len):
        for column in range(dim):
            angle = pos / 10000 ** (2 * (column // 2) / dim)
            reference[pos, column] = np.sin(angle) if column % 2 == 0 else np.cos(angle)
    np.testing.assert_allclose(sinusoidal_table(max_len, dim).numpy(), reference, atol=1e-6)


def test_sinusoidal_positions_have_no_parameters_and_align() -> None:
    pos = PositionalEmbedding(max_len=6, dim=4, positions="sinusoidal")
    assert list(pos.parameters()) == [] and pos.state_dict() == {}  # non-persistent: nothing to save or load
    assert torch.equal(pos(4), sinusoidal_table(6, 4)[:4])
    assert torch.equal(pos(4, right_aligned=True), sinusoidal_table(6, 4)[2:])
    assert pos.to(torch.float64)(2).dtype == torch.float64  # a buffer: follows the module's dtype and device
    scaled = PositionalEmbedding(max_len=6, dim=4, positions="sinusoidal", scale=0.02)
    assert torch.equal(scaled(3), sinusoidal_table(6, 4)[:3] * 0.02)
    with pytest.raises(ConfigError, match="exceeds max_len"):
        pos(7)
    learned = PositionalEmbedding(max_len=6, dim=4)
    assert [name for name, _ in learned.named_parameters()] == ["weight"] and learned.positions == "learned"


@pytest.mark.parametrize(
    "build",
    [
        lambda: MultiHeadSelfAttention(dim=6, num_heads=4),
        lambda: TransformerBlock(dim=8, activation="tanh"),
        lambda: TransformerEncoder(num_layers=0),
        lambda: PositionalEmbedding(max_len=0, dim=4),
        lambda: PositionalEmbedding(max_len=4, dim=0, positions="sinusoidal"),
        lambda: PositionalEmbedding(max_len=4, dim=4, positions="rotary"),
    ],
)
def test_bad_configuration(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        build()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    encoder = TransformerEncoder(num_layers=2, dim=16, num_heads=2, dropout=0.0, causal=True).eval()
    x, mask = torch.randn(3, 7, 16), torch.tensor([[0] * 3 + [1] * 4] * 3)
    expected = encoder(x, mask)
    out = encoder.cuda()(x.cuda(), mask.cuda()).cpu()
    torch.testing.assert_close(out[:, 3:], expected[:, 3:], rtol=1e-4, atol=1e-4)


def test_sequential_models_start_sinusoidal_positions_at_their_items_scale() -> None:
    from recsys.models.bert4rec import BERT4Rec
    from recsys.models.sasrec import SASRec

    for model in (SASRec(20, max_len=6, embedding_dim=8, positions="sinusoidal", init_std=0.05),
                  BERT4Rec(20, max_len=6, embedding_dim=8, positions="sinusoidal", init_std=0.05)):
        torch.testing.assert_close(model.position(6), sinusoidal_table(6, 8) * 0.05)
        items = model.item_embedding.weight[1:21]
        assert 0.03 < float(items.std()) < 0.07  # the same scale as the positions' amplitude
