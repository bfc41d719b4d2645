"""The engine that fits a content recommender: encode every item's text into its item vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from recsys.data.item_text import TEXT_FIELDS, item_texts
from recsys.errors import ConfigError
from recsys.text.checkpoint import load_pretrained
from recsys.text.encode import item_text_embeddings

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.models.base import Recommender

__all__ = ["ItemTextEngine"]


class ItemTextEngine:
    """Encodes the ``fields`` of ``train.item_features`` with a pretrained text encoder and hands the
    ``(num_items, D)`` vectors to ``model.set_item_vectors`` (the contract it needs: ``num_items``
    and ``set_item_vectors``). A :class:`~recsys.training.engine.FitEngine`.

    ``checkpoint`` is a local Hugging Face BERT-family directory (None: the bundled all-MiniLM-L6-v2);
    with ``cache_dir`` the encoded table is cached as parquet, keyed by weights and texts.

    >>> import polars as pl, tempfile
    >>> from recsys.data.frame import from_frame
    >>> from recsys.models.content import ContentRecommender
    >>> from recsys.text.checkpoint import save_pretrained
    >>> from recsys.text.encoder import BertEncoder
    >>> from recsys.text.tokenizer import TextTokenizer
    >>> titles = ["red apple", "green apple", "red car"]
    >>> tok = TextTokenizer.train(titles * 3, vocab_size=50)
    >>> folder = save_pretrained(BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=16), tok, tempfile.mkdtemp())
    >>> data = from_frame(pl.DataFrame({"user": [0, 0, 1], "item": [0, 1, 2]}), rating_col=None, time_col=None)
    >>> data.item_features = pl.DataFrame({"item": [0, 1, 2], "title": titles})
    >>> model = ContentRecommender(num_items=3)
    >>> ItemTextEngine(str(folder)).fit(model, data, device=torch.device("cpu"), generator=torch.Generator(), progress=False)
    >>> model.item_vectors.shape
    torch.Size([3, 8])
    """

    def __init__(
        self, checkpoint: str | None = None, batch_size: int = 64, cache_dir: str | None = None, fields: Sequence[str] = TEXT_FIELDS
    ) -> None:
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.fields = fields

    def fit(self, model: Recommender, train: Interactions, *, device: torch.device,
            generator: torch.Generator, progress: bool = True) -> None:
        """Set ``model``'s item vectors from the encoded item texts (deterministic: ``generator`` is unused)."""
        if not callable(getattr(model, "set_item_vectors", None)) or getattr(model, "num_items", None) is None:
            raise ConfigError(
                f"{type(model).__name__} takes no item vectors (needs num_items and set_item_vectors)", where="ItemTextEngine.fit",
                fix="use ItemTextEngine with model=content, or remove model.engine",
            )
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}", where="ItemTextEngine")
        encoder, tokenizer = load_pretrained(self.checkpoint, device=device)
        texts = item_texts(train.item_features, model.num_items, tuple(self.fields))
        table = item_text_embeddings(texts, range(model.num_items), encoder, tokenizer, self.batch_size,
                                     cache_dir=self.cache_dir, device=device, progress=progress)
        model.set_item_vectors(table.table)
