"""Masked-language-model (BERT) pieces for pretraining :class:`BertEncoder` from scratch on item texts.

``mask_tokens`` (15% of real, non-special tokens; of those 80% -> [MASK], 10% -> a random token,
10% unchanged; label -100 elsewhere) -> ``MLMBatches`` (shuffled, re-masked every epoch, seeded) ->
``MaskedLanguageModel.loss`` (cross-entropy on the masked positions only, decoder tied to the token
embeddings). Optional next-sentence prediction (``nsp_pairs``: half the rows, drawn afresh every epoch,
get another row's second segment; ``MaskedLanguageModel(nsp=True)`` adds BERT's pooler + 2-way head and its
cross-entropy to the loss). The recipe that fits them with the shared Trainer is
:func:`recsys.training.mlm.pretrain_mlm` (text is a leaf: it imports no training code).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.errors import ConfigError, DataError
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer

__all__ = ["IGNORE_INDEX", "MLMBatches", "MaskedLanguageModel", "length_groups", "mask_tokens", "nsp_pairs"]

IGNORE_INDEX = -100


def length_groups(order: Tensor, lengths: Tensor, batch_size: int, window: int = 50) -> list[Tensor]:
    """The rows of ``order`` cut into batches of similar ``lengths`` (less padding): sorted by length (stable)
    within consecutive windows of ``window`` batches, so a shuffled ``order`` stays shuffled across windows.

    >>> [g.tolist() for g in length_groups(torch.tensor([3, 0, 2, 1]), torch.tensor([5, 1, 5, 1]), batch_size=2)]
    [[3, 1], [0, 2]]
    """
    groups: list[Tensor] = []
    for part in order.split(batch_size * window):
        groups.extend(part[lengths[part].argsort(stable=True)].split(batch_size))
    return groups


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


def nsp_pairs(
    first: Sequence[str], second: Sequence[str], generator: torch.Generator | None = None
) -> tuple[list[str], list[str], Tensor]:
    """Next-sentence pairs ``(a, b, is_next)``: ``a`` is ``first``; exactly ``N // 2`` rows, chosen at random,
    get the second segment of a random other row whose segment differs from their own (``is_next`` False),
    the others keep their own (``is_next`` True).

    >>> a, b, is_next = nsp_pairs(["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"], torch.Generator().manual_seed(0))
    >>> a, int(is_next.sum()), all((y == "b" + x[1]) == bool(n) for x, y, n in zip(a, b, is_next))
    (['a1', 'a2', 'a3', 'a4'], 2, True)
    """
    n = len(first)
    if len(second) != n:
        raise DataError(f"{n} first segments but {len(second)} second ones", where="nsp_pairs", fix="pass one pair per row")
    codes = torch.from_numpy(np.unique(np.asarray(list(second), dtype=object), return_inverse=True)[1].reshape(-1))
    if n < 2 or int(codes.max()) == 0:
        raise DataError("next-sentence negatives need at least two distinct second segments", where="nsp_pairs",
                        fix="pass texts whose second segments differ")
    negative = torch.randperm(n, generator=generator)[: n // 2]  # rows that get another row's segment
    partner = torch.arange(n)
    todo = negative
    for _ in range(1000):  # rejection rounds, vectorized over the rows still without a partner
        if len(todo) == 0:
            break
        drawn = (todo + torch.randint(1, n, (len(todo),), generator=generator)) % n  # uniform over the other rows
        ok = codes[drawn] != codes[todo]
        partner[todo[ok]] = drawn[ok]
        todo = todo[~ok]
    else:
        raise DataError("could not draw differing second segments", where="nsp_pairs",
                        fix="pass texts whose second segments are mostly distinct")
    is_next = partner == torch.arange(n)
    second = list(second)
    return list(first), [second[j] for j in partner.tolist()], is_next


class MLMBatches:
    """Shuffled, freshly masked MLM batches of ``texts``, deterministic per ``(seed, epoch)``.

    With ``second_texts`` rows are sentence pairs (``token_type_ids`` in the batch); ``nsp=True`` also re-draws
    the pairs every epoch with :func:`nsp_pairs` and adds ``next_sentence_label`` (0: ``b`` follows ``a``,
    1: ``b`` is another row's, as Hugging Face).

    >>> tok = TextTokenizer.train(["red apple", "green apple", "red car"], vocab_size=50)
    >>> batches = MLMBatches(["red apple", "green apple", "red car"], tok, batch_size=2, seed=0)
    >>> sorted(len(b["input_ids"]) for b in batches), sorted(next(iter(batches)))
    ([1, 2], ['attention_mask', 'input_ids', 'labels'])
    >>> nsp = MLMBatches(["red", "green", "blue"], tok, batch_size=4, second_texts=["apple", "car", "sky"], nsp=True)
    >>> sorted(next(iter(nsp)))
    ['attention_mask', 'input_ids', 'labels', 'next_sentence_label', 'token_type_ids']
    """

    def __init__(
        self, texts: Sequence[str], tokenizer: TextTokenizer, batch_size: int = 64, probability: float = 0.15,
        max_length: int = 64, seed: int = 0, second_texts: Sequence[str] | None = None, nsp: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}", where="MLMBatches")
        if nsp and second_texts is None:
            raise ConfigError("nsp=True needs sentence pairs", where="MLMBatches(nsp=True)",
                              fix="pass second_texts (one second segment per text)")
        if second_texts is not None and len(second_texts) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(second_texts)} second_texts", where="MLMBatches",
                            fix="pass one second segment per text")
        self.texts, self.second = list(texts), None if second_texts is None else list(second_texts)
        self.tokenizer, self.max_length, self.nsp = tokenizer, max_length, nsp
        self.special_ids = tokenizer.special_ids
        if not nsp:
            self._encode(self.texts, self.second)  # tokenized once: (N, T)
        self.mask_id, self.vocab_size = tokenizer.mask_id, tokenizer.vocab_size
        self.batch_size, self.probability, self.seed, self.epoch = batch_size, probability, seed, 0

    def _encode(self, texts: list[str], pairs: list[str] | None) -> None:
        encoded = self.tokenizer(texts, pairs, max_length=self.max_length)
        self.input_ids, self.attention_mask = encoded["input_ids"], encoded["attention_mask"]
        self.token_type_ids = encoded.get("token_type_ids")
        self.lengths = self.attention_mask.sum(1)
        self.special = torch.isin(self.input_ids, self.special_ids)  # (N, T)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.texts) // self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.nsp:  # fresh pairs every epoch
            a, b, is_next = nsp_pairs(self.texts, self.second, generator)
            self._encode(a, b)
            next_label = (~is_next).long()  # (N,)
        groups = length_groups(torch.randperm(len(self.input_ids), generator=generator), self.lengths, self.batch_size)
        for index in torch.randperm(len(groups), generator=generator).tolist():
            rows = groups[index]
            width = int(self.lengths[rows].max())  # trim padding to this batch's longest text
            ids, special = self.input_ids[rows, :width], self.special[rows, :width]
            inputs, labels = mask_tokens(ids, special, self.mask_id, self.vocab_size, self.probability, generator)
            batch = {"input_ids": inputs, "attention_mask": self.attention_mask[rows, :width], "labels": labels}
            if self.token_type_ids is not None:
                batch["token_type_ids"] = self.token_type_ids[rows, :width]
            if self.nsp:
                batch["next_sentence_label"] = next_label[rows]
            yield batch


class MaskedLanguageModel(nn.Module):
    """Encoder + BERT's MLM head (dense, GELU, LayerNorm, decoder tied to the token embeddings).

    ``nsp=True`` adds BERT's next-sentence head: the pooler (dense + tanh on [CLS]; the encoder's own when it
    has one) and ``Linear(D, 2)``; the loss is then MLM + NSP cross-entropy on ``next_sentence_label``.
    ``loss(batch)`` (also ``forward``) is the training objective; :func:`recsys.training.mlm.pretrain_mlm`
    fits it with the shared Trainer. It ranks no items.

    >>> model = MaskedLanguageModel(BertEncoder(vocab_size=12, dim=8, num_layers=1, num_heads=2, max_len=8))
    >>> batch = {"input_ids": torch.tensor([[2, 4, 6, 3]]), "labels": torch.tensor([[-100, 5, -100, -100]])}
    >>> model.loss(batch).shape
    torch.Size([])
    """

    def __init__(self, encoder: BertEncoder, nsp: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        dim = encoder.dim
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim, eps=encoder.eps))
        self.bias = nn.Parameter(torch.zeros(encoder.vocab_size))
        self.nsp = nsp
        if nsp:
            self.pooler = encoder.pooler if encoder.pooler is not None else nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
            self.nsp_head = nn.Linear(dim, 2)

    def nsp_logits(self, hidden: Tensor) -> Tensor:
        """Next-sentence logits ``(B, 2)`` (class 0: ``b`` follows ``a``) from hidden states ``(B, T, D)``."""
        return self.nsp_head(self.pooler(hidden[:, 0]))

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        hidden = self.encoder(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))  # (B, T, D)
        labels = batch["labels"]
        selected = labels != IGNORE_INDEX  # (B, T)
        if bool(selected.any()):
            h = self.transform(hidden[selected])  # (M, D): masked positions only
            logits = h @ self.encoder.embeddings.word.weight.T + self.bias  # (M, V)
            loss = F.cross_entropy(logits, labels[selected])
        else:
            loss = hidden.sum() * 0.0  # nothing masked in this batch
        if self.nsp:
            if "next_sentence_label" not in batch:
                raise DataError("the batch has no 'next_sentence_label'", where="MaskedLanguageModel(nsp=True).loss",
                                fix="build batches with MLMBatches(..., second_texts=..., nsp=True)")
            loss = loss + F.cross_entropy(self.nsp_logits(hidden), batch["next_sentence_label"])
        return loss

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.loss(batch)
