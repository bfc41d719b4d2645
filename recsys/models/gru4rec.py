"""GRU4Rec (Hidasi et al. 2016): a GRU over a user's item sequence, next item at every position.

The modern full-sequence variant (RecBole; Klenitskiy & Vasilev 2023 train it with full cross-entropy):
item embedding -> dropout -> GRU -> linear projection to the embedding size -> scores against the
tied item table. It shares SASRec's batches (:class:`~recsys.data.sequence_batches.NextItemBatches`),
losses (``"ce"``, ``"sampled_softmax"``, ``"bce"``) and inference (:class:`NextItemRecommender`).

Padding: sequences arrive left padded (pads first), but a GRU with biases changes its state on a zero
input, so pads before the first item would leak into every output. Each row is therefore rotated to be
right padded (real items first) before the GRU and rotated back after it: a causal GRU's output at a real
position then reads real items only, and the trailing pads touch nothing that is used. One ``gather``
each way, no packing (rows without any item, scored for users with no history, stay valid).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from recsys.data.ids import PADDING_INDEX
from recsys.models.sasrec import NextItemRecommender, check_loss, check_sequences, check_sizes
from recsys.nn.transformer import init_weights


def realign(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate every row of ``x`` (B, T, ...) left by ``shift`` (B,) places: ``out[b, t] = x[b, (t + shift[b]) % T]``.

    With ``shift = T - length`` left padding becomes right padding; ``shift = length`` undoes it.

    >>> realign(torch.tensor([[0, 0, 5, 6], [0, 7, 8, 9]]), torch.tensor([2, 1])).tolist()
    [[5, 6, 0, 0], [7, 8, 9, 0]]
    """
    T = x.shape[1]
    index = (torch.arange(T, device=x.device) + shift[:, None]) % T  # (B, T)
    return x.gather(1, index.view(*index.shape, *(1,) * (x.dim() - 2)).expand_as(x))


class GRU4Rec(NextItemRecommender):
    """GRU over the last ``max_len`` items; the output at position t scores item t + 1 (tied item table).

    ``hidden_size`` and ``num_layers`` are the GRU's (``dropout`` between stacked layers too, as
    ``torch.nn.GRU``'s, and on the item embeddings). Left padding never changes a user's scores (see
    the module docstring). ``loss`` as :class:`~recsys.models.sasrec.SASRec`'s; :func:`recsys.run_pipeline`
    hands the batches the model's ``max_len`` and its negatives (none for ``ce``, one otherwise).

    >>> model = GRU4Rec(num_items=6, max_len=4, embedding_dim=8, hidden_size=16)
    >>> batch = {"inputs": torch.tensor([[0, 1, 2, 3]]), "targets": torch.tensor([[0, 2, 3, 4]])}
    >>> model.loss(batch).shape, model.score_sequences(torch.tensor([[0, 0, 1, 2]])).shape
    (torch.Size([]), torch.Size([1, 6]))
    """

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.3,
        loss: str = "ce",
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        check_sizes("GRU4Rec", num_items=num_items, max_len=max_len, embedding_dim=embedding_dim,
                    hidden_size=hidden_size, num_layers=num_layers)
        check_loss(loss, "GRU4Rec")
        self.num_items, self.max_len, self.history_len = num_items, max_len, max_len
        self.loss_name, self.init_std = loss, init_std
        self.item_embedding = nn.Embedding(num_items + 2, embedding_dim, padding_idx=PADDING_INDEX)  # + padding, mask
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(embedding_dim, hidden_size, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.projection = nn.Linear(hidden_size, embedding_dim)
        self.apply(partial(init_weights, std=self.init_std))  # Embedding and Linear; the GRU keeps torch's init

    def encode(self, inputs: Tensor) -> Tensor:
        """Hidden states ``(B, T, D)`` of left-padded item sequences ``(B, T)`` (index + 1, 0 = padding).

        Any ``T`` is accepted (a GRU has no position table); outputs at padding positions are meaningless
        and never read (the losses use positions with a target, scoring the last one).
        """
        check_sequences(inputs, self.num_items + 1, "GRU4Rec.encode")
        T = inputs.shape[1]
        lengths = (inputs != PADDING_INDEX).sum(1)  # (B,)
        x = realign(self.dropout(self.item_embedding(inputs)), T - lengths)  # (B, T, D): right padded
        h, _ = self.gru(x)  # (B, T, H): real positions read real items only
        return self.projection(realign(h, lengths))  # (B, T, D): left padded again
