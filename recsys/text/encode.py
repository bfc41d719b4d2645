"""Texts -> vectors with a :class:`BertEncoder`: batched pooled embeddings, and a cached keyed table."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.embeddings.keyed_vectors import KeyedVectors
from recsys.errors import ConfigError, DataError
from recsys.runtime import progress_bar, resolve_device
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer

__all__ = ["encode_texts", "item_text_embeddings", "token_batches"]

log = logging.getLogger(__name__)


DTYPES = (torch.float32, torch.bfloat16)


def token_batches(lengths: np.ndarray, batch_size: int, max_tokens: int) -> list[np.ndarray]:
    """Row indices of each batch: rows sorted by token count (longest first, ties in input order), cut so
    a batch has at most ``batch_size`` rows and at most ``max_tokens`` padded tokens (rows x longest);
    a single text longer than ``max_tokens`` comes alone.

    >>> [b.tolist() for b in token_batches(np.array([3, 9, 4, 9, 2]), batch_size=2, max_tokens=12)]
    [[1], [3], [2, 0], [4]]
    """
    if batch_size < 1 or max_tokens < 1:
        raise ConfigError(f"batch_size ({batch_size}) and max_tokens ({max_tokens}) must be >= 1",
                          where="encode_texts", fix="pass positive batch_size and max_tokens")
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, start = [], 0
    while start < len(order):  # one step per batch
        rows = max(1, min(batch_size, max_tokens // max(int(lengths[order[start]]), 1)))
        batches.append(order[start : start + rows])
        start += rows
    return batches


@torch.inference_mode()
def encode_texts(
    encoder: BertEncoder,
    tokenizer: TextTokenizer,
    texts: Sequence[str],
    batch_size: int = 64,
    normalize: bool = True,
    device: str | torch.device = "auto",
    progress: bool = True,
    max_tokens: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Pooled embeddings ``(N, D)`` float32 on CPU, in the order of ``texts``.

    Texts are sorted by token count (longest first) and batched by a token budget: at most
    ``batch_size`` rows and at most ``max_tokens`` padded tokens per batch (default ``32 * batch_size``),
    so a batch pads little and a few long texts do not inflate a whole batch to their length; a
    batch of equal lengths runs attention without a mask. The output does not depend on the batching
    (beyond float rounding). ``dtype=torch.bfloat16`` is an opt-in autocast (fast on GPUs and CPUs
    with bf16 units; embeddings then differ from float32 by about 1e-3); the default is float32.

    >>> tok = TextTokenizer.train(["red apple", "green apple", "red car"], vocab_size=50)
    >>> enc = BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=16)
    >>> encode_texts(enc, tok, ["red car", "apple", "green"], batch_size=2, progress=False, device="cpu").shape
    torch.Size([3, 8])
    """
    if dtype not in DTYPES:
        raise ConfigError(f"unsupported dtype {dtype}", where="encode_texts(dtype=...)", fix=f"use one of {DTYPES}")
    device = resolve_device(device, where="encode_texts(device=...)")
    encoder = encoder.to(device).eval()
    batches = token_batches(tokenizer.lengths(texts), batch_size, 32 * batch_size if max_tokens is None else max_tokens)
    out = torch.empty(len(texts), encoder.dim)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    for rows in progress_bar(batches, desc="encode", unit="batch", disable=not progress):
        batch = tokenizer([texts[i] for i in rows])
        with autocast:
            vectors = encoder.embed(batch["input_ids"].to(device), batch["attention_mask"].to(device), normalize=False)  # (B, D)
        vectors = vectors.float()
        out[torch.from_numpy(rows)] = (F.normalize(vectors, dim=-1) if normalize else vectors).cpu()
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
) -> KeyedVectors:
    """Encode ``texts[i]`` for item ``ids[i]`` into :class:`KeyedVectors` keyed by ``ids``.

    With ``cache_dir``, the table is written to ``item_text_<hash>.parquet`` keyed by the encoder's
    weights, the tokenizer and the texts, and read back on the next call with the same inputs.

    >>> tok = TextTokenizer.train(["red apple", "green apple", "red car"], vocab_size=50)
    >>> enc = BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=16)
    >>> item_text_embeddings(["red car", "apple"], [7, 9], enc, tok, progress=False, device="cpu").table.shape
    torch.Size([2, 8])
    """
    if len(texts) != len(ids):
        raise DataError(f"{len(texts)} texts for {len(ids)} ids", where="item_text_embeddings", fix="pass one text per id")
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"item_text_{_fingerprint(encoder, tokenizer, texts, normalize)}.parquet"
        if path.is_file():
            log.info("item text embeddings from cache %s", path)
            return KeyedVectors.from_parquet(path)
    vectors = encode_texts(encoder, tokenizer, texts, batch_size, normalize, device, progress)
    table = KeyedVectors(np.asarray(ids, dtype=np.int64).tolist(), vectors)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(path)
        log.info("item text embeddings cached at %s", path)
    return table
