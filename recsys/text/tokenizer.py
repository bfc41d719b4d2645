"""WordPiece tokenization through the ``tokenizers`` library: train on item texts, or load a
pretrained ``tokenizer.json`` / ``vocab.txt``; batches come back as padded ``torch.long`` tensors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from recsys.errors import CheckpointError, ConfigError, DataError

__all__ = ["SPECIAL_TOKENS", "TextTokenizer"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _tokenizers():
    try:
        import tokenizers
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "the 'tokenizers' package is not installed", where="recsys.text.tokenizer", fix="pip install 'recsys[text]'"
        ) from error
    return tokenizers


class TextTokenizer:
    """A BERT WordPiece tokenizer: ``tokenizer(texts) -> {"input_ids": (B, T), "attention_mask": (B, T)}``.

    Adds [CLS] ... [SEP] (``tokenizer(texts, pairs)``: [CLS] a [SEP] b [SEP] and ``token_type_ids``), truncates
    to ``max_length`` tokens and pads to the longest text of the batch.

    >>> tok = TextTokenizer.train(["toy story", "toy soldiers", "story of toys"], vocab_size=60)
    >>> batch = tok(["toy story", "toy"])
    >>> batch["input_ids"].shape, batch["attention_mask"].sum(1).tolist()
    (torch.Size([2, 4]), [4, 3])
    >>> tok(["toy story"], pairs=["toy"])["token_type_ids"].tolist()  # [CLS] toy story [SEP] | toy [SEP]
    [[0, 0, 0, 0, 1, 1]]
    """

    def __init__(self, tokenizer, max_length: int = 128) -> None:
        """Wrap a ``tokenizers.Tokenizer`` whose post-processor adds [CLS]/[SEP]."""
        self.tokenizer = tokenizer
        self.max_length = max_length
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise CheckpointError(
                f"tokenizer vocabulary lacks special token(s) {missing}", where="TextTokenizer",
                fix="use a BERT-style WordPiece vocabulary with [PAD] [UNK] [CLS] [SEP] [MASK]",
            )
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def special_ids(self) -> Tensor:
        return torch.tensor([self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id])

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2, lowercase: bool = True, max_length: int = 128
    ) -> TextTokenizer:
        """Learn a WordPiece vocabulary (BERT normalizer and pre-tokenizer) from ``texts``."""
        tokenizers = _tokenizers()
        wordpiece = tokenizers.BertWordPieceTokenizer(lowercase=lowercase)
        wordpiece.train_from_iterator(
            list(texts), vocab_size=vocab_size, min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        )
        tokenizer = wordpiece._tokenizer
        cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        tokenizer.post_processor = tokenizers.processors.BertProcessing(("[SEP]", sep_id), ("[CLS]", cls_id))
        return cls(tokenizer, max_length)

    @classmethod
    def from_pretrained(cls, path: str | Path, max_length: int | None = None, lowercase: bool = True) -> TextTokenizer:
        """Load ``tokenizer.json`` (preferred) or ``vocab.txt`` from a file or a model directory."""
        tokenizers = _tokenizers()
        path = Path(path)
        candidates = [path] if path.is_file() else [path / "tokenizer.json", path / "vocab.txt"]
        for file in candidates:
            if file.is_file() and file.suffix == ".json":
                tokenizer = tokenizers.Tokenizer.from_file(str(file))
                trunc = tokenizer.truncation
                default = trunc["max_length"] if trunc else 512
                return cls(tokenizer, max_length or default)
            if file.is_file():
                tokenizer = tokenizers.BertWordPieceTokenizer(str(file), lowercase=lowercase)._tokenizer
                return cls(tokenizer, max_length or 512)
        raise CheckpointError(
            "no tokenizer.json or vocab.txt found", where=str(path),
            fix="point at a Hugging Face model directory with tokenizer files, or train one with TextTokenizer.train",
        )

    def save(self, path: str | Path) -> Path:
        """Write ``tokenizer.json`` (a directory gets ``path/tokenizer.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        self.tokenizer.save(str(path))
        return path

    def _encode(self, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int | None = None) -> list:
        if max_length is not None and max_length != self.max_length:
            self.tokenizer.enable_truncation(max_length)  # longest-first for pairs, as Hugging Face
            self.max_length = max_length
        if pairs is None:
            return self.tokenizer.encode_batch(list(texts))
        if isinstance(pairs, (int, str)):
            raise ConfigError(f"pairs must be a sequence of second segments, got {pairs!r}", where="TextTokenizer(texts, pairs=...)",
                              fix="pass max_length by keyword: tokenizer(texts, max_length=...)")
        if len(pairs) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(pairs)} pairs", where="TextTokenizer(texts, pairs=...)",
                            fix="pass one second segment per text")
        return self.tokenizer.encode_batch(list(zip(texts, pairs)))

    def __call__(self, texts: Sequence[str], pairs: Sequence[str] | None = None, max_length: int | None = None) -> dict[str, Tensor]:
        """Padded ``input_ids`` and ``attention_mask`` (B, T); with ``pairs`` (one second segment per text)
        each row is ``[CLS] a [SEP] b [SEP]`` and ``token_type_ids`` (0 for [CLS] a [SEP] and padding, 1 for
        b [SEP]) is added, as Hugging Face BERT; pairs longer than ``max_length`` lose tokens longest-first."""
        encodings = self._encode(texts, pairs, max_length)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        width = int(lengths.max()) if len(lengths) else 0
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64) if pairs is not None else None
        for row, encoding in enumerate(encodings):  # tokenization is per text by nature (Rust does the work)
            ids[row, : lengths[row]] = encoding.ids
            if types is not None:
                types[row, : lengths[row]] = encoding.type_ids
        mask = np.arange(width)[None, :] < lengths[:, None]
        out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if types is not None:
            out["token_type_ids"] = torch.from_numpy(types)
        return out

    def lengths(self, texts: Sequence[str], pairs: Sequence[str] | None = None, max_length: int | None = None) -> np.ndarray:
        """Token counts (with [CLS]/[SEP], after truncation) of each text (or text pair)."""
        encodings = self._encode(texts, pairs, max_length)
        return np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
