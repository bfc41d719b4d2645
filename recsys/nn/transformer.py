"""Transformer blocks shared by SASRec, BERT4Rec and the text encoders, read top to bottom like nanoGPT.

``attention_bias`` (masks) -> ``MultiHeadSelfAttention`` -> ``FeedForward`` -> ``TransformerBlock``
-> ``TransformerEncoder``, plus ``PositionalEmbedding`` (learned or sinusoidal). Attention runs through
``torch.nn.functional.scaled_dot_product_attention`` (fused flash / memory-efficient kernels on GPU,
the fused CPU kernel otherwise).

Stable API (other modules build on it):

- ``attention_mask`` arguments are ``(B, T)`` bool (or 0/1) tensors, **True (1) at real tokens**,
  False (0) at padding, as Hugging Face tokenizers return them; ``None`` means no padding.
- ``causal=True``: position t attends to positions <= t (GPT / SASRec, left to right);
  ``causal=False``: every position attends to every real position (BERT / BERT4Rec).
- Every position may always attend to itself, so padding rows never see an all-masked row (no NaN);
  outputs at padding positions are meaningless and must be ignored by the caller.
- ``norm_first=True`` is pre-LN (``x + f(LN(x))``, with a final LayerNorm in the encoder);
  ``norm_first=False`` is post-LN (``LN(x + f(x))``, original Transformer / BERT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.errors import ConfigError

__all__ = [
    "FeedForward",
    "MultiHeadSelfAttention",
    "PositionalEmbedding",
    "TransformerBlock",
    "TransformerEncoder",
    "attention_bias",
    "sinusoidal_table",
]

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT-style init for ``model.apply(partial(init_weights, std=...))``: normal Linear/Embedding
    weights, zero biases and padding rows (LayerNorm keeps its defaults)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])


def attention_bias(attention_mask: Tensor | None, seq_len: int, causal: bool) -> Tensor | None:
    """Boolean mask for ``scaled_dot_product_attention``: ``(B, 1, T, T)``, True where query t may see key s.

    ``None`` when no mask is needed (no padding, bidirectional) — the fastest kernel path.

    >>> attention_bias(torch.tensor([[0, 1, 1]]), 3, causal=True).int()[0, 0].tolist()
    [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    >>> attention_bias(torch.tensor([[1, 1, 0]]), 3, causal=False).int()[0, 0].tolist()
    [[1, 1, 0], [1, 1, 0], [1, 1, 1]]
    """
    if attention_mask is None and not causal:
        return None
    device = attention_mask.device if attention_mask is not None else None
    eye = torch.eye(seq_len, dtype=torch.bool, device=device)  # (T, T): always see yourself
    allowed = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed.tril()
    if attention_mask is None:
        return (allowed | eye)[None, None]  # (1, 1, T, T)
    keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    return (allowed & keys) | eye  # (B, 1, T, T)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection.

    >>> attn = MultiHeadSelfAttention(dim=8, num_heads=2)
    >>> attn(torch.randn(3, 5, 8)).shape
    torch.Size([3, 5, 8])
    """

    def __init__(
        self, dim: int, num_heads: int = 1, dropout: float = 0.0, attention_dropout: float = 0.0, bias: bool = True
    ) -> None:
        """``dropout`` on the output projection, ``attention_dropout`` on the attention weights."""
        super().__init__()
        if dim <= 0 or num_heads <= 0 or dim % num_heads:
            raise ConfigError(
                f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})",
                where="MultiHeadSelfAttention",
                fix="choose num_heads dividing dim",
            )
        self.num_heads, self.attention_dropout = num_heads, attention_dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.proj_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        """``x`` (B, T, D); ``mask`` from :func:`attention_bias` or None; ``is_causal`` only when mask is None."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, T, D)
        q, k, v = (t.view(B, T, self.num_heads, D // self.num_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D/H)
        y = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
            is_causal=is_causal and mask is None,
        )  # (B, H, T, D/H)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.proj_dropout(self.proj(y))


class FeedForward(nn.Module):
    """Position-wise feed-forward: Linear -> GELU/ReLU -> Linear -> dropout.

    >>> FeedForward(dim=8, hidden_dim=16, activation="relu")(torch.randn(2, 3, 8)).shape
    torch.Size([2, 3, 8])
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0, activation: str = "gelu") -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {activation!r}", where="FeedForward", fix=f"use one of {sorted(_ACTIVATIONS)}"
            )
        self.fc = nn.Linear(dim, hidden_dim)
        self.act = _ACTIVATIONS[activation]()
        self.proj = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))  # (B, T, D)


class TransformerBlock(nn.Module):
    """Self-attention and feed-forward sublayers with residuals, pre-LN (default) or post-LN.

    >>> block = TransformerBlock(dim=8, num_heads=2, norm_first=False)
    >>> block(torch.randn(2, 4, 8), attention_bias(torch.ones(2, 4), 4, causal=True)).shape
    torch.Size([2, 4, 8])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        hidden_dim: int | None = None,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        activation: str = "gelu",
        norm_first: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MultiHeadSelfAttention(dim, num_heads, dropout, attention_dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = FeedForward(dim, hidden_dim or 4 * dim, dropout, activation)

    def forward(self, x: Tensor, mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        if self.norm_first:
            x = x + self.attn(self.ln_1(x), mask, is_causal)  # (B, T, D)
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.attn(x, mask, is_causal))
        return self.ln_2(x + self.mlp(x))


POSITIONS = ("learned", "sinusoidal")


def sinusoidal_table(max_len: int, dim: int) -> Tensor:
    """Fixed positions of Vaswani et al. (2017): ``PE[p, 2i] = sin(p / 10000^(2i/D))``, ``PE[p, 2i+1] = cos(...)``.

    ``(max_len, dim)`` float32; an odd ``dim`` drops the last cosine column.

    >>> sinusoidal_table(2, 4).tolist()[0]
    [0.0, 1.0, 0.0, 1.0]
    """
    position = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    frequency = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (ceil(D/2),)
    angle = position * frequency  # (T, ceil(D/2))
    table = torch.zeros(max_len, dim, dtype=torch.float64)
    table[:, 0::2] = angle.sin()
    table[:, 1::2] = angle[:, : dim // 2].cos()
    return table.float()  # (T, D)


class PositionalEmbedding(nn.Module):
    """Absolute positions ``(T, D)`` for sequences of up to ``max_len`` tokens: learned or sinusoidal.

    ``positions="learned"`` (default) is a ``(max_len, D)`` parameter ``weight``; ``"sinusoidal"`` is
    :func:`sinusoidal_table` times ``scale``, a non-persistent buffer ``table`` (no parameters, nothing in the state
    dict). Vaswani et al. add the unit-amplitude table to token embeddings of unit scale (``sqrt(D)`` times weights of
    std ``D^-1/2``); a model whose embeddings start at std 0.02 passes ``scale=0.02``, so that positions start at the
    items' scale, as learned positions do, instead of drowning them fifty to one.
    ``right_aligned=True`` gives the last ``T`` of the ``max_len`` positions, so a left-padded
    sequence's most recent item always has position ``max_len - 1`` whatever ``T`` is (SASRec);
    ``False`` gives positions ``0..T-1`` (text, right padding).

    >>> pos = PositionalEmbedding(max_len=5, dim=4)
    >>> torch.equal(pos(2, right_aligned=True), pos.weight[3:])
    True
    >>> fixed = PositionalEmbedding(max_len=5, dim=4, positions="sinusoidal")
    >>> len(list(fixed.parameters())), torch.equal(fixed(2, right_aligned=True), sinusoidal_table(5, 4)[3:])
    (0, True)
    """

    def __init__(self, max_len: int, dim: int, positions: str = "learned", scale: float = 1.0) -> None:
        super().__init__()
        if max_len <= 0 or dim <= 0:
            raise ConfigError(f"max_len and dim must be positive, got max_len={max_len}, dim={dim}",
                              where="PositionalEmbedding", fix="set max_len >= 1 and dim >= 1")
        if positions not in POSITIONS:
            raise ConfigError(f"unknown positions {positions!r}", where="PositionalEmbedding(positions=...)",
                              fix=f"use one of {list(POSITIONS)}")
        self.max_len, self.positions = max_len, positions
        if positions == "learned":
            self.weight = nn.Parameter(torch.empty(max_len, dim))
            nn.init.normal_(self.weight, std=0.02)
        else:
            self.register_buffer("table", sinusoidal_table(max_len, dim) * scale, persistent=False)

    def forward(self, seq_len: int, right_aligned: bool = False) -> Tensor:
        if seq_len > self.max_len:
            raise ConfigError(
                f"sequence of length {seq_len} exceeds max_len {self.max_len}",
                where="PositionalEmbedding",
                fix="truncate inputs to max_len or build the model with a larger max_len",
            )
        start = self.max_len - seq_len if right_aligned else 0
        table = self.weight if self.positions == "learned" else self.table
        return table[start : start + seq_len]  # (T, D)


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerBlock` over already-embedded tokens, causal or bidirectional.

    ``forward(x (B, T, D), attention_mask (B, T) True at real tokens or None) -> (B, T, D)``.
    Pre-LN stacks end with a LayerNorm (GPT-2); post-LN stacks do not need one (BERT).

    >>> encoder = TransformerEncoder(num_layers=2, dim=8, num_heads=2, causal=True)
    >>> encoder(torch.randn(3, 5, 8), attention_mask=torch.ones(3, 5, dtype=torch.bool)).shape
    torch.Size([3, 5, 8])
    """

    def __init__(
        self,
        num_layers: int = 2,
        dim: int = 64,
        num_heads: int = 1,
        hidden_dim: int | None = None,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        activation: str = "gelu",
        norm_first: bool = True,
        causal: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}", where="TransformerEncoder", fix="set num_layers >= 1")
        self.causal = causal
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, hidden_dim, dropout, attention_dropout, activation, norm_first, eps)
            for _ in range(num_layers)
        )
        self.ln_f = nn.LayerNorm(dim, eps=eps) if norm_first else nn.Identity()

    def forward(self, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if attention_mask is None:  # no padding: let SDPA pick its fastest (flash) kernel
            mask, is_causal = None, self.causal
        else:
            mask, is_causal = attention_bias(attention_mask, x.shape[1], self.causal), False  # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, mask, is_causal)  # (B, T, D)
        return self.ln_f(x)
