"""SASRec (Kang & McAuley 2018): causal self-attention over a user's item sequence, next item at every position.

Three losses (Petrov & Macdonald 2022; Klenitskiy & Vasilev 2023 show the choice matters more than the
architecture): ``"bce"`` with sampled negatives (the paper), ``"sampled_softmax"`` over the target and
``S`` negatives, ``"ce"``: full softmax cross-entropy over all items (best; no negatives needed).
Expected results (full ranking over all items, leave-one-out): on Amazon Beauty the plain model
with ``loss="ce"`` should reach at least ICLRec's NDCG@10 0.0403 (``recsys-train model=sasrec_ce
dataset=amazon-beauty``); on ML-1M the literature's figure is NDCG@10 about 0.18 (``recsys-train
model=sasrec_ce dataset=ml-1m model.module.max_len=200 model.module.dropout=0.2``).
This file also holds :class:`SequentialRecommender`, the inference API shared with BERT4Rec and GRU4Rec,
and :class:`NextItemRecommender`, the next-item losses and scoring shared with GRU4Rec.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import polars as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.data.ids import ITEM_SHIFT, PADDING_INDEX
from recsys.errors import ConfigError, DataError
from recsys.models.als import keyed
from recsys.models.base import Recommender, check_candidates, check_indices
from recsys.nn.transformer import PositionalEmbedding, TransformerEncoder, init_weights

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.data.vocabulary import Vocabulary
    from recsys.embeddings.keyed_vectors import KeyedVectors


# losses: hidden states h (M, D) of the M positions with a target, targets (M,) and negatives (M, S)
# in the padded layout (item index + 1), the item table W (N + 2, D) whose rows 1..N are the items.
def bce_loss(h: Tensor, targets: Tensor, negatives: Tensor | None, weight: Tensor) -> Tensor:
    """``mean over positions of -log s(h.w_t) - sum_s log s(-h.w_s)`` (SASRec paper)."""
    positive = (h * weight[targets]).sum(-1)  # (M,)
    negative = torch.einsum("md,msd->ms", h, weight[negatives])  # (M, S)
    return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(1)).mean()


def sampled_softmax_loss(h: Tensor, targets: Tensor, negatives: Tensor | None, weight: Tensor) -> Tensor:
    """Cross-entropy of the target against its ``S`` sampled negatives (uniform, so no logQ correction)."""
    positive = (h * weight[targets]).sum(-1, keepdim=True)  # (M, 1)
    negative = torch.einsum("md,msd->ms", h, weight[negatives])  # (M, S)
    logits = torch.cat([positive, negative], dim=1)  # (M, 1 + S)
    return F.cross_entropy(logits, torch.zeros_like(targets))


def full_softmax_loss(h: Tensor, targets: Tensor, negatives: Tensor | None, weight: Tensor) -> Tensor:
    """Cross-entropy over all ``N`` items (Klenitskiy & Vasilev 2023)."""
    logits = h @ weight[ITEM_SHIFT : weight.shape[0] - 1].T  # (M, N): drop padding and mask rows
    return F.cross_entropy(logits.float(), targets - ITEM_SHIFT)


LOSSES = {"bce": bce_loss, "sampled_softmax": sampled_softmax_loss, "ce": full_softmax_loss}


class SequentialRecommender(Recommender):
    """Inference shared by sequence models: scores from each user's recent items, top-K by original ids.

    Subclasses define ``item_embedding`` (an ``nn.Embedding`` of ``num_items + 2`` rows: padding,
    items, mask), ``history_len`` (how many recent items they read) and ``score_sequences(seqs (B, T))
    -> (B, N)``. ``prepare(train)`` keeps the item vocabulary for :meth:`recommend`. A user is read
    only through ``history.padded_sequences`` (``reads_history``), so new users are scored from their items.
    """

    reads_history = True
    num_items: int
    history_len: int
    items_: Vocabulary | None = None

    def prepare(self, train: Interactions, generator: torch.Generator | None = None) -> None:
        self.items_ = train.items

    def score_sequences(self, sequences: Tensor) -> Tensor:
        raise NotImplementedError

    def _sequences(self, history: Interactions) -> Tensor:
        """``history.padded_sequences(history_len)`` computed once per history object."""
        cached = getattr(self, "_cache", None)
        if cached is None or cached[0] is not history:
            self._cache = (history, history.padded_sequences(self.history_len))
        return self._cache[1]

    def score_users(self, users: Tensor, history: Interactions) -> Tensor:
        return self.score_sequences(self._user_sequences(users, history, "score_users"))  # (B, N)

    def _user_sequences(self, users: Tensor, history: Interactions, method: str) -> Tensor:
        """The users' recent items ``(B, T)`` on the model's device, all-padding columns dropped (exact)."""
        check_indices(users, history.num_users, "users", f"{type(self).__name__}.{method}")
        sequences = self._sequences(history)[users.cpu()]  # (B, T)
        first = int((sequences != PADDING_INDEX).any(0).int().argmax())
        return sequences[:, first:].to(self.device)

    def item_embeddings(self, items: Vocabulary) -> KeyedVectors:
        """Rows ``1..N`` of the (input and output) item table keyed by original item id; padding and mask rows skipped."""
        return keyed(items, self.item_embedding.weight[ITEM_SHIFT : self.num_items + ITEM_SHIFT])  # (N, D)

    def recommend(self, history: Sequence[Any], k: int = 10, skip_unknown: bool = False,
                  filter_already_liked_items: bool = True) -> tuple[list[Any], Tensor]:
        """Top-``k`` original item ids and their scores for one history of original item ids (oldest first).

        Unknown ids raise a :class:`DataError` unless ``skip_unknown`` drops them.
        """
        if self.items_ is None:
            raise ConfigError("the model has no item vocabulary", where=f"{type(self).__name__}.recommend",
                              fix="call model.prepare(train) (done by recsys-train) before recommend")
        ids = pl.Series("id", list(history))
        if skip_unknown and len(ids):
            ids = ids.filter(ids.is_in(self.items_.ids.cast(ids.dtype, strict=False).implode()))
        if not len(ids):
            raise DataError("empty history", where=f"{type(self).__name__}.recommend",
                            fix="pass at least one known item id (popularity serves users without history)")
        index = self.items_.to_index(ids)[-self.history_len :]  # (L,), raises on unknown ids
        sequence = torch.full((1, self.history_len), PADDING_INDEX, dtype=torch.long)
        sequence[0, self.history_len - index.numel() :] = index + ITEM_SHIFT
        self.eval()
        with torch.no_grad():
            scores = self.score_sequences(sequence.to(self.device))[0].float().cpu()  # (N,)
        if filter_already_liked_items:
            scores[index] = float("-inf")
        top = scores.topk(min(k, self.num_items))
        keep = top.values > float("-inf")  # never pad the list with filtered items
        return self.items_.to_original(top.indices[keep]), top.values[keep]

    def recommend_users(self, history: Interactions, users: Tensor | None = None, k: int = 10,
                        batch_size: int = 1024, filter_already_liked_items: bool = True) -> tuple[Tensor, Tensor]:
        """Top-``k`` item indices and scores ``(U, K)`` for ``users`` (default all) of a dataset, in batches.

        Map indices to original ids with ``history.items.to_original``.
        """
        users = torch.arange(history.num_users) if users is None else users.cpu()
        seen = history.user_item_matrix()
        crow, col = seen.crow_indices(), seen.col_indices()
        self.eval()
        indices, values = [], []
        with torch.no_grad():
            for start in range(0, users.numel(), batch_size):
                batch = users[start : start + batch_size]  # (B,)
                scores = self.score_users(batch, history).float().cpu()  # (B, N)
                if filter_already_liked_items:
                    start, lens = crow[batch], crow[batch + 1] - crow[batch]
                    rows = torch.repeat_interleave(torch.arange(batch.numel()), lens)  # (nnz,)
                    offset = torch.arange(rows.numel()) - torch.repeat_interleave(lens.cumsum(0) - lens, lens)
                    scores[rows, col[start[rows] + offset]] = float("-inf")
                top = scores.topk(min(k, self.num_items), dim=1)
                indices.append(top.indices)
                values.append(top.values)
        return torch.cat(indices), torch.cat(values)


def check_sizes(where: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if value is None or value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}", where=where, fix=f"set model.module.{name} >= 1")


def check_ids(inputs: Tensor, high: int, where: str) -> None:
    """DataError for ids outside ``[0, high)`` (checked on CPU only: on CUDA it would sync every step)."""
    if not inputs.is_cuda and inputs.numel() and (int(inputs.min()) < 0 or int(inputs.max()) >= high):
        raise DataError(f"item ids out of range [0, {high - 1}] in the padded layout (item index + 1, 0 = padding)",
                        where=where, fix="build sequences with Interactions.padded_sequences or the model's batches")


def check_sequences(inputs: Tensor, high: int, where: str) -> None:
    """DataError unless ``inputs`` is a ``(B, T)`` batch with ``T >= 1`` and ids in ``[0, high)``."""
    if inputs.dim() != 2 or inputs.shape[1] == 0:
        raise DataError(f"expected a (B, T) batch of sequences with T >= 1, got {tuple(inputs.shape)}",
                        where=where, fix="pass left-padded sequences from padded_sequences(max_len)")
    check_ids(inputs, high, where)


class NextItemRecommender(SequentialRecommender):
    """Next-item training and scoring shared by SASRec and GRU4Rec: ``LOSSES`` at every position with a target.

    Subclasses set ``max_len``, ``loss_name`` and ``item_embedding`` and define ``encode(inputs (B, T)) ->
    (B, T, D)``, whose output at position t (causal: reads items <= t only) scores item t + 1 against
    the tied item table; the last position scores the next item of a history.
    """

    max_len: int
    loss_name: str
    item_embedding: nn.Embedding

    def encode(self, inputs: Tensor) -> Tensor:
        raise NotImplementedError

    def batch_arguments(self) -> dict[str, Any]:
        """Batches of the model's ``max_len``, with no sampled negative for ``ce`` and one for the others."""
        return {"max_len": self.max_len, "num_negatives": 0 if self.loss_name == "ce" else 1}

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        targets = batch["targets"]  # (B, T)
        valid = targets != PADDING_INDEX
        h = self.encode(batch["inputs"])[valid]  # (M, D)
        negatives = batch.get("negatives")
        if self.loss_name != "ce":
            if negatives is None:
                raise DataError(f"loss {self.loss_name!r} needs sampled negatives", where=f"{type(self).__name__}.loss",
                                fix="set model.batches.num_negatives >= 1")
            negatives = negatives[valid]  # (M, S)
        return LOSSES[self.loss_name](h, targets[valid], negatives, self.item_embedding.weight)

    def score_sequences(self, sequences: Tensor) -> Tensor:
        h = self.encode(sequences)[:, -1]  # (B, D): the most recent position
        return h @ self.item_embedding.weight[ITEM_SHIFT : self.num_items + ITEM_SHIFT].T  # (B, N)

    def score_items(self, users: Tensor, items: Tensor, history: Interactions) -> Tensor:
        items = check_candidates(users, items, self.num_items, f"{type(self).__name__}.score_items")  # (B, C)
        h = self.encode(self._user_sequences(users, history, "score_items"))[:, -1]  # (B, D)
        return torch.bmm(self.item_embedding(items.to(h.device) + ITEM_SHIFT), h.unsqueeze(2)).squeeze(2)  # (B, C)


def check_loss(loss: str, where: str) -> None:
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}", where=f"{where}(loss=...)", fix=f"use one of {sorted(LOSSES)}")


class SASRec(NextItemRecommender):
    """Causal Transformer over the last ``max_len`` items; the output at position t scores item t + 1.

    Input and output item embeddings are tied; positions are right-aligned (the most recent item always
    has the last position), ``positions="learned"`` (the paper) or ``"sinusoidal"`` (fixed, no parameters,
    Vaswani et al. 2017, scaled to ``init_std``: the items' initial scale). Batches come from
    :class:`recsys.data.sequence_batches.NextItemBatches` (``negatives`` for ``bce`` and
    ``sampled_softmax``, none needed for ``ce``); :func:`recsys.run_pipeline` gives them the model's
    ``max_len`` and negatives unless the caller set them. ``dropout`` 0.5 is the paper's value for sparse
    data (Beauty); it used 0.2 on the denser ML-1M.

    >>> model = SASRec(num_items=6, max_len=4, embedding_dim=8, loss="ce")
    >>> batch = {"inputs": torch.tensor([[0, 1, 2, 3]]), "targets": torch.tensor([[0, 2, 3, 4]])}
    >>> model.loss(batch).shape, model.score_sequences(torch.tensor([[0, 0, 1, 2]])).shape
    (torch.Size([]), torch.Size([1, 6]))
    """

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        embedding_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 1,
        hidden_dim: int | None = None,
        dropout: float = 0.5,
        attention_dropout: float | None = None,
        activation: str = "gelu",
        norm_first: bool = True,
        loss: str = "ce",
        init_std: float = 0.02,
        positions: str = "learned",
    ) -> None:
        super().__init__()
        check_sizes("SASRec", num_items=num_items, max_len=max_len, embedding_dim=embedding_dim)
        check_loss(loss, "SASRec")
        self.num_items, self.max_len, self.history_len = num_items, max_len, max_len
        self.loss_name, self.init_std = loss, init_std
        self.item_embedding = nn.Embedding(num_items + 2, embedding_dim, padding_idx=PADDING_INDEX)  # + padding, mask
        self.position = PositionalEmbedding(max_len, embedding_dim, positions, scale=init_std)  # sinusoidal: items' scale
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(num_layers, embedding_dim, num_heads, hidden_dim or embedding_dim, dropout,
                                          attention_dropout, activation, norm_first, causal=True)
        self.apply(partial(init_weights, std=self.init_std))

    def encode(self, inputs: Tensor) -> Tensor:
        """Hidden states ``(B, T, D)`` of left-padded item sequences ``(B, T)`` (index + 1, 0 = padding)."""
        check_sequences(inputs, self.num_items + 1, "SASRec.encode")
        x = self.item_embedding(inputs) + self.position(inputs.shape[1], right_aligned=True)  # (B, T, D)
        return self.encoder(self.dropout(x), attention_mask=inputs != PADDING_INDEX)
