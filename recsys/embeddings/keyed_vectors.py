"""``KeyedVectors``: the one keyed-vectors artifact: trained vectors looked up by original key (gensim's ``wv``).

Models' ``item_embeddings`` / ``user_embeddings``, ``Word2Vec.wv`` and cached text embeddings all return one;
it saves as ``.npz``, parquet (columns ``key``, ``vector``) or the word2vec format. The trainable table that
initializes a model from it is :class:`recsys.embeddings.KeyedEmbedding` (``to_keyed_embedding``).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.errors import DataError
from recsys.runtime import atomic_write

_SHOWN = 5


class KeyedVectors:
    """Vectors ``(V, D)`` keyed by tokens (strings or ints), answering ``most_similar`` and ``similarity``.

    Row ``i`` belongs to ``index_to_key[i]``; ``vectors`` is a float32 numpy view of the torch table.

    >>> wv = KeyedVectors(["a", "b", "c"], torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]))
    >>> wv.most_similar("a", topn=1)
    [('b', 0.9938...)]
    >>> round(wv.similarity("a", "c"), 4), wv["c"].tolist(), "z" in wv
    (0.0, [0.0, 1.0], False)
    >>> ids = KeyedVectors([10, 20, 30], torch.eye(3)[[0, 0, 2]])
    >>> neighbours, scores = ids.most_similar_ids(torch.tensor([10, 30]), topn=1)
    >>> neighbours.tolist()
    [[20], [10]]
    """

    def __init__(self, keys: Sequence[Hashable], vectors: Tensor | np.ndarray) -> None:
        table = torch.as_tensor(vectors).detach().float().cpu().contiguous()
        keys = list(keys)
        if table.dim() != 2 or table.shape[0] != len(keys):
            raise DataError(f"vectors {tuple(table.shape)} do not have one row per key ({len(keys)} keys)", where="KeyedVectors", fix="pass a (len(keys), D) matrix")
        self.index_to_key = keys
        self.key_to_index = {key: i for i, key in enumerate(keys)}
        if len(self.key_to_index) != len(keys):
            raise DataError("keys are not unique", where="KeyedVectors", fix="pass one row per distinct key")
        self.table = table  # (V, D)

    @property
    def vectors(self) -> np.ndarray:
        return self.table.numpy()

    @property
    def vector_size(self) -> int:
        return self.table.shape[1]

    def __len__(self) -> int:
        return len(self.index_to_key)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.key_to_index

    def __repr__(self) -> str:
        return f"KeyedVectors(keys={len(self)}, vector_size={self.vector_size})"

    def get_index(self, key: Hashable) -> int:
        """Row of ``key``; a :class:`DataError` naming the key when it is unknown."""
        index = self.key_to_index.get(key)
        if index is None:
            shown = self.index_to_key[:_SHOWN]
            raise DataError(
                f"key {key!r} is not in the vocabulary ({len(self)} keys, e.g. {shown})",
                where="KeyedVectors",
                fix="look up keys seen at least min_count times in the training corpus (check the key's type: 3 is not '3')",
            )
        return index

    def rows(self, keys: Iterable[Hashable]) -> Tensor:
        """Rows of ``keys`` (LongTensor); unknown keys raise."""
        return torch.tensor([self.get_index(key) for key in keys], dtype=torch.long)

    def __getitem__(self, key: Hashable | list) -> np.ndarray:
        if isinstance(key, list):
            return self.table[self.rows(key)].numpy()
        return self.table[self.get_index(key)].numpy()

    def unit_vectors(self) -> Tensor:
        """L2-normalized rows ``(V, D)`` (zero rows stay zero)."""
        return F.normalize(self.table, dim=1)

    def similarity(self, a: Hashable, b: Hashable) -> float:
        """Cosine similarity of two keys."""
        unit = self.unit_vectors()
        return float(unit[self.get_index(a)] @ unit[self.get_index(b)])

    def most_similar(
        self, positive: Hashable | list | None = None, negative: list | None = None, topn: int = 10
    ) -> list[tuple[Hashable, float]]:
        """The ``topn`` keys nearest by cosine to the mean of ``positive`` minus ``negative`` unit vectors.

        The query keys themselves are left out, as in gensim.
        """
        positive = [] if positive is None else positive if isinstance(positive, list) else [positive]
        negative = [] if negative is None else negative
        if not positive and not negative:
            raise DataError("most_similar needs at least one key", where="KeyedVectors.most_similar", fix="pass positive=key")
        unit = self.unit_vectors()
        plus, minus = self.rows(positive), self.rows(negative)
        query = unit[plus].sum(0) - unit[minus].sum(0)  # (D,)
        scores = unit @ F.normalize(query, dim=0)  # (V,)
        scores[torch.cat([plus, minus])] = -torch.inf
        k = min(topn, len(self) - len(set(positive) | set(negative)))
        values, rows = scores.topk(max(k, 0))
        return [(self.index_to_key[r], float(v)) for r, v in zip(rows.tolist(), values.tolist())]

    # persistence -----------------------------------------------------------------------
    def save_word2vec_format(self, path: str | Path, binary: bool = False) -> Path:
        """Write the word2vec format (text or binary) that gensim's ``KeyedVectors.load_word2vec_format`` reads."""
        keys = [str(key) for key in self.index_to_key]
        bad = [key for key in keys if not key or any(c.isspace() for c in key)][:_SHOWN]
        if bad:
            raise DataError(f"keys {bad!r} are empty or contain whitespace", where="save_word2vec_format", fix="the word2vec format separates keys by whitespace: rename those keys")
        header = f"{len(self)} {self.vector_size}\n"

        def write(file: IO[bytes]) -> None:
            file.write(header.encode())
            if binary:
                rows = self.table.numpy().astype("<f4")
                for key, row in zip(keys, rows):  # file I/O, one line per key
                    file.write(key.encode() + b" " + row.tobytes() + b"\n")
                return
            columns = {"key": keys} | {f"v{j}": self.table[:, j].numpy() for j in range(self.vector_size)}
            pl.DataFrame(columns).write_csv(file, separator=" ", include_header=False, quote_style="never", float_precision=7)

        return atomic_write(path, write)

    @classmethod
    def load_word2vec_format(cls, path: str | Path, binary: bool = False, key_type: type = str) -> KeyedVectors:
        """Read a word2vec text or binary file (ours, gensim's, word2vec.c's); ``key_type=int`` for item ids.

        A :class:`DataError` with the line (text) or vector (binary) number for a bad header, a row of
        the wrong width, a non-number or a non-finite value (NaN, inf), and for the wrong ``binary=``.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"file not found: {path}", where="KeyedVectors.load_word2vec_format", fix="check the path")
        with open(path, "rb") as file:
            head = file.readline().split()
            if len(head) != 2 or not all(x.isdigit() for x in head):
                raise DataError(f"bad header {b' '.join(head)[:80]!r}", where=f"{path}, line 1",
                                fix="the first line of a word2vec file is '<count> <dimension>'")
            count, dim = int(head[0]), int(head[1])
            body = file.read()
        keys, vectors, places = (_parse_binary if binary else _parse_text)(body, count, dim, path)
        if len(keys) != count:
            raise DataError(f"header says {count} vectors, found {len(keys)}", where=str(path), fix="check the file is complete")
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if len(bad):
            first = int(bad[0])
            place = f"{places[first]} (key {keys[first]!r})"
            raise DataError(f"{len(bad)} vector(s) hold NaN or inf values, e.g. {vectors[first][~np.isfinite(vectors[first])][:3].tolist()}",
                            where=f"{path}, {place}", fix="re-export the vectors from a model whose training did not diverge, or drop those rows")
        try:
            keys = [key_type(key) for key in keys]
        except ValueError:
            raise DataError(f"keys are not all {key_type.__name__}", where=str(path), fix="load with key_type=str") from None
        return cls(keys, torch.from_numpy(np.array(vectors, dtype=np.float32)))

    def save(self, path: str | Path) -> Path:
        """Save to ``.npz`` (no pickle): keys, vectors."""
        return atomic_write(path, lambda file: _save_npz(file, self.index_to_key, vectors=self.table.numpy()))

    @classmethod
    def load(cls, path: str | Path) -> KeyedVectors:
        keys, arrays, _ = _load_npz(path)
        return cls(keys, torch.from_numpy(arrays["vectors"].copy()))

    def to_parquet(self, path: str | Path) -> Path:
        """Write columns ``key`` (int64 or string) and ``vector`` (float32 array) atomically."""
        frame = pl.DataFrame({"key": self.index_to_key, "vector": self.table.numpy()})
        return atomic_write(path, frame.write_parquet)

    @classmethod
    def from_parquet(cls, path: str | Path) -> KeyedVectors:
        """Read a file written by :meth:`to_parquet` (or an older ``id`` / ``vector`` table)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"file not found: {path}", where="KeyedVectors.from_parquet", fix="pass a file written by to_parquet()")
        frame = pl.read_parquet(path)
        if frame.columns not in (["key", "vector"], ["id", "vector"]):
            raise DataError(f"columns {frame.columns} are not ['key', 'vector']", where=str(path), fix="read a file written by to_parquet")
        return cls(frame[frame.columns[0]].to_list(), torch.from_numpy(frame["vector"].to_numpy().astype(np.float32)))

    def integer_keys(self, where: str) -> Tensor:
        """The keys as a LongTensor ``(V,)``; a :class:`DataError` when they are not all integers."""
        if not all(isinstance(key, (int, np.integer)) and not isinstance(key, bool) for key in self.index_to_key):
            raise DataError("this needs integer keys", where=where, fix="train on integer item ids")
        return torch.tensor(self.index_to_key, dtype=torch.long)

    @torch.no_grad()
    def most_similar_ids(self, keys: Tensor | Sequence[int], topn: int = 10, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
        """Batched cosine neighbours for integer keys, each query itself left out: ``(keys (Q, K), scores (Q, K))``."""
        ids = self.integer_keys("KeyedVectors.most_similar_ids")
        k = min(topn, len(self) - 1)
        if k < 1:
            raise DataError("most_similar_ids needs at least two vectors", where="KeyedVectors.most_similar_ids", fix="use a larger table")
        queries = self.rows(torch.as_tensor(keys).flatten().tolist())
        unit = self.unit_vectors()  # (V, D)
        top_ids, top_scores = [], []
        for start in range(0, len(queries), batch_size):  # batches of queries, not rows
            rows = queries[start : start + batch_size]
            scores = unit[rows] @ unit.T  # (Q, V)
            scores[torch.arange(len(rows)), rows] = -torch.inf
            values, indices = scores.topk(k, dim=1)
            top_ids.append(ids[indices])
            top_scores.append(values)
        return torch.cat(top_ids), torch.cat(top_scores)

    def to_keyed_embedding(self, freeze: bool = True) -> Any:
        """The table as a trainable :class:`recsys.embeddings.KeyedEmbedding` (integer keys only), e.g. to initialize a model."""
        from recsys.embeddings.table import KeyedEmbedding

        return KeyedEmbedding.from_keyed_vectors(self, freeze=freeze)


def _looks_like_text(body: bytes) -> bool:
    """True when ``body`` is plain ASCII with no bytes a float32 table would nearly always contain."""
    return body.isascii() and not any(c < 9 or 13 < c < 32 for c in body[:1 << 16])


def _parse_text(body: bytes, count: int, dim: int, path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """Keys, ``(count, dim)`` rows and each row's place ("line 5") of a word2vec text body (the lines after the header)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise DataError("the file is not UTF-8 text (a binary word2vec file?)", where=str(path),
                        fix="load it with binary=True") from None
    lines = pl.Series("line", text.splitlines(), dtype=pl.String).str.strip_chars().to_frame()
    lines = lines.with_row_index("number", offset=2).filter(pl.col("line") != "")  # line numbers of the file
    parts = lines["line"].str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
    widths = parts.list.len() - 1
    wrong = (widths != dim).arg_true()
    if len(wrong):
        at = int(wrong[0])
        raise DataError(f"line {int(lines['number'][at])} has {int(widths[at])} values, the header says {dim} "
                        f"({len(wrong)} such line(s))", where=f"{path}, line {int(lines['number'][at])}",
                        fix="every line after the header is '<key> <dimension numbers>'; fix the header or the rows")
    numbers = parts.list.slice(1).cast(pl.List(pl.Float32), strict=False)
    bad = numbers.list.eval(pl.element().is_null()).list.any().arg_true()
    if len(bad):
        at = int(bad[0])
        raise DataError(f"line {int(lines['number'][at])} holds a value that is not a number ({len(bad)} such line(s))",
                        where=f"{path}, line {int(lines['number'][at])}", fix="every value after the key must be a number")
    vectors = numbers.list.to_array(dim).to_numpy() if len(numbers) else np.empty((0, dim), dtype=np.float32)
    return parts.list.first().to_list(), vectors.reshape(-1, dim), [f"line {n}" for n in lines["number"].to_list()]


def _parse_binary(body: bytes, count: int, dim: int, path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """Keys, ``(count, dim)`` rows and their places ("vector 3") of a word2vec binary body: ``key`` SPACE ``4 * dim`` bytes [NEWLINE] per vector."""
    if body and _looks_like_text(body):
        try:
            _parse_text(body, count, dim, path)
        except DataError:
            pass  # not valid text either: read it as binary and report what is wrong there
        else:
            raise DataError("the file is word2vec text, not binary", where=str(path), fix="load it with binary=False")
    keys, rows, position, width = [], np.empty((count, dim), dtype=np.float32), 0, 4 * dim
    for i in range(count):  # file I/O: keys have variable length
        while position < len(body) and body[position : position + 1] == b"\n":
            position += 1
        space = body.find(b" ", position)
        if space < 0 or space + 1 + width > len(body):
            raise DataError(f"the file ends inside vector {i + 1} of {count} (header '{count} {dim}')", where=f"{path}, vector {i + 1}",
                            fix="check the file is complete, that the header matches the rows, and that it is binary (else binary=False)")
        try:
            keys.append(body[position:space].decode())
        except UnicodeDecodeError:
            raise DataError(f"key of vector {i + 1} is not UTF-8: the header's dimension ({dim}) may not match the rows",
                            where=f"{path}, vector {i + 1}", fix="check the header '<count> <dimension>'") from None
        rows[i] = np.frombuffer(body, dtype="<f4", count=dim, offset=space + 1)
        position = space + 1 + width
    if body[position:].strip():
        raise DataError(f"{len(body) - position} bytes left after the {count} vectors the header announces",
                        where=str(path), fix="check the header '<count> <dimension>' matches the rows")
    return keys, rows, [f"vector {i + 1}" for i in range(count)]


def _save_npz(file: IO[bytes], keys: Sequence[Hashable], meta: dict | None = None, **arrays: np.ndarray) -> None:
    """Write keys, ``meta`` (as JSON) and ``arrays`` as one ``.npz`` into an open binary file."""
    integer = all(isinstance(key, (int, np.integer)) for key in keys)
    key_array = np.asarray(keys, dtype=np.int64) if integer else np.asarray([str(k) for k in keys], dtype=np.str_)
    np.savez(file, keys=key_array, meta=np.asarray(json.dumps(meta or {})), **arrays)


def _load_npz(path: str | Path) -> tuple[list, dict[str, np.ndarray], dict]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}", where="load", fix="pass a file written by save()")
    try:
        with np.load(path, allow_pickle=False) as data:  # no pickle: object arrays are refused, not run
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"not a readable .npz of plain arrays ({type(error).__name__}: {error})", where=str(path),
                        fix="pass a file written by save(); object (pickled) arrays are never loaded") from None
    if "keys" not in arrays or "meta" not in arrays:
        raise DataError(f"the file lacks 'keys' or 'meta' (it has {sorted(arrays)})", where=str(path), fix="pass a file written by save()")
    keys = arrays.pop("keys").tolist()
    meta = json.loads(str(arrays.pop("meta")))
    return keys, arrays, meta
