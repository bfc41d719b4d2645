"""The causal-LM pretraining recipe: fit a causal :class:`~recsys.text.encoder.BertEncoder` from scratch on
texts (next-token objective) with the shared :class:`~recsys.training.trainer.Trainer` (batches and the
head are in :mod:`recsys.text.causal_lm`; the MLM twin is :mod:`recsys.training.mlm`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor

from recsys.text.causal_lm import CausalLanguageModel, CausalLMBatches
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer
from recsys.training.trainer import FitResult, LossObjective, Trainer

__all__ = ["pretrain_causal_lm"]


def pretrain_causal_lm(
    texts: Sequence[str],
    tokenizer: TextTokenizer,
    encoder: BertEncoder | CausalLanguageModel,
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    max_length: int = 64,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> FitResult:
    """Fit a causal ``encoder`` (``BertEncoder(..., causal=True)``) in place with the next-token loss using the
    shared Trainer; returns its ``FitResult`` (``history`` rows ``{"epoch", "loss", "seconds"}`` are the loss curve).

    A :class:`CausalLanguageModel` may be passed instead of its encoder, to keep the trained head (for
    ``logits`` / ``sequence_log_prob`` afterwards, or to continue training).

    >>> tok = TextTokenizer.train(["red apple", "green apple", "red car"] * 5, vocab_size=50)
    >>> enc = BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=16, causal=True)
    >>> result = pretrain_causal_lm(["red apple", "green apple", "red car"] * 5, tok, enc, epochs=2, progress=False, device="cpu")
    >>> [row["epoch"] for row in result.history]
    [1, 2]
    """
    batches = CausalLMBatches(texts, tokenizer, batch_size, max_length, seed)
    trainer = Trainer(epochs=epochs, device=device, mixed_precision=True, patience=None, progress=progress, tensorboard=False)
    with torch.random.fork_rng(devices=[]):  # dropout and the head's init draw from a seeded, private stream
        torch.manual_seed(seed)
        lm = encoder if isinstance(encoder, CausalLanguageModel) else CausalLanguageModel(encoder)
        result = trainer.fit(LossObjective(lm), batches, partial(torch.optim.AdamW, lr=lr, weight_decay=weight_decay))
    lm.eval()
    return result
