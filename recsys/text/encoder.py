"""A BERT-style text encoder (Devlin et al. 2018) built from ``recsys.nn.transformer``'s shared blocks.

``TextEmbeddings`` (token + learned or sinusoidal position + segment, LayerNorm, dropout) -> post-LN
``TransformerEncoder`` (SDPA self-attention with a padding mask, exact-GELU feed-forward) ->
``pool`` (CLS, mean over real tokens, or the last real token). The parameter layout maps 1:1 onto Hugging Face
``BertModel`` checkpoints (see :mod:`recsys.text.checkpoint`).
"""

from __future__ import annotations

from functools import partial

import torch  # noqa: F401  (the doctests use it)
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.errors import ConfigError
from recsys.nn.transformer import PositionalEmbedding, TransformerEncoder, init_weights

__all__ = ["BertEncoder", "TextEmbeddings", "cls_pool", "last_pool", "mean_pool"]

POOLINGS = ("mean", "cls", "last")


def mean_pool(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Mean of the hidden states of real tokens: ``(B, T, D), (B, T) -> (B, D)``.

    >>> mean_pool(torch.tensor([[[1.0], [3.0], [100.0]]]), torch.tensor([[1, 1, 0]])).tolist()
    [[2.0]]
    """
    if attention_mask is None:
        return hidden.mean(1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)  # (B, D)


def cls_pool(hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """The hidden state of the first ([CLS]) token: ``(B, T, D) -> (B, D)``."""
    return hidden[:, 0]


def last_pool(hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """The hidden state of the last real token ([SEP]; sentence-transformers' ``lasttoken``): ``(B, T, D) -> (B, D)``.

    >>> last_pool(torch.tensor([[[1.0], [3.0], [100.0]]]), torch.tensor([[1, 1, 0]])).tolist()
    [[3.0]]
    """
    if attention_mask is None:
        return hidden[:, -1]
    positions = torch.arange(hidden.shape[1], device=hidden.device)  # (T,)
    last = (attention_mask.bool() * positions).argmax(1)  # (B,): index of the last real token
    return hidden[torch.arange(len(hidden), device=hidden.device), last]


_POOL = {"mean": mean_pool, "cls": cls_pool, "last": last_pool}


class TextEmbeddings(nn.Module):
    """Token + position + segment embeddings, then LayerNorm and dropout (HF ``BertEmbeddings``).

    ``positions="learned"`` (BERT, what checkpoints hold) or ``"sinusoidal"`` (fixed, Vaswani et al. 2017).

    >>> emb = TextEmbeddings(vocab_size=10, dim=4, max_len=6)
    >>> emb(torch.tensor([[2, 3, 0]])).shape
    torch.Size([1, 3, 4])
    """

    def __init__(
        self, vocab_size: int, dim: int, max_len: int = 512, type_vocab_size: int = 2,
        dropout: float = 0.1, eps: float = 1e-12, pad_token_id: int = 0, positions: str = "learned",
    ) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab_size, dim, padding_idx=pad_token_id)
        self.position = PositionalEmbedding(max_len, dim, positions)  # shared block, positions 0..T-1
        self.token_type = nn.Embedding(type_vocab_size, dim)
        self.ln = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        x = self.word(input_ids) + self.position(input_ids.shape[1])  # (B, T, D)
        if token_type_ids is None:
            x = x + self.token_type.weight[0]  # segment 0 everywhere
        else:
            x = x + self.token_type(token_type_ids)
        return self.dropout(self.ln(x))


class BertEncoder(nn.Module):
    """BERT encoder: ``forward(input_ids (B, T), attention_mask (B, T) 1 at real tokens) -> (B, T, D)``.

    ``embed`` pools (``pooling="mean"``, ``"cls"`` or ``"last"``) and optionally L2-normalizes to ``(B, D)``.
    ``add_pooler=True`` keeps BERT's dense+tanh pooler (only so checkpoints that have one map fully;
    ``embed`` does not use it). ``positions="sinusoidal"`` replaces the learned position table by the
    fixed one (for training from scratch; pretrained checkpoints are learned). ``causal=True`` masks attention to
    earlier tokens only (for next-token pretraining). Defaults are MiniLM-L6's shape.

    >>> enc = BertEncoder(vocab_size=20, dim=8, num_layers=1, num_heads=2, max_len=16)
    >>> ids, mask = torch.tensor([[2, 5, 3, 0], [2, 7, 8, 3]]), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    >>> enc(ids, mask).shape, enc.embed(ids, mask).norm(dim=1).round(decimals=4).tolist()
    (torch.Size([2, 4, 8]), [1.0, 1.0])
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 384,
        num_layers: int = 6,
        num_heads: int = 12,
        hidden_dim: int | None = None,
        max_len: int = 512,
        type_vocab_size: int = 2,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        eps: float = 1e-12,
        pad_token_id: int = 0,
        pooling: str = "mean",
        add_pooler: bool = False,
        init_std: float = 0.02,
        positions: str = "learned",
        causal: bool = False,
    ) -> None:
        super().__init__()
        if vocab_size <= 0:
            raise ConfigError(f"vocab_size must be positive, got {vocab_size}", where="BertEncoder", fix="pass the tokenizer's vocab_size")
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}", where="BertEncoder", fix=f"use one of {POOLINGS}")
        self.vocab_size, self.dim, self.num_layers, self.num_heads = vocab_size, dim, num_layers, num_heads
        self.hidden_dim, self.max_len, self.type_vocab_size = hidden_dim or 4 * dim, max_len, type_vocab_size
        self.eps, self.pad_token_id, self.pooling, self.positions = eps, pad_token_id, pooling, positions
        self.causal = causal
        self.embeddings = TextEmbeddings(vocab_size, dim, max_len, type_vocab_size, dropout, eps, pad_token_id, positions)
        self.encoder = TransformerEncoder(
            num_layers, dim, num_heads, self.hidden_dim, dropout, attention_dropout,
            activation="gelu", norm_first=False, causal=causal, eps=eps,
        )  # post-LN, exact (erf) GELU: BERT's layout; bidirectional unless causal (GPT-style next-token LM)
        self.pooler = nn.Sequential(nn.Linear(dim, dim), nn.Tanh()) if add_pooler else None
        self.init_std = init_std
        self.apply(partial(init_weights, std=self.init_std))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None) -> Tensor:
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, D)
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # no padding in this batch: the unmasked (fastest) SDPA path
        return self.encoder(x, attention_mask)  # (B, T, D)

    def embed(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, normalize: bool = True, pooling: str | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Pooled sentence embeddings ``(B, D)``, unit length when ``normalize``."""
        pooling = pooling or self.pooling
        hidden = self(input_ids, attention_mask, token_type_ids)  # (B, T, D)
        if pooling not in _POOL:
            raise ConfigError(f"unknown pooling {pooling!r}", where="BertEncoder.embed", fix=f"use one of {POOLINGS}")
        pooled = _POOL[pooling](hidden, attention_mask)  # (B, D)
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def config(self) -> dict:
        """Constructor arguments that rebuild this architecture (saved beside checkpoints)."""
        return {
            "vocab_size": self.vocab_size, "dim": self.dim, "num_layers": self.num_layers, "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim, "max_len": self.max_len, "type_vocab_size": self.type_vocab_size,
            "eps": self.eps, "pad_token_id": self.pad_token_id, "pooling": self.pooling, "add_pooler": self.pooler is not None,
            "positions": self.positions, "causal": self.causal,
        }
