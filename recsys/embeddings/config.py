"""Declarations of categorical fields: one frozen dataclass per field, separate from any module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from recsys.errors import ConfigError

Pooling = Literal["none", "sum", "mean"]


@dataclass(frozen=True)
class EmbeddingField:
    """One categorical field and how its ids become vectors.

    ``pooling="none"`` declares a single-valued field (one id per example, looked up to ``(B, D)``);
    ``"sum"``/``"mean"`` declare a multi-valued field (a bag of ids per example, pooled to ``(B, D)``,
    optionally weighted per value when ``weighted=True``). Id handling, applied in this order:

    - ``hashing``: ids are arbitrary int64 keys, hashed (deterministically) into ``num_embeddings`` rows;
    - ``oov_row``: one extra row; ids ``>= num_embeddings`` map to it instead of raising;
    - ``padding_idx``: this id gives a zero vector, receives no gradient and is left out of bag means.

    >>> EmbeddingField("genres", num_embeddings=20, embedding_dim=8, pooling="mean").num_rows
    20
    >>> EmbeddingField("city", num_embeddings=1000, embedding_dim=8, oov_row=True).num_rows
    1001
    """

    name: str
    num_embeddings: int
    embedding_dim: int
    pooling: Pooling = "none"
    weighted: bool = False
    padding_idx: int | None = None
    oov_row: bool = False
    hashing: bool = False
    hash_seed: int = 0

    def __post_init__(self) -> None:
        where = f"EmbeddingField(name={self.name!r})"
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"field name must be a non-empty string, got {self.name!r}", where=where, fix="name every field")
        if self.num_embeddings <= 0:
            raise ConfigError(
                f"num_embeddings must be positive, got {self.num_embeddings}", where=where, fix="set num_embeddings >= 1"
            )
        if self.embedding_dim <= 0:
            raise ConfigError(
                f"embedding_dim must be positive, got {self.embedding_dim}", where=where, fix="set embedding_dim >= 1"
            )
        if self.pooling not in ("none", "sum", "mean"):
            raise ConfigError(f"unknown pooling {self.pooling!r}", where=where, fix="use 'none', 'sum' or 'mean'")
        if self.weighted and self.pooling == "none":
            raise ConfigError(
                "per-value weights need a multi-valued field", where=where, fix="set pooling='sum' or 'mean', or weighted=False"
            )
        if self.padding_idx is not None and not 0 <= self.padding_idx < self.num_embeddings:
            raise ConfigError(
                f"padding_idx {self.padding_idx} is outside [0, {self.num_embeddings})",
                where=where,
                fix="pick a padding id inside the vocabulary, or None",
            )
        if self.hashing and self.oov_row:
            raise ConfigError("a hashed field has no out-of-vocabulary ids", where=where, fix="set hashing or oov_row, not both")

    @property
    def num_rows(self) -> int:
        """Rows this field occupies in a table: ``num_embeddings`` plus the OOV row if any."""
        return self.num_embeddings + int(self.oov_row)

    @property
    def pooled(self) -> bool:
        """True for multi-valued (bag) fields."""
        return self.pooling != "none"


def check_fields(fields: list[EmbeddingField] | tuple[EmbeddingField, ...], where: str) -> tuple[EmbeddingField, ...]:
    """Validate a list of fields (non-empty, unique names) and return it as a tuple."""
    fields = tuple(fields)
    if not fields:
        raise ConfigError("no fields declared", where=where, fix="pass at least one EmbeddingField")
    for field in fields:
        if not isinstance(field, EmbeddingField):
            raise ConfigError(f"expected EmbeddingField, got {type(field).__name__}", where=where, fix="declare fields as EmbeddingField")
    names = [f.name for f in fields]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"duplicate field names {duplicates}", where=where, fix="give every field a unique name")
    return fields
