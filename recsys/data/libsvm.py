"""Reader for libsvm / libFM CTR files (``label idx:val idx:val ...``) and libffm (``label field:idx:val ...``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch
from torch import Tensor

from recsys.data.fields import EncodedFeatures, FieldSpec
from recsys.errors import DataError

__all__ = ["LibSVMData", "read_libsvm"]


@dataclass
class LibSVMData:
    """Rows in CSR form: row ``r`` holds ``indices[offsets[r]:offsets[r+1]]`` with ``values`` (and ``fields`` for libffm).

    ``labels`` are 0/1 floats (``label > 0`` is a click, so libsvm's ``-1/+1`` and ``0/1`` both work).
    """

    labels: Tensor
    indices: Tensor
    values: Tensor
    offsets: Tensor
    fields: Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> Tensor:
        return self.offsets.diff()

    def field_ids(self) -> Tensor:
        """``(n, F)`` feature indices when every row has the same ``F`` one-hot features (libFM frappe, MovieLens-tag
        style: one index per field, value 1); column ``j`` is field ``j``."""
        lengths = self.lengths
        if len(self) == 0 or bool((lengths != lengths[0]).any()):
            raise DataError(
                f"rows have {int(lengths.min()) if len(self) else 0} to {int(lengths.max()) if len(self) else 0} features; "
                "field ids need the same number in every row",
                where="LibSVMData.field_ids",
                fix="use data with one feature per field in every row, or read indices/values/offsets directly",
            )
        if bool((self.values != 1).any()):
            raise DataError("field ids need one-hot features (every value 1)", where="LibSVMData.field_ids",
                            fix="bucketize numeric values first, or read indices/values/offsets directly")
        return self.indices.view(len(self), int(lengths[0]))

    def encode(self, reference: LibSVMData | None = None) -> tuple[EncodedFeatures, list[FieldSpec]]:
        """Field ids shifted per column to ``0..size-1`` with the column ranges of ``reference`` (the training
        file; default ``self``); indices outside the training range map to the OOV row. Returns the encoded
        rows (for :class:`~recsys.data.ctr_batches.FeatureBatches`) and one :class:`FieldSpec` per column
        (with an OOV row; a CTR model's ``build`` turns them into tables of its width)."""
        ids = self.field_ids()  # (n, F)
        train = (reference or self).field_ids()
        if train.shape[1] != ids.shape[1]:
            raise DataError(f"{ids.shape[1]} fields per row, the reference has {train.shape[1]}", where="LibSVMData.encode",
                            fix="encode files of the same dataset")
        low, high = train.min(0).values, train.max(0).values  # (F,)
        sizes = high - low + 1
        shifted = ids - low
        shifted = torch.where((shifted < 0) | (shifted >= sizes), sizes, shifted)  # unseen -> OOV row
        n = len(self)
        encoded = EncodedFeatures(shifted, torch.zeros(0, dtype=torch.long), torch.zeros(0, n, dtype=torch.long), torch.zeros(n, 0))
        fields = [FieldSpec(f"field_{j}", int(size), oov_row=True) for j, size in enumerate(sizes.tolist())]
        return encoded, fields


def read_libsvm(path: str | Path) -> LibSVMData:
    """Parse a libsvm/libFM (``idx:val``) or libffm (``field:idx:val``) file; blank lines and ``#`` comments skipped.

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "train.libfm")
    ...     _ = open(p, "w").write("1 3:1 10:1\\n-1 4:1 11:0.5\\n")
    ...     data = read_libsvm(p)
    >>> data.labels.tolist(), data.indices.tolist(), data.values.tolist(), data.offsets.tolist()
    ([1.0, 0.0], [3, 10, 4, 11], [1.0, 1.0, 1.0, 0.5], [0, 2, 4])
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}", where="read_libsvm", fix="pass the path of a libsvm/libFM file")
    lines = pl.Series("line", path.read_text().splitlines(), dtype=pl.String).str.strip_chars()
    lines = lines.filter((lines != "") & ~lines.str.starts_with("#"))
    if len(lines) == 0:
        raise DataError("the file has no data lines", where=str(path), fix="each line is 'label idx:val idx:val ...'")
    tokens = lines.str.replace_all(r"\s+", " ").str.split(" ")
    label_text = tokens.list.first()
    labels = label_text.cast(pl.Float32, strict=False)
    if labels.null_count():
        bad = label_text.filter(labels.is_null()).head(3).to_list()
        raise DataError(f"{labels.null_count()} line(s) do not start with a numeric label, e.g. {bad}", where=str(path),
                        fix="each line is 'label idx:val idx:val ...'")
    features = tokens.list.slice(1)
    lengths = features.list.len().cast(pl.Int64)
    parts = features.explode().drop_nulls().str.split(":")
    arity = parts.list.len().unique().to_list()
    if len(arity) > 1 or (arity and arity[0] not in (2, 3)):
        raise DataError(f"features have {sorted(arity)} ':'-separated parts; expected all 'idx:val' or all 'field:idx:val'",
                        where=str(path), fix="fix the malformed tokens")
    columns = [parts.list.get(i).cast(pl.Float64 if i == arity[0] - 1 else pl.Int64, strict=False) for i in range(arity[0] if arity else 0)]
    if any(c.null_count() for c in columns):
        raise DataError("non-numeric feature index or value", where=str(path), fix="tokens must look like 12:1 or 3:12:0.5")

    def tensor(series: pl.Series, dtype: torch.dtype) -> Tensor:
        return torch.from_numpy(series.to_numpy(writable=True)).to(dtype)

    offsets = torch.zeros(len(lines) + 1, dtype=torch.long)
    torch.cumsum(tensor(lengths, torch.long), 0, out=offsets[1:])
    empty = torch.zeros(0, dtype=torch.long)
    return LibSVMData(
        labels=(tensor(labels, torch.float32) > 0).float(),
        indices=tensor(columns[-2], torch.long) if columns else empty,
        values=tensor(columns[-1], torch.float32) if columns else torch.zeros(0),
        offsets=offsets,
        fields=tensor(columns[0], torch.long) if len(columns) == 3 else None,
    )
