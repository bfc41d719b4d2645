"""The MLM pretraining recipe: fit a :class:`~recsys.text.encoder.BertEncoder` from scratch on texts
with the shared :class:`~recsys.training.trainer.Trainer` (masking, batches and the MLM head are
in :mod:`recsys.text.mlm`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor

from recsys.text.encoder import BertEncoder
from recsys.text.mlm import MaskedLanguageModel, MLMBatches
from recsys.text.tokenizer import TextTokenizer
from recsys.training.trainer import FitResult, LossObjective, Trainer

__all__ = ["pretrain_mlm"]


def pretrain_mlm(
    texts: Sequence[str],
    tokenizer: TextTokenizer,
    encoder: BertEncoder,
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    probability: float = 0.15,
    max_length: int = 64,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    second_texts: Sequence[str] | None = None,
    nsp: bool = False,
) -> FitResult:
    """Fit ``encoder`` in place with the MLM loss using the shared Trainer; returns its ``FitResult``
    (``history`` rows ``{"epoch", "loss", "seconds"}`` are the loss curve).

    ``second_texts`` makes each row a sentence pair (e.g. an item's title and its genres/tags); ``nsp=True``
    adds BERT's next-sentence objective on them (pairs re-drawn every epoch; the NSP head is discarded after).

    >>> tok = TextTokenizer.train(["red apple", "green apple", "red car"] * 5, vocab_size=50)
    >>> enc = BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=16)
    >>> result = pretrain_mlm(["red apple", "green apple", "red car"] * 5, tok, enc, epochs=2, progress=False, device="cpu")
    >>> [row["epoch"] for row in result.history]
    [1, 2]
    """
    batches = MLMBatches(texts, tokenizer, batch_size, probability, max_length, seed, second_texts, nsp)
    trainer = Trainer(epochs=epochs, device=device, mixed_precision=True, patience=None, progress=progress, tensorboard=False)
    with torch.random.fork_rng(devices=[]):  # dropout and the head's init draw from a seeded, private stream
        torch.manual_seed(seed)
        model = LossObjective(MaskedLanguageModel(encoder, nsp=nsp))
        result = trainer.fit(model, batches, partial(torch.optim.AdamW, lr=lr, weight_decay=weight_decay))
    encoder.eval()
    return result
