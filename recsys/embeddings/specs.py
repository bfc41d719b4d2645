"""Data field specs -> embedding fields: the one place a :class:`~recsys.data.fields.FieldSpec` becomes a table config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from recsys.data.fields import FieldSpec
from recsys.embeddings.config import EmbeddingField
from recsys.errors import ConfigError

__all__ = ["embedding_fields"]


def embedding_fields(specs: Sequence[FieldSpec | EmbeddingField], embedding_dim: int) -> list[EmbeddingField]:
    """One :class:`EmbeddingField` of width ``embedding_dim`` per spec (sizes, pooling and OOV row kept);
    an ``EmbeddingField`` passes through with its width set to ``embedding_dim``.

    >>> [(f.name, f.num_rows, f.embedding_dim, f.pooling) for f in embedding_fields(
    ...     [FieldSpec("user", 10), FieldSpec("genres", 5, pooling="mean", oov_row=False)], 8)]
    [('user', 11, 8, 'none'), ('genres', 5, 8, 'mean')]
    """
    fields = []
    for spec in specs:  # build time: one loop over fields
        if isinstance(spec, EmbeddingField):
            fields.append(replace(spec, embedding_dim=embedding_dim))
        elif isinstance(spec, FieldSpec):
            fields.append(EmbeddingField(spec.name, num_embeddings=spec.num_embeddings, embedding_dim=embedding_dim,
                                         pooling=spec.pooling, oov_row=spec.oov_row))
        else:
            raise ConfigError(f"expected FieldSpec or EmbeddingField, got {type(spec).__name__}", where="embedding_fields",
                              fix="pass FeaturePipeline.field_specs() or EmbeddingField declarations")
    return fields
