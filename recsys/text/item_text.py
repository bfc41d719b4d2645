"""Item texts (title + genres + tags) and their encoder embeddings as a cached item table."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import Tensor
from tqdm.auto import tqdm

from recsys.embeddings.table import KeyedEmbedding
from recsys.errors import DataError
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer

__all__ = ["encode_texts", "item_text_embeddings", "item_texts", "resolve_device"]

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def item_texts(features: pl.DataFrame | None, num_items: int, fields: Sequence[str] = ("title", "genres", "tags")) -> list[str]:
    """One text per item index ``0..num_items-1``: the ``fields`` of ``features`` joined by ``" | "``.

    List columns (genres, tags) are joined by ``", "``; missing fields and items without a row give
    empty parts. ``features`` has an ``item`` column of item indices (``Interactions.item_features``).

    >>> frame = pl.DataFrame({"item": [1, 0], "title": ["Heat (1995)", "Toy Story (1995)"], "genres": [["Crime"], ["Animation", "Comedy"]]})
    >>> item_texts(frame, 3, fields=("title", "genres"))
    ['Toy Story (1995) | Animation, Comedy', 'Heat (1995) | Crime', '']
    """
    if features is None or "item" not in features.columns:
        raise DataError("no item features to build texts from", where="item_texts(features=...)",
                        fix="use a dataset with item titles (MovieLens) or pass a frame with an 'item' column")
    present = [f for f in fields if f in features.columns]
    if not present:
        raise DataError(f"none of the fields {list(fields)} is a column", where=f"item_texts; columns: {features.columns}",
                        fix="choose fields among the item feature columns")
    parts = []
    for field in present:  # loop over fields at build time, not over items
        column = pl.col(field)
        if isinstance(features.schema[field], pl.List):
            column = column.list.eval(pl.element().cast(pl.String)).list.join(", ")
        parts.append(column.cast(pl.String).fill_null(""))
    text = pl.concat_list(parts).list.eval(pl.element().filter(pl.element() != "")).list.join(" | ")  # skip empty parts
    frame = features.select(pl.col("item").cast(pl.Int64), text.alias("text"))
    frame = frame.filter(pl.col("item").is_between(0, num_items - 1))
    out = np.full(num_items, "", dtype=object)
    out[frame["item"].to_numpy()] = frame["text"].to_numpy()
    return out.tolist()


@torch.inference_mode()
def encode_texts(
    encoder: BertEncoder,
    tokenizer: TextTokenizer,
    texts: Sequence[str],
    batch_size: int = 64,
    normalize: bool = True,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> Tensor:
    """Pooled embeddings ``(N, D)`` float32 on CPU, in the order of ``texts``.

    Texts are batched longest first (like sentence-transformers), so each batch pads little.

    >>> tok = TextTokenizer.train(["red apple", "green apple", "red car"], vocab_size=50)
    >>> enc = BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=16)
    >>> encode_texts(enc, tok, ["red car", "apple", "green"], batch_size=2, progress=False).shape
    torch.Size([3, 8])
    """
    device = resolve_device(device)
    encoder = encoder.to(device).eval()
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = torch.empty(len(texts), encoder.dim)
    for start in tqdm(range(0, len(texts), batch_size), desc="encode", unit="batch", disable=not progress):
        rows = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in rows])
        vectors = encoder.embed(batch["input_ids"].to(device), batch["attention_mask"].to(device), normalize=normalize)  # (B, D)
        out[torch.from_numpy(rows)] = vectors.float().cpu()
    return out


def _fingerprint(encoder: BertEncoder, tokenizer: TextTokenizer, texts: Sequence[str], normalize: bool) -> str:
    digest = hashlib.sha256(repr((encoder.config(), tokenizer.vocab_size, tokenizer.max_length, normalize)).encode())
    for tensor in encoder.state_dict().values():  # ~0.1 s for MiniLM's 90 MB
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    for text in texts:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()[:16]


def item_text_embeddings(
    texts: Sequence[str],
    ids: Sequence[int] | np.ndarray,
    encoder: BertEncoder,
    tokenizer: TextTokenizer,
    batch_size: int = 64,
    normalize: bool = True,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> KeyedEmbedding:
    """Encode ``texts[i]`` for item ``ids[i]`` into a frozen :class:`KeyedEmbedding`.

    With ``cache_dir``, the table is written to ``item_text_<hash>.parquet`` keyed by the encoder's
    weights, the tokenizer and the texts, and read back on the next call with the same inputs.
    """
    if len(texts) != len(ids):
        raise DataError(f"{len(texts)} texts for {len(ids)} ids", where="item_text_embeddings", fix="pass one text per id")
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"item_text_{_fingerprint(encoder, tokenizer, texts, normalize)}.parquet"
        if path.is_file():
            log.info("item text embeddings from cache %s", path)
            return KeyedEmbedding.read_parquet(path)
    vectors = encode_texts(encoder, tokenizer, texts, batch_size, normalize, device, progress)
    table = KeyedEmbedding.from_pretrained(vectors, ids=np.asarray(ids, dtype=np.int64))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(path)
        log.info("item text embeddings cached at %s", path)
    return table
