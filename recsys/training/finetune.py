"""The fine-tuning recipe: fit a :class:`~recsys.text.heads.TextClassifier` on labelled texts with the shared
:class:`~recsys.training.trainer.Trainer`, the whole encoder fine-tuned or frozen (feature extraction).

AdamW with two learning rates (``lr`` for the encoder, ``head_lr`` for the head), no weight decay on biases
and LayerNorm weights, a linear warmup over the first ``warmup`` share of steps then linear decay (BERT's
schedule), gradient clipping at 1.0. Frozen, the encoder runs once: pooled features are computed up front
and only the head trains on them (the same optimizer and schedule, epochs that cost a linear layer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from recsys.errors import ConfigError, DataError
from recsys.runtime import resolve_device
from recsys.text.encoder import BertEncoder
from recsys.text.heads import TextClassifier, check_labels, pooled_features, task_loss
from recsys.text.mlm import length_groups
from recsys.text.tokenizer import TextTokenizer
from recsys.training.optim import Adam
from recsys.training.trainer import FitResult, LossObjective, Trainer

__all__ = ["LinearWarmupAdamW", "fine_tune"]


class LinearWarmupAdamW(Adam):
    """AdamW (Adam with decoupled weight decay, torch's update; :class:`~recsys.training.optim.Adam`, so no
    ``torch._dynamo`` import) whose learning rates follow BERT's schedule, advanced by every ``step``:
    ``(s + 1) / (warmup_steps + 1)`` of each group's ``lr`` during warmup, then linear decay towards 0 at
    ``total_steps`` (never exactly 0).

    >>> w = torch.nn.Parameter(torch.ones(1))
    >>> opt = LinearWarmupAdamW([w], lr=1.0, total_steps=4, warmup_steps=1)
    >>> lrs = []
    >>> for _ in range(4):
    ...     lrs.append(opt.param_groups[0]["lr"]); w.grad = torch.ones(1); opt.step()
    >>> lrs
    [0.5, 1.0, 0.6666666666666666, 0.3333333333333333]
    """

    def __init__(self, params, lr: float = 1e-3, total_steps: int = 1, warmup_steps: int = 0, weight_decay: float = 0.01,
                 **kwargs) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, decoupled_weight_decay=True, **kwargs)
        self.total_steps, self.warmup_steps, self.steps_done = max(total_steps, 1), warmup_steps, 0
        for group in self.param_groups:
            group.setdefault("peak_lr", group["lr"])
        self._set_lr()

    def _factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        return max(self.total_steps - step, 1) / max(self.total_steps - self.warmup_steps, 1)

    def _set_lr(self) -> None:
        factor = self._factor(self.steps_done)
        for group in self.param_groups:
            group["lr"] = group["peak_lr"] * factor

    def step(self, closure=None):
        loss = super().step(closure)
        self.steps_done += 1
        self._set_lr()
        return loss

    def state_dict(self) -> dict:
        """Adam's state and the schedule's position, so a resumed run continues the schedule."""
        return {**super().state_dict(), "schedule": {"steps_done": self.steps_done, "total_steps": self.total_steps,
                                                     "warmup_steps": self.warmup_steps}}

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        schedule = state_dict.pop("schedule", None)
        super().load_state_dict(state_dict)
        if schedule is not None:
            self.steps_done, self.total_steps, self.warmup_steps = (int(schedule[key]) for key in ("steps_done", "total_steps", "warmup_steps"))
        self._set_lr()


class _LabeledBatches:
    """Shuffled batches of ``inputs`` rows (token tensors trimmed to each batch's longest text, or pooled
    ``features``) with their ``labels``, deterministic per ``(seed, epoch)``."""

    def __init__(self, inputs: dict[str, Tensor], labels: Tensor, batch_size: int, seed: int) -> None:
        self.inputs, self.labels, self.batch_size, self.seed, self.epoch = inputs, labels, batch_size, seed, 0
        mask = inputs.get("attention_mask")
        self.lengths = mask.sum(1) if mask is not None else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.labels), generator=generator)
        if self.lengths is None:
            groups = list(order.split(self.batch_size))
        else:  # texts of similar length together (less padding)
            groups = length_groups(order, self.lengths, self.batch_size)
        for index in torch.randperm(len(groups), generator=generator).tolist():
            rows = groups[index]
            if self.lengths is None:
                yield {"features": self.inputs["features"][rows], "labels": self.labels[rows]}
                continue
            width = int(self.lengths[rows].max())
            yield {**{k: v[rows, :width] for k, v in self.inputs.items()}, "labels": self.labels[rows]}


def _param_groups(classifier: TextClassifier, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    """Encoder at ``lr``, head at ``head_lr``; biases and LayerNorm weights (1-D) without weight decay."""
    groups = []
    for module, rate in ((classifier.encoder, lr), (classifier.head, head_lr)):
        params = [p for p in module.parameters() if p.requires_grad]
        groups.append({"params": [p for p in params if p.dim() > 1], "lr": rate, "weight_decay": weight_decay})
        groups.append({"params": [p for p in params if p.dim() <= 1], "lr": rate, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def fine_tune(
    texts: Sequence[str],
    labels: Tensor,
    tokenizer: TextTokenizer,
    encoder: BertEncoder,
    task: str = "multilabel",
    num_labels: int | None = None,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 5e-5,
    head_lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup: float = 0.1,
    freeze_encoder: bool = False,
    pooling: str = "mean",
    dropout: float = 0.1,
    max_length: int = 128,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    valid: tuple[Sequence[str], Tensor] | None = None,
    pairs: Sequence[str] | None = None,
    valid_pairs: Sequence[str] | None = None,
    threads: int | None = None,
    features: tuple[Tensor, Tensor | None] | None = None,
) -> tuple[TextClassifier, FitResult]:
    """Fit a :class:`TextClassifier` on ``encoder`` (changed in place unless ``freeze_encoder``) to ``labels``.

    ``labels``: a 0/1 ``(N, L)`` matrix (multilabel), class ids ``(N,)`` (multiclass) or values ``(N, L)`` /
    ``(N,)`` (regression); ``num_labels`` defaults to ``L`` (multiclass: the largest id + 1). With ``valid``
    (texts, labels) every epoch reports ``valid_loss`` and the classifier ends with its best epoch's weights.
    ``features``: with ``freeze_encoder``, the pooled features of ``texts`` and of the valid texts (or None)
    already computed by :func:`~recsys.text.heads.pooled_features` (one encoding shared by several runs).
    Returns the classifier (eval mode) and the Trainer's ``FitResult``.

    >>> tok = TextTokenizer.train(["red apple", "green apple", "red car"] * 5, vocab_size=50)
    >>> enc = BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=16)
    >>> clf, result = fine_tune(["red apple", "green apple", "red car"], torch.tensor([[1, 0], [0, 1], [1, 1]]), tok, enc,
    ...                         epochs=2, progress=False, device="cpu")
    >>> clf.num_labels, [row["epoch"] for row in result.history]
    (2, [1, 2])
    """
    if task not in ("multilabel", "multiclass", "regression"):
        raise ConfigError(f"unknown task {task!r}", where="fine_tune(task=...)", fix="use 'multilabel', 'multiclass' or 'regression'")
    if len(texts) == 0:
        raise DataError("no texts to fine-tune on", where="fine_tune(texts=...)", fix="pass at least one labelled text")
    for name, value, ok in [("epochs", epochs, epochs >= 1), ("batch_size", batch_size, batch_size >= 1),
                            ("warmup", warmup, 0.0 <= warmup < 1.0), ("lr", lr, lr >= 0), ("head_lr", head_lr, head_lr > 0)]:
        if not ok:
            raise ConfigError(f"invalid {name}: {value!r}", where=f"fine_tune({name}=...)",
                              fix="epochs, batch_size >= 1; 0 <= warmup < 1; lr >= 0; head_lr > 0")
    labels = torch.as_tensor(labels)
    if num_labels is None:
        if task == "multiclass":
            num_labels = int(labels.max()) + 1 if labels.numel() and not labels.is_floating_point() else 2
        else:
            num_labels = labels.shape[1] if labels.dim() == 2 else 1
    labels = check_labels(labels, len(texts), num_labels, task, "fine_tune(labels=...)")
    if valid is not None:
        valid_texts, valid_labels = valid
        valid_labels = check_labels(valid_labels, len(valid_texts), num_labels, task, "fine_tune(valid=...)")
    if features is not None and (not freeze_encoder or len(features[0]) != len(texts)
                                 or (features[1] is None) != (valid is None)):
        raise ConfigError("features must be the frozen encoder's pooled output of texts (and of valid texts)",
                          where="fine_tune(features=...)", fix="pass features with freeze_encoder=True, one row per text")
    device_ = resolve_device(device, where="fine_tune(device=...)")
    with torch.random.fork_rng(devices=[]):  # the head's init and dropout draw from a seeded, private stream
        torch.manual_seed(seed)
        classifier = TextClassifier(encoder, num_labels, task, pooling, dropout, freeze_encoder).to(device_)
        if features is not None:
            inputs = {"features": features[0].float().cpu()}
        elif freeze_encoder:  # the encoder runs once; the head trains on its pooled output
            inputs = {"features": pooled_features(classifier, tokenizer, texts, 2 * batch_size, pairs, max_length).cpu()}
        else:
            inputs = tokenizer(list(texts), None if pairs is None else list(pairs), max_length=max_length)
        batches = _LabeledBatches(inputs, labels, batch_size, seed)
        validate = None
        if valid is not None:
            cached = None
            if features is not None:
                cached = features[1].float().to(device_)
            elif freeze_encoder:
                cached = pooled_features(classifier, tokenizer, valid_texts, 2 * batch_size, valid_pairs, max_length)

            def validate(model: LossObjective) -> dict[str, float]:
                clf = model.module
                pooled = cached if cached is not None else pooled_features(
                    clf, tokenizer, valid_texts, 2 * batch_size, valid_pairs, max_length)
                return {"valid_loss": float(task_loss(clf.head_logits(pooled), valid_labels.to(pooled.device), task))}

        optimizer = LinearWarmupAdamW(
            _param_groups(classifier, lr, head_lr, weight_decay), lr=head_lr,
            total_steps=epochs * len(batches), warmup_steps=int(warmup * epochs * len(batches)),
        )
        trainer = Trainer(epochs=epochs, device=str(device_), mixed_precision=True, patience=None, progress=progress,
                          tensorboard=False, grad_clip_norm=1.0, monitor="valid_loss", mode="min", threads=threads)
        result = trainer.fit(LossObjective(classifier), batches, optimizer, validate=validate)
    classifier.eval()
    return classifier, result
