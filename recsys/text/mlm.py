"""Masked-language-model (BERT) pieces for pretraining :class:`BertEncoder` from scratch on item texts.

``mask_tokens`` (15% of real, non-special tokens; of those 80% -> [MASK], 10% -> a random token,
10% unchanged; label -100 elsewhere) -> ``MLMBatches`` (shuffled, re-masked every epoch, seeded) ->
``MaskedLanguageModel.loss`` (cross-entropy on the masked positions only, decoder tied to the token
embeddings). The recipe that fits them with the shared Trainer is
:func:`recsys.training.mlm.pretrain_mlm` (text is a leaf: it imports no training code).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.errors import ConfigError
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer

__all__ = ["IGNORE_INDEX", "MLMBatches", "MaskedLanguageModel", "mask_tokens"]

IGNORE_INDEX = -100


def mask_tokens(
    input_ids: Tensor,
    special_mask: Tensor,
    mask_id: int,
    vocab_size: int,
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT masking: ``(inputs, labels)``, labels ``IGNORE_INDEX`` except at the selected positions.

    ``special_mask`` (B, T) is True at tokens never selected (padding, [CLS], [SEP]).

    >>> ids = torch.tensor([[2, 7, 8, 9, 3]])
    >>> inputs, labels = mask_tokens(ids, ids < 5, mask_id=4, vocab_size=10, probability=1.0, generator=torch.Generator().manual_seed(0))
    >>> labels.tolist()
    [[-100, 7, 8, 9, -100]]
    """
    if not 0.0 <= probability <= 1.0:
        raise ConfigError(f"probability must be in [0, 1], got {probability}", where="mask_tokens")
    device = input_ids.device
    uniform = torch.rand(input_ids.shape, generator=generator).to(device)  # (B, T)
    selected = (uniform < probability) & ~special_mask  # (B, T)
    labels = torch.where(selected, input_ids, IGNORE_INDEX)
    action = torch.rand(input_ids.shape, generator=generator).to(device)  # 80 / 10 / 10 split of the selected
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator).to(device)
    inputs = torch.where(selected & (action < 0.8), mask_id, input_ids)
    inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, labels


class MLMBatches:
    """Shuffled, freshly masked MLM batches of ``texts``, deterministic per ``(seed, epoch)``.

    >>> tok = TextTokenizer.train(["red apple", "green apple", "red car"], vocab_size=50)
    >>> batches = MLMBatches(["red apple", "green apple", "red car"], tok, batch_size=2, seed=0)
    >>> sorted(len(b["input_ids"]) for b in batches), sorted(next(iter(batches)))
    ([1, 2], ['attention_mask', 'input_ids', 'labels'])
    """

    def __init__(
        self, texts: Sequence[str], tokenizer: TextTokenizer, batch_size: int = 64, probability: float = 0.15,
        max_length: int = 64, seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}", where="MLMBatches")
        encoded = tokenizer(list(texts), max_length=max_length)  # tokenized once: (N, T)
        self.input_ids, self.attention_mask = encoded["input_ids"], encoded["attention_mask"]
        self.lengths = self.attention_mask.sum(1)
        self.special = torch.isin(self.input_ids, tokenizer.special_ids)  # (N, T)
        self.mask_id, self.vocab_size = tokenizer.mask_id, tokenizer.vocab_size
        self.batch_size, self.probability, self.seed, self.epoch = batch_size, probability, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.input_ids) // self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.input_ids), generator=generator)
        groups = []  # texts of similar length batched together (less padding), in shuffled windows of 50 batches
        for window in order.split(self.batch_size * 50):
            groups.extend(window[self.lengths[window].argsort(stable=True)].split(self.batch_size))
        for index in torch.randperm(len(groups), generator=generator).tolist():
            rows = groups[index]
            width = int(self.lengths[rows].max())  # trim padding to this batch's longest text
            ids, special = self.input_ids[rows, :width], self.special[rows, :width]
            inputs, labels = mask_tokens(ids, special, self.mask_id, self.vocab_size, self.probability, generator)
            yield {"input_ids": inputs, "attention_mask": self.attention_mask[rows, :width], "labels": labels}


class MaskedLanguageModel(nn.Module):
    """Encoder + BERT's MLM head (dense, GELU, LayerNorm, decoder tied to the token embeddings).

    ``loss(batch)`` (also ``forward``) is the training objective; :func:`recsys.training.mlm.pretrain_mlm`
    fits it with the shared Trainer. It ranks no items.

    >>> model = MaskedLanguageModel(BertEncoder(vocab_size=12, dim=8, num_layers=1, num_heads=2, max_len=8))
    >>> batch = {"input_ids": torch.tensor([[2, 4, 6, 3]]), "labels": torch.tensor([[-100, 5, -100, -100]])}
    >>> model.loss(batch).shape
    torch.Size([])
    """

    def __init__(self, encoder: BertEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        dim = encoder.dim
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim, eps=encoder.eps))
        self.bias = nn.Parameter(torch.zeros(encoder.vocab_size))

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        hidden = self.encoder(batch["input_ids"], batch.get("attention_mask"))  # (B, T, D)
        labels = batch["labels"]
        selected = labels != IGNORE_INDEX  # (B, T)
        if not bool(selected.any()):
            return hidden.sum() * 0.0  # nothing masked in this batch
        h = self.transform(hidden[selected])  # (M, D): masked positions only
        logits = h @ self.encoder.embeddings.word.weight.T + self.bias  # (M, V)
        return F.cross_entropy(logits, labels[selected])

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.loss(batch)
