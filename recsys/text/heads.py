"""Fine-tuning heads on a :class:`BertEncoder`: pooled text -> dropout -> ``Linear(D, num_labels)``.

``TextClassifier`` computes logits and the task's loss (multi-label BCE-with-logits, multi-class
cross-entropy or regression MSE); ``predict`` turns texts into probabilities (or values) in
length-sorted batches. The recipe that fits a classifier with the shared Trainer, with the encoder
fine-tuned or frozen (feature extraction), is :func:`recsys.training.finetune.fine_tune`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.errors import ConfigError, DataError
from recsys.runtime import resolve_device
from recsys.text.encode import token_batches
from recsys.text.encoder import POOLINGS, BertEncoder, cls_pool, mean_pool
from recsys.text.tokenizer import TextTokenizer

__all__ = ["TASKS", "TextClassifier", "check_labels", "pooled_features", "predict", "task_loss"]

TASKS = ("multilabel", "multiclass", "regression")


def _check_task(task: str, where: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}", where=where, fix=f"use one of {TASKS}")


def task_loss(logits: Tensor, labels: Tensor, task: str) -> Tensor:
    """The loss of ``logits (B, L)``: BCE-with-logits on 0/1 ``labels (B, L)`` (multilabel), cross-entropy on
    class indices ``(B,)`` (multiclass) or MSE on values ``(B, L)`` (regression); means over the batch.

    >>> round(task_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), "multilabel").item(), 4)  # log 2
    0.6931
    """
    _check_task(task, "task_loss(task=...)")
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    if task == "multiclass":
        return F.cross_entropy(logits, labels.long())
    return F.mse_loss(logits, labels.to(logits.dtype).reshape(logits.shape))


def check_labels(labels: Tensor, num_rows: int, num_labels: int, task: str, where: str) -> Tensor:
    """``labels`` as the tensor ``task_loss`` takes (float ``(N, L)``, or long ``(N,)`` for multiclass), or a
    :class:`DataError` naming what is wrong (row count, shape, values).

    >>> check_labels(torch.tensor([0, 2]), 2, 3, "multiclass", "here").tolist()
    [0, 2]
    """
    _check_task(task, where)
    labels = torch.as_tensor(labels)
    if labels.shape[0:1] != (num_rows,):
        raise DataError(f"{num_rows} texts but labels of shape {tuple(labels.shape)}", where=where,
                        fix="pass one label row per text")
    if task == "multiclass":
        if labels.dim() != 1 or labels.is_floating_point():
            raise DataError(f"multiclass labels must be class indices (N,), got {tuple(labels.shape)} {labels.dtype}",
                            where=where, fix="pass a long tensor of class ids in [0, num_labels)")
        if num_rows and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
            raise DataError(f"class ids must lie in [0, {num_labels})", where=where, fix="map labels to 0..num_labels-1")
        return labels.long()
    if task == "regression" and labels.dim() == 1 and num_labels == 1:
        labels = labels.unsqueeze(1)
    if labels.dim() != 2 or labels.shape[1] != num_labels:
        raise DataError(f"{task} labels must be (N, {num_labels}), got {tuple(labels.shape)}", where=where,
                        fix="pass one column per label (multilabel: a 0/1 indicator matrix)")
    labels = labels.float()
    if task == "multilabel" and not bool(((labels == 0) | (labels == 1)).all()):
        raise DataError("multilabel labels must be 0 or 1", where=where, fix="pass a 0/1 indicator matrix")
    return labels


class TextClassifier(nn.Module):
    """Encoder -> pooled text (mean over real tokens, or [CLS]) -> dropout -> ``Linear(D, num_labels)``.

    ``forward(input_ids, attention_mask, token_type_ids=None) -> logits (B, num_labels)``; ``loss(batch)``
    is :func:`task_loss` on ``batch["labels"]`` (a batch holding pooled ``features`` skips the encoder).
    ``freeze_encoder=True`` is feature extraction: the encoder's parameters get no gradient and it stays in
    eval mode (no dropout) even while the head trains; ``False`` sets every encoder parameter trainable.

    >>> enc = BertEncoder(vocab_size=20, dim=8, num_layers=1, num_heads=2, max_len=8)
    >>> clf = TextClassifier(enc, num_labels=3)
    >>> clf(torch.tensor([[2, 5, 3]]), torch.tensor([[1, 1, 1]])).shape
    torch.Size([1, 3])
    """

    def __init__(
        self, encoder: BertEncoder, num_labels: int, task: str = "multilabel", pooling: str = "mean",
        dropout: float = 0.1, freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        _check_task(task, "TextClassifier(task=...)")
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}", where="TextClassifier(pooling=...)", fix=f"use one of {POOLINGS}")
        if num_labels < 1 or (task == "multiclass" and num_labels < 2):
            raise ConfigError(f"num_labels={num_labels} is too few for {task}", where="TextClassifier(num_labels=...)",
                              fix="multiclass needs >= 2 classes, the other tasks >= 1 label")
        self.encoder, self.num_labels, self.task, self.pooling = encoder, num_labels, task, pooling
        self.freeze_encoder = freeze_encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.dim, num_labels)
        nn.init.normal_(self.head.weight, std=encoder.init_std)  # as BERT's classification heads
        nn.init.zeros_(self.head.bias)
        encoder.requires_grad_(not freeze_encoder)  # the whole encoder trains, or none of it
        if freeze_encoder:
            encoder.eval()

    def train(self, mode: bool = True) -> TextClassifier:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # feature extraction: no dropout in the frozen encoder
        return self

    def features(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None) -> Tensor:
        """Pooled encoder output ``(B, D)`` (what the head reads)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            hidden = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, T, D)
        return cls_pool(hidden) if self.pooling == "cls" else mean_pool(hidden, attention_mask)

    def head_logits(self, features: Tensor) -> Tensor:
        """Logits ``(B, num_labels)`` from pooled features ``(B, D)``."""
        return self.head(self.dropout(features))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None) -> Tensor:
        return self.head_logits(self.features(input_ids, attention_mask, token_type_ids))

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        if "features" in batch:
            logits = self.head_logits(batch["features"])
        else:
            logits = self(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))
        return task_loss(logits, batch["labels"], self.task)

    def outputs(self, logits: Tensor) -> Tensor:
        """Probabilities (sigmoid for multilabel, softmax for multiclass) or the values (regression)."""
        if self.task == "multilabel":
            return torch.sigmoid(logits)
        return logits.softmax(-1) if self.task == "multiclass" else logits


@torch.inference_mode()
def pooled_features(
    classifier: TextClassifier, tokenizer: TextTokenizer, texts: Sequence[str], batch_size: int = 64,
    pairs: Sequence[str] | None = None, max_length: int | None = None,
) -> Tensor:
    """What the head reads, ``(N, D)`` float32 on the classifier's device in the order of ``texts``: the encoder
    (eval mode) in length-sorted batches of at most ``batch_size`` rows and ``32 * batch_size`` tokens."""
    if pairs is not None and len(pairs) != len(texts):
        raise DataError(f"{len(texts)} texts but {len(pairs)} pairs", where="pooled_features", fix="pass one pair per text")
    device = classifier.head.weight.device
    was_training = classifier.training
    classifier.eval()
    out = torch.empty(len(texts), classifier.encoder.dim, device=device)
    for rows in token_batches(tokenizer.lengths(texts, pairs, max_length), batch_size, 32 * batch_size):
        batch = tokenizer([texts[i] for i in rows], None if pairs is None else [pairs[i] for i in rows])
        out[torch.from_numpy(rows).to(device)] = classifier.features(**{k: v.to(device) for k, v in batch.items()}).float()
    classifier.train(was_training)
    return out


def predict(
    classifier: TextClassifier, tokenizer: TextTokenizer, texts: Sequence[str], batch_size: int = 64,
    pairs: Sequence[str] | None = None, device: str | torch.device = "auto", max_length: int | None = None,
) -> Tensor:
    """``(N, num_labels)`` float32 on CPU in the order of ``texts``: probabilities (multilabel, multiclass) or
    values (regression), under inference mode in length-sorted batches (``pairs``: second segments, as the
    classifier was trained; ``max_length``: truncation, default the tokenizer's current one).

    >>> tok = TextTokenizer.train(["red apple", "green apple", "red car"], vocab_size=50)
    >>> clf = TextClassifier(BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=16), num_labels=2)
    >>> predict(clf, tok, ["red car", "apple", "green"], batch_size=2, device="cpu").shape
    torch.Size([3, 2])
    """
    classifier.to(resolve_device(device, where="predict(device=...)"))
    features = pooled_features(classifier, tokenizer, texts, batch_size, pairs, max_length)
    was_training = classifier.training
    classifier.eval()
    with torch.inference_mode():
        out = classifier.outputs(classifier.head_logits(features)).float().cpu()
    classifier.train(was_training)
    return out
