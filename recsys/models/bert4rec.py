"""BERT4Rec (Sun et al. 2019): a bidirectional Transformer trained to recover masked items (Cloze task).

At inference a mask token is appended after the user's last ``max_len - 1`` items and the model's
prediction for it ranks all items. Trained with full softmax cross-entropy over the masked positions.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.data.ids import ITEM_SHIFT, PADDING_INDEX, mask_index
from recsys.errors import ConfigError
from recsys.models.base import check_candidates
from recsys.models.sasrec import SequentialRecommender, check_ids, check_sizes
from recsys.nn.transformer import PositionalEmbedding, TransformerEncoder, init_weights

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions


class BERT4Rec(SequentialRecommender):
    """Item + position embeddings, LayerNorm, a post-LN bidirectional encoder, and a tied output head.

    Positions are right-aligned, ``positions="learned"`` (the paper) or ``"sinusoidal"`` (fixed, no parameters, scaled
    to ``init_std``: the items' initial scale).

    Batches come from :class:`recsys.data.sequence_batches.ClozeBatches` (``inputs`` with masked
    positions set to ``num_items + 1``, ``labels`` = original item at masked positions, else 0).

    >>> model = BERT4Rec(num_items=6, max_len=4, embedding_dim=8)
    >>> batch = {"inputs": torch.tensor([[0, 1, 7, 3]]), "labels": torch.tensor([[0, 0, 2, 0]])}
    >>> model.loss(batch).shape, model.score_sequences(torch.tensor([[0, 1, 2]])).shape
    (torch.Size([]), torch.Size([1, 6]))
    """

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        embedding_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        hidden_dim: int | None = None,
        dropout: float = 0.2,
        attention_dropout: float | None = None,
        activation: str = "gelu",
        norm_first: bool = False,
        init_std: float = 0.02,
        positions: str = "learned",
    ) -> None:
        super().__init__()
        check_sizes("BERT4Rec", num_items=num_items, max_len=max_len, embedding_dim=embedding_dim)
        if max_len < 2:
            raise ConfigError(f"BERT4Rec needs max_len >= 2 (history + mask), got {max_len}", where="BERT4Rec",
                              fix="set model.module.max_len >= 2")
        self.num_items, self.max_len, self.history_len = num_items, max_len, max_len - 1
        self.mask_token, self.init_std = mask_index(num_items), init_std
        self.item_embedding = nn.Embedding(num_items + 2, embedding_dim, padding_idx=PADDING_INDEX)  # + padding, mask
        self.position = PositionalEmbedding(max_len, embedding_dim, positions, scale=init_std)  # sinusoidal: items' scale
        self.ln = nn.LayerNorm(embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(num_layers, embedding_dim, num_heads, hidden_dim, dropout,
                                          attention_dropout, activation, norm_first, causal=False)
        self.head = nn.Sequential(nn.Linear(embedding_dim, embedding_dim), nn.GELU(), nn.LayerNorm(embedding_dim))
        self.output_bias = nn.Parameter(torch.zeros(num_items))
        self.apply(partial(init_weights, std=self.init_std))

    def encode(self, inputs: Tensor) -> Tensor:
        """Hidden states ``(B, T, D)`` of left-padded sequences (index + 1, 0 = padding, ``num_items + 1`` = mask)."""
        check_ids(inputs, self.num_items + 2, "BERT4Rec.encode")
        x = self.item_embedding(inputs) + self.position(inputs.shape[1], right_aligned=True)  # (B, T, D)
        return self.encoder(self.dropout(self.ln(x)), attention_mask=inputs != PADDING_INDEX)

    def logits(self, h: Tensor) -> Tensor:
        """Scores ``(..., N)`` of every item from hidden states ``(..., D)``."""
        items = self.item_embedding.weight[ITEM_SHIFT : self.num_items + ITEM_SHIFT]  # (N, D)
        return self.head(h) @ items.T + self.output_bias

    def batch_arguments(self) -> dict[str, Any]:
        """Cloze batches of the model's ``max_len``."""
        return {"max_len": self.max_len}

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        labels = batch["labels"]  # (B, T)
        masked = labels != PADDING_INDEX
        h = self.encode(batch["inputs"])[masked]  # (M, D)
        return F.cross_entropy(self.logits(h).float(), labels[masked] - ITEM_SHIFT)

    def score_sequences(self, sequences: Tensor) -> Tensor:
        """Scores ``(B, N)`` of the item after each history ``(B, T)``: a mask token is appended."""
        return self.logits(self._next_state(sequences))  # (B, N)

    def score_items(self, users: Tensor, items: Tensor, history: Interactions) -> Tensor:
        items = check_candidates(users, items, self.num_items, "BERT4Rec.score_items")  # (B, C)
        h = self.head(self._next_state(self._user_sequences(users, history, "score_items")))  # (B, D)
        items = items.to(h.device)
        return torch.bmm(self.item_embedding(items + ITEM_SHIFT), h.unsqueeze(2)).squeeze(2) + self.output_bias[items]

    def _next_state(self, sequences: Tensor) -> Tensor:
        """Hidden state ``(B, D)`` at a mask token appended to each history ``(B, T)``."""
        mask = torch.full_like(sequences[:, :1], self.mask_token)
        inputs = torch.cat([sequences, mask], dim=1)[:, -self.max_len :]  # (B, <= max_len)
        return self.encode(inputs)[:, -1]
