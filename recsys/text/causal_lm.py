"""Causal-language-model (GPT-style) pieces for pretraining a causal :class:`BertEncoder` from scratch on item texts.

The same blocks as the MLM, with ``BertEncoder(..., causal=True)``: position t attends to positions
<= t and predicts token t+1. ``CausalLMBatches`` (shuffled, length-bucketed, seeded per epoch) ->
``CausalLanguageModel.loss`` (shifted cross-entropy on every real target: [CLS] is never a target,
[SEP] is, as end-of-text; padding is skipped; decoder tied to the token embeddings). The recipe that
fits them with the shared Trainer is :func:`recsys.training.causal_lm.pretrain_causal_lm` (text is a
leaf: it imports no training code). Item vectors come from ``encoder.embed`` as for any encoder
(``pooling="mean"``, or ``"last"`` for the last real token).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.errors import ConfigError
from recsys.text.encoder import BertEncoder
from recsys.text.mlm import length_groups
from recsys.text.tokenizer import TextTokenizer

__all__ = ["CausalLMBatches", "CausalLanguageModel", "next_token_targets"]


def next_token_targets(input_ids: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(targets, valid)`` of shape ``(B, T-1)``: position t predicts ``input_ids[:, t+1]``, valid at real tokens.

    >>> targets, valid = next_token_targets(torch.tensor([[2, 7, 8, 3, 0]]), torch.tensor([[1, 1, 1, 1, 0]]))
    >>> targets.tolist(), valid.tolist()
    ([[7, 8, 3, 0]], [[True, True, True, False]])
    """
    targets = input_ids[:, 1:]  # (B, T-1): the first token ([CLS]) is never a target
    if attention_mask is None:
        return targets, torch.ones_like(targets, dtype=torch.bool)
    return targets, attention_mask[:, 1:].bool()  # right padding: a real target has a real (earlier) context


class CausalLMBatches:
    """Shuffled next-token batches of ``texts`` (``input_ids``, ``attention_mask``), deterministic per ``(seed, epoch)``.

    Texts of similar length are batched together and each batch is trimmed to its longest text.

    >>> tok = TextTokenizer.train(["red apple", "green apple", "red car"], vocab_size=50)
    >>> batches = CausalLMBatches(["red apple", "green apple", "red car"], tok, batch_size=2, seed=0)
    >>> sorted(len(b["input_ids"]) for b in batches), sorted(next(iter(batches)))
    ([1, 2], ['attention_mask', 'input_ids'])
    """

    def __init__(
        self, texts: Sequence[str], tokenizer: TextTokenizer, batch_size: int = 64, max_length: int = 64, seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}", where="CausalLMBatches", fix="pass batch_size >= 1")
        encoded = tokenizer(list(texts), max_length=max_length)  # tokenized once: (N, T)
        self.input_ids, self.attention_mask = encoded["input_ids"], encoded["attention_mask"]
        self.lengths = self.attention_mask.sum(1)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.input_ids) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        groups = length_groups(torch.randperm(len(self.input_ids), generator=generator), self.lengths, self.batch_size)
        for index in torch.randperm(len(groups), generator=generator).tolist():
            rows = groups[index]
            width = int(self.lengths[rows].max())  # trim padding to this batch's longest text
            yield {"input_ids": self.input_ids[rows, :width], "attention_mask": self.attention_mask[rows, :width]}


class CausalLanguageModel(nn.Module):
    """Causal encoder + a next-token head (dense, GELU, LayerNorm, decoder tied to the token embeddings).

    ``loss(batch)`` (also ``forward``) is the mean next-token cross-entropy over real targets;
    ``logits`` gives every position's next-token logits ``(B, T, V)``; ``sequence_log_prob`` the
    log-likelihood ``(B,)`` of each text after its first token. It ranks no items.

    >>> model = CausalLanguageModel(BertEncoder(vocab_size=12, dim=8, num_layers=1, num_heads=2, max_len=8, causal=True))
    >>> batch = {"input_ids": torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}
    >>> model.loss(batch).shape, model.sequence_log_prob(**batch).shape
    (torch.Size([]), torch.Size([2]))
    """

    def __init__(self, encoder: BertEncoder) -> None:
        super().__init__()
        if not getattr(encoder, "causal", False):
            raise ConfigError(
                "the encoder is bidirectional: every position would see the token it must predict",
                where="CausalLanguageModel(encoder=...)", fix="build the encoder with BertEncoder(..., causal=True)",
            )
        self.encoder = encoder
        dim = encoder.dim
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim, eps=encoder.eps))
        self.bias = nn.Parameter(torch.zeros(encoder.vocab_size))

    def _decode(self, hidden: Tensor) -> Tensor:
        return self.transform(hidden) @ self.encoder.embeddings.word.weight.T + self.bias  # (..., V)

    def logits(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Next-token logits ``(B, T, V)``: row t scores token t+1 from tokens <= t."""
        return self._decode(self.encoder(input_ids, attention_mask))

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        input_ids, attention_mask = batch["input_ids"], batch.get("attention_mask")
        hidden = self.encoder(input_ids, attention_mask)  # (B, T, D)
        targets, valid = next_token_targets(input_ids, attention_mask)  # (B, T-1)
        if not bool(valid.any()):
            return hidden.sum() * 0.0  # no text longer than one token
        logits = self._decode(hidden[:, :-1][valid])  # (M, V): real targets only
        return F.cross_entropy(logits, targets[valid])

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.loss(batch)

    def sequence_log_prob(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Sum of ``log p(token t+1 | tokens <= t)`` over each text's real targets: ``(B,)``."""
        targets, valid = next_token_targets(input_ids, attention_mask)  # (B, T-1)
        log_probs = self.logits(input_ids, attention_mask)[:, :-1].float().log_softmax(-1)  # (B, T-1, V)
        picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        return (picked * valid).sum(1)
