"""``EmbeddingCollection``: every categorical field of a model, fused into one table per embedding dimension."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recsys.embeddings.config import EmbeddingField, check_fields
from recsys.embeddings.fused import FusedTable
from recsys.embeddings.jagged import KeyedJagged
from recsys.embeddings.table import KeyedEmbedding
from recsys.errors import ConfigError, DataError

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class EmbeddingCollection(nn.Module):
    """Fields grouped by ``embedding_dim``, each group one fused table: one lookup call per group and batch.

    ``forward(ids, bags)`` takes single-valued ids ``(B, F_single)`` (columns in the order the single-valued
    fields were declared) and/or a :class:`KeyedJagged` of the multi-valued fields (keys in declaration
    order) and returns ``(B, F, D)`` in declaration order. With several dimensions use
    :meth:`forward_grouped` (``{D: (B, F_D, D)}``) or :class:`MixedDimEmbeddingCollection`.
    Tables built with ``sparse=True`` produce sparse gradients and are marked for :class:`CombinedOptimizer`.

    >>> fields = [EmbeddingField("user", 10, 4), EmbeddingField("item", 20, 4),
    ...           EmbeddingField("genres", 5, 4, pooling="mean")]
    >>> ec = EmbeddingCollection(fields, generator=torch.Generator().manual_seed(0))
    >>> ec(torch.tensor([[1, 2], [3, 4]]), KeyedJagged.from_lists({"genres": [[0, 1], [2]]})).shape
    torch.Size([2, 3, 4])
    """

    def __init__(
        self,
        fields: Sequence[EmbeddingField],
        sparse: bool = True,
        dtype: torch.dtype = torch.float32,
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.fields = check_fields(fields, "EmbeddingCollection")
        if dtype not in _DTYPES:
            raise ConfigError(f"unsupported table dtype {dtype}", where="EmbeddingCollection", fix="use float32, bfloat16 or float16")
        self.sparse, self.dtype = sparse, dtype
        self.single_names = tuple(f.name for f in self.fields if not f.pooled)
        self.pooled_names = tuple(f.name for f in self.fields if f.pooled)
        self.dims = tuple(dict.fromkeys(f.embedding_dim for f in self.fields))
        self.tables = nn.ModuleDict()
        for dim in self.dims:  # build time: one loop over dimensions
            group = [f for f in self.fields if f.embedding_dim == dim]
            self.tables[str(dim)] = FusedTable(group, sparse=sparse, dtype=dtype, init_std=init_std, generator=generator)
        self.names_by_dim = {d: tuple(f.name for f in self.fields if f.embedding_dim == d) for d in self.dims}
        single_pos = {n: i for i, n in enumerate(self.single_names)}
        pooled_pos = {n: i for i, n in enumerate(self.pooled_names)}
        self._split = len(self.dims) > 1
        group_of = [self.dims.index(self.field(n).embedding_dim) for n in self.pooled_names]
        self.register_buffer("_bag_group", torch.tensor(group_of, dtype=torch.long), persistent=False)
        weighted = [self.field(n).weighted for n in self.pooled_names]
        self.register_buffer("_bag_weighted", torch.tensor(weighted, dtype=torch.bool), persistent=False)
        self._mixed_weights = any(weighted) and not all(weighted)
        local = {}
        for dim in self.dims:
            table = self.tables[str(dim)]
            self.register_buffer(f"_cols_{dim}", torch.tensor([single_pos[f.name] for f in table.single], dtype=torch.long), persistent=False)
            self.register_buffer(f"_keys_{dim}", torch.tensor([pooled_pos[f.name] for f in table.pooled], dtype=torch.long), persistent=False)
            local.update({f.name: i for i, f in enumerate(table.pooled)})
            order = [f.name for f in table.single + table.pooled]
            perm = [order.index(n) for n in self.names_by_dim[dim]]
            self.register_buffer(
                f"_perm_{dim}", None if perm == sorted(perm) else torch.tensor(perm, dtype=torch.long), persistent=False
            )
        self.register_buffer("_bag_local", torch.tensor([local[n] for n in self.pooled_names], dtype=torch.long), persistent=False)

    def field(self, name: str) -> EmbeddingField:
        """The declaration of field ``name``."""
        for field in self.fields:
            if field.name == name:
                return field
        raise DataError(f"unknown field {name!r}", where="EmbeddingCollection", fix=f"use one of {[f.name for f in self.fields]}")

    def field_weight(self, name: str) -> Tensor:
        """Rows of field ``name`` (``num_rows``, D): a view of its fused table."""
        return self.tables[str(self.field(name).embedding_dim)].field_weight(name)

    def export(self, name: str, ids: Tensor | None = None, freeze: bool = True) -> KeyedEmbedding:
        """Field ``name`` as a :class:`KeyedEmbedding`: row ``i`` keyed by ``ids[i]`` (default ``0..num_embeddings-1``).

        Pass e.g. ``torch.tensor(vocabulary.ids.to_list())`` to key rows by original ids (the OOV row is left out).
        """
        weight = self.field_weight(name).detach()
        ids = torch.arange(self.field(name).num_embeddings) if ids is None else torch.as_tensor(ids)
        if len(ids) > len(weight):
            raise DataError(f"{len(ids)} ids for {len(weight)} rows", where=f"EmbeddingCollection.export({name!r})", fix="pass at most one id per row")
        return KeyedEmbedding(ids, weight[: len(ids)].cpu(), freeze=freeze)

    def forward(self, ids: Tensor | None = None, bags: KeyedJagged | None = None) -> Tensor:
        if len(self.dims) > 1:
            raise ConfigError(
                f"fields have several embedding dims {list(self.dims)}; forward returns one (B, F, D) tensor",
                where="EmbeddingCollection.forward",
                fix="call forward_grouped(ids, bags), or use MixedDimEmbeddingCollection to project to one dim",
            )
        return self.forward_grouped(ids, bags)[self.dims[0]]

    def forward_grouped(self, ids: Tensor | None = None, bags: KeyedJagged | None = None) -> dict[int, Tensor]:
        """``{D: (B, F_D, D)}`` with each group's fields in declaration order (``names_by_dim[D]``)."""
        batch = self._check(ids, bags)
        if bags is not None:
            lengths = bags.lengths  # (F_pooled * B,)
            key_of = None  # one multi-valued field in one table: every value is its
            if len(self.pooled_names) > 1 or self._split:
                key_of_bag = torch.arange(len(self.pooled_names), device=lengths.device).repeat_interleave(batch)
                key_of = torch.repeat_interleave(key_of_bag, lengths)  # (nnz,)
            if bags.weights is not None and self._mixed_weights:  # unweighted fields count each value once
                bags = KeyedJagged(bags.keys, bags.values, bags.offsets, bags.weights.masked_fill(~self._bag_weighted[key_of], 1.0))
        out = {}
        for dim in self.dims:
            table: FusedTable = self.tables[str(dim)]
            single_ids = None
            if table.single:
                single_ids = ids[:, getattr(self, f"_cols_{dim}")] if self._split else ids
            if not table.pooled:
                emb = table.lookup(single_ids, where="EmbeddingCollection: ids")
            else:
                values, weights, group_lengths, group_key = bags.values, bags.weights, lengths, key_of
                if self._split:
                    keep = self._bag_group.index_select(0, key_of) == self.dims.index(dim)
                    values, group_key = values[keep], key_of[keep]
                    weights = None if weights is None else weights[keep]
                    group_lengths = lengths.view(-1, batch).index_select(0, getattr(self, f"_keys_{dim}")).flatten()
                field_of = None if group_key is None else self._bag_local.index_select(0, group_key)
                emb = table.pool(values, group_lengths, field_of, weights, single_ids, where="EmbeddingCollection")  # (B, F_D, D)
            perm = getattr(self, f"_perm_{dim}")
            out[dim] = emb if perm is None else emb.index_select(1, perm)
        return out

    def _check(self, ids: Tensor | None, bags: KeyedJagged | None) -> int:
        where = "EmbeddingCollection.forward"
        if self.single_names:
            if ids is None:
                raise DataError(f"missing ids for single-valued fields {list(self.single_names)}", where=where, fix="pass ids=(B, F) long tensor")
            if ids.dtype != torch.long:
                raise DataError(f"ids must be torch.long, got {ids.dtype}", where=where, fix="convert ids with .long() (floats lose ids above 2**24)")
            if ids.dim() != 2 or ids.shape[1] != len(self.single_names):
                raise DataError(
                    f"ids must be (B, {len(self.single_names)}) for fields {list(self.single_names)}, got {tuple(ids.shape)}",
                    where=where,
                    fix="stack one column per single-valued field, in declaration order",
                )
        if self.pooled_names:
            if bags is None:
                raise DataError(f"missing bags for multi-valued fields {list(self.pooled_names)}", where=where, fix="pass bags=KeyedJagged(...)")
            if tuple(bags.keys) != self.pooled_names:
                raise DataError(
                    f"bag keys {list(bags.keys)} differ from the multi-valued fields {list(self.pooled_names)}",
                    where=where,
                    fix="give KeyedJagged exactly these keys, in this order",
                )
            bags.validate(where)
            weighted = [f.name for f in self.fields if f.weighted]
            if bags.weights is not None and not weighted:
                raise DataError("bags carry weights but no field is declared weighted", where=where, fix="declare weighted=True or drop the weights")
            if weighted and bags.weights is None:
                raise DataError(f"fields {weighted} are weighted but bags carry no weights", where=where, fix="pass KeyedJagged(weights=...)")
        batch = ids.shape[0] if ids is not None and self.single_names else bags.batch_size
        if ids is not None and bags is not None and self.single_names and self.pooled_names and bags.batch_size != batch:
            raise DataError(f"ids have {batch} rows but bags {bags.batch_size}", where=where, fix="pass the same examples to both")
        return batch
