"""WordPiece tokenization through the ``tokenizers`` library: train on item texts, or load a
pretrained ``tokenizer.json`` / ``vocab.txt``; batches come back as padded ``torch.long`` tensors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from recsys.errors import CheckpointError, ConfigError

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

    Adds [CLS] ... [SEP], truncates to ``max_length`` tokens and pads to the longest text of the batch.

    >>> tok = TextTokenizer.train(["toy story", "toy soldiers", "story of toys"], vocab_size=60)
    >>> batch = tok(["toy story", "toy"])
    >>> batch["input_ids"].shape, batch["attention_mask"].sum(1).tolist()
    (torch.Size([2, 4]), [4, 3])
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

    def __call__(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, Tensor]:
        if max_length is not None and max_length != self.max_length:
            self.tokenizer.enable_truncation(max_length)
            self.max_length = max_length
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        width = int(lengths.max()) if len(lengths) else 0
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        for row, encoding in enumerate(encodings):  # tokenization is per text by nature (Rust does the work)
            ids[row, : lengths[row]] = encoding.ids
        mask = np.arange(width)[None, :] < lengths[:, None]
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}

    def lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token counts (with [CLS]/[SEP], after truncation) of each text."""
        return np.fromiter((len(e.ids) for e in self.tokenizer.encode_batch(list(texts))), dtype=np.int64, count=len(texts))
