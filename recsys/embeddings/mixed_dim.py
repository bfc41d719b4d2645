"""Mixed-dimension embeddings (Ginart et al. 2021): small dims for rare fields, projected to one common dim."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn

from recsys.embeddings.collection import EmbeddingCollection
from recsys.embeddings.config import EmbeddingField
from recsys.embeddings.jagged import KeyedJagged
from recsys.errors import ConfigError


def power_law_dims(num_embeddings: Sequence[int], embedding_dim: int, alpha: float = 0.3, min_dim: int = 2) -> list[int]:
    """Per-field dims ``d_f ~ embedding_dim * (n_f / max n)**alpha``, at least ``min_dim`` (rounded to even).

    Ginart et al. scale dims with popularity; vocabulary size is the build-time proxy used here.

    >>> power_law_dims([10, 1_000, 100_000], embedding_dim=64, alpha=0.25)
    [6, 20, 64]
    """
    if not num_embeddings or embedding_dim <= 0 or not 0 <= alpha <= 1:
        raise ConfigError("need fields, embedding_dim > 0 and 0 <= alpha <= 1", where="power_law_dims", fix="check the arguments")
    largest = max(num_embeddings)
    dims = [embedding_dim * (n / largest) ** alpha for n in num_embeddings]
    return [int(min(embedding_dim, max(min_dim, 2 * round(d / 2)))) for d in dims]


class MixedDimEmbeddingCollection(nn.Module):
    """An :class:`EmbeddingCollection` of fields with their own dims, each dim group projected to ``embedding_dim``.

    The projections are dense ``Linear(d, embedding_dim, bias=False)`` layers (one per distinct ``d`` that
    differs from ``embedding_dim``); the tables stay sparse. Output: ``(B, F, embedding_dim)`` in declaration order.

    >>> fields = [EmbeddingField("user", 1000, 16), EmbeddingField("country", 20, 4), EmbeddingField("item", 500, 16)]
    >>> mixed = MixedDimEmbeddingCollection(fields, embedding_dim=16)
    >>> mixed(torch.tensor([[1, 2, 3], [4, 5, 6]])).shape, sorted(mixed.projections)
    (torch.Size([2, 3, 16]), ['4'])
    """

    def __init__(
        self,
        fields: Sequence[EmbeddingField],
        embedding_dim: int,
        sparse: bool = True,
        dtype: torch.dtype = torch.float32,
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if embedding_dim <= 0:
            raise ConfigError(f"embedding_dim must be positive, got {embedding_dim}", where="MixedDimEmbeddingCollection", fix="set embedding_dim >= 1")
        self.embedding_dim = embedding_dim
        self.collection = EmbeddingCollection(fields, sparse=sparse, dtype=dtype, init_std=init_std, generator=generator)
        self.projections = nn.ModuleDict(
            {str(d): nn.Linear(d, embedding_dim, bias=False, dtype=dtype) for d in self.collection.dims if d != embedding_dim}
        )
        order = [name for d in self.collection.dims for name in self.collection.names_by_dim[d]]
        perm = [order.index(f.name) for f in self.collection.fields]
        self.register_buffer("_perm", None if perm == sorted(perm) else torch.tensor(perm, dtype=torch.long), persistent=False)

    @classmethod
    def from_sizes(
        cls,
        fields: Sequence[EmbeddingField],
        embedding_dim: int,
        alpha: float = 0.3,
        sparse: bool = True,
        generator: torch.Generator | None = None,
    ) -> MixedDimEmbeddingCollection:
        """Re-dimension ``fields`` with :func:`power_law_dims`, then build."""
        dims = power_law_dims([f.num_embeddings for f in fields], embedding_dim, alpha)
        return cls([replace(f, embedding_dim=d) for f, d in zip(fields, dims)], embedding_dim, sparse=sparse, generator=generator)

    def forward(self, ids: Tensor | None = None, bags: KeyedJagged | None = None) -> Tensor:
        groups = self.collection.forward_grouped(ids, bags)
        parts = [self.projections[str(d)](emb) if str(d) in self.projections else emb for d, emb in groups.items()]
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (B, F, D)
        return out if self._perm is None else out.index_select(1, self._perm)
