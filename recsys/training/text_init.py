"""Item text embeddings as the initial item table of ID-based models (BPR-MF, BiasedMF, SASRec,
BERT4Rec): encode each item's text, PCA to the table's width, scale to the init scale, copy into
the model's ``item_embedding`` table (the ``item_text_init=`` key of ``recsys-train``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from recsys.data.item_text import item_texts
from recsys.errors import ConfigError, DataError
from recsys.text.checkpoint import load_pretrained
from recsys.text.encode import item_text_embeddings

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions

__all__ = ["init_item_table_from_text", "item_table", "load_item_embeddings", "text_item_init"]

BUNDLED = "minilm"  # checkpoint name of the bundled all-MiniLM-L6-v2


def text_item_init(vectors: Tensor, dim: int, std: float = 0.1, seed: int = 0) -> Tensor:
    """Project text vectors ``(N, D_text)`` to ``(N, dim)`` with PCA (``torch.pca_lowrank``), scaled to ``std``.

    >>> round(text_item_init(torch.randn(50, 16), dim=4, std=0.1).std().item(), 4)
    0.1
    """
    if vectors.dim() != 2 or dim < 1:
        raise DataError(f"need (N, D) vectors and dim >= 1, got {tuple(vectors.shape)} and {dim}", where="text_item_init")
    x = vectors.float() - vectors.float().mean(0)  # (N, D_text)
    if dim <= min(x.shape):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # pca_lowrank draws a random sketch from the global stream
            _, _, v = torch.pca_lowrank(x, q=dim, center=False)  # (D_text, dim)
        out = x @ v  # (N, dim)
    else:  # fewer text dimensions than model dimensions: pad with zeros
        out = torch.cat([x, x.new_zeros(x.shape[0], dim - x.shape[1])], dim=1)
    return out * (std / out.std().clamp_min(1e-12))


def item_table(model: nn.Module, where: str = "item_text_init") -> nn.Embedding:
    """The model's ``item_embedding`` sub-module, which must be an ``nn.Embedding`` table.

    Only registered sub-modules count: a method or property of that name (``Item2Vec``'s keyed
    vectors) is not a table, and raises :class:`ConfigError` like a model without one.

    >>> from recsys.models.bpr import BPRMF
    >>> item_table(BPRMF(num_users=2, num_items=3, embedding_dim=4)).weight.shape
    torch.Size([3, 4])
    """
    table = dict(model.named_children()).get("item_embedding")
    if not isinstance(table, nn.Embedding):
        raise ConfigError(
            f"{type(model).__name__} has no item_embedding table (nn.Embedding) to initialize", where=where,
            fix="use it with model=bpr, bpr_sgd, biased_mf, sasrec, sasrec_ce or bert4rec, or set item_text_init=null",
        )
    return table


@torch.no_grad()
def load_item_embeddings(model: nn.Module, matrix: Tensor) -> nn.Module:
    """Copy ``matrix`` ``(num_items, D)`` (row = item index) into ``model.item_embedding.weight``.

    Works for tables of ``num_items`` rows (BPR-MF) and of ``num_items + 2`` rows in the padded
    layout (SASRec/BERT4Rec: row 0 padding, rows 1..N items, row N+1 mask), leaving padding and mask rows.

    >>> from recsys.models.bpr import BPRMF
    >>> model = load_item_embeddings(BPRMF(num_users=2, num_items=3, embedding_dim=2), torch.ones(3, 2))
    >>> model.item_embedding.weight.sum().item()
    6.0
    """
    weight = item_table(model, where="load_item_embeddings").weight
    n, d = matrix.shape
    if d != weight.shape[1] or weight.shape[0] not in (n, n + 2):
        raise DataError(
            f"matrix {tuple(matrix.shape)} does not fit item_embedding {tuple(weight.shape)}", where="load_item_embeddings",
            fix="project the text vectors to the model's embedding_dim with text_item_init and pass one row per item",
        )
    start = 0 if weight.shape[0] == n else 1
    weight[start : start + n] = matrix.to(weight)
    return model


def init_item_table_from_text(
    model: nn.Module, data: Interactions, checkpoint: str, *, device: str | torch.device = "auto", progress: bool = True
) -> None:
    """Initialize ``model.item_embedding`` from the encoded texts of ``data.item_features``, PCA-projected to its width.

    ``checkpoint`` is a local Hugging Face BERT-family directory, or ``"minilm"`` for the bundled
    all-MiniLM-L6-v2. A model without an ``nn.Embedding`` item table raises :class:`ConfigError`
    before any encoder is loaded.
    """
    dim = item_table(model).embedding_dim
    encoder, tokenizer = load_pretrained(None if checkpoint == BUNDLED else checkpoint)
    texts = item_texts(data.item_features, data.num_items)
    vectors = item_text_embeddings(texts, range(data.num_items), encoder, tokenizer, device=device, progress=progress).table
    load_item_embeddings(model, text_item_init(vectors, dim))
