"""One fused table for all fields of one dimension: per-field row offsets, one lookup call per batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.embeddings.config import EmbeddingField
from recsys.embeddings.hashing import hash_ids
from recsys.embeddings.sparse_optim import mark_sparse
from recsys.errors import DataError

_INT64_MIN, _INT64_MAX = torch.iinfo(torch.long).min, torch.iinfo(torch.long).max
# columns of the per-field id plan, gathered once per batch
_LOW, _HIGH, _SIZE, _CAP, _OFFSET, _PAD, _HASH, _SEED, _MEAN = range(9)


def _plan(fields: list[EmbeddingField], offsets: list[int]) -> Tensor:
    """``(F, 9)`` int64 per-field constants: validation bounds, sizes, OOV cap, row offset, padding, hashing, mean."""
    rows = []
    for field, offset in zip(fields, offsets):
        free = field.hashing
        rows.append([
            _INT64_MIN if free else 0,
            _INT64_MAX if free or field.oov_row else field.num_embeddings - 1,
            field.num_embeddings,
            field.num_rows - 1,
            offset,
            -1 if field.padding_idx is None else field.padding_idx,
            int(field.hashing),
            field.hash_seed,
            int(field.pooling == "mean"),
        ])
    return torch.tensor(rows, dtype=torch.long).reshape(len(fields), 9)


class FusedTable(nn.Module):
    """All fields of one ``embedding_dim`` in one ``(R, D)`` weight; single and pooled fields share it.

    Row 0 is a shared zero padding row when any field declares ``padding_idx``; field ``f`` then owns
    rows ``offset[f] : offset[f] + num_rows[f]``. Ids are validated, hashed, OOV-capped and shifted by
    their field's offset in a few vectorized ops, then looked up with one ``embedding`` (single-valued)
    and one ``embedding_bag`` (multi-valued) call.

    >>> table = FusedTable([EmbeddingField("a", 5, 4), EmbeddingField("b", 3, 4)], generator=torch.Generator().manual_seed(0))
    >>> table.lookup(torch.tensor([[4, 2], [0, 0]])).shape, table.weight.shape
    (torch.Size([2, 2, 4]), torch.Size([8, 4]))
    """

    def __init__(
        self,
        fields: list[EmbeddingField],
        sparse: bool = True,
        dtype: torch.dtype = torch.float32,
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.embedding_dim = fields[0].embedding_dim
        self.sparse = sparse
        self.has_padding = any(f.padding_idx is not None for f in fields)
        self.single = [f for f in fields if not f.pooled]
        self.pooled = [f for f in fields if f.pooled]
        start, offsets = int(self.has_padding), {}
        for field in self.single + self.pooled:
            offsets[field.name] = start
            start += field.num_rows
        self.row_offsets = offsets
        weight = torch.empty(start, self.embedding_dim).normal_(0.0, init_std, generator=generator)
        for field in fields:  # build time: zero the padding rows (shared row 0 and each field's own)
            if field.padding_idx is not None:
                weight[offsets[field.name] + field.padding_idx] = 0.0
        if self.has_padding:
            weight[0] = 0.0
        self.weight = nn.Parameter(weight.to(dtype))
        if sparse:
            mark_sparse(self.weight)
        self.register_buffer("single_plan", _plan(self.single, [offsets[f.name] for f in self.single]), persistent=False)
        self.register_buffer("pooled_plan", _plan(self.pooled, [offsets[f.name] for f in self.pooled]), persistent=False)
        self._flags = {
            kind: {
                "hash": any(f.hashing for f in group),
                "oov": any(f.oov_row for f in group),
                "pad": any(f.padding_idx is not None for f in group),
                "mean": any(f.pooling == "mean" for f in group),
                # every field hashes or has an OOV row: the only ids out of range are negative ones of unhashed fields
                "below_only": all(f.hashing or f.oov_row for f in group),
            }
            for kind, group in (("single", self.single), ("pooled", self.pooled))
        }
        # every pooled field averages: the per-value weights need no per-field mean flag
        self._all_mean = bool(self.pooled) and all(f.pooling == "mean" for f in self.pooled)

    def _rows(self, ids: Tensor, plan: Tensor, kind: str, where: str, field_of: Tensor | None = None) -> Tensor:
        """Table rows of ``ids``; ``plan`` is ``(F, 9)`` broadcast against ``ids`` (``(B, F)`` or gathered per value)."""
        fields = self.single if kind == "single" else self.pooled
        flags = self._flags[kind]
        # every field has an OOV row and none hashes (vocabulary-encoded ids): one reduction finds any bad id
        checked = flags["below_only"] and not flags["hash"] and (ids.numel() == 0 or int(ids.min()) >= 0)
        bad = None if checked else (ids < plan[..., _LOW]) | (ids > plan[..., _HIGH])
        if bad is not None and bool(bad.any()):
            position = bad.nonzero()[0]
            if field_of is not None:
                column = int(field_of[position[0]])
            else:  # (B, F) single ids: the column; values of the one pooled field: 0
                column = int(position[-1]) if ids.dim() == 2 else 0
            field, value = fields[column], int(ids[tuple(position)])
            raise DataError(
                f"id {value} is outside [0, {field.num_embeddings}) for field {field.name!r}",
                where=where,
                fix="map ids to 0..num_embeddings-1 (a vocabulary), raise num_embeddings, or declare oov_row/hashing",
            )
        rows = ids
        if flags["hash"]:
            rows = torch.where(plan[..., _HASH].bool(), hash_ids(rows, plan[..., _SIZE], plan[..., _SEED]), rows)
        if flags["oov"]:
            rows = torch.minimum(rows, plan[..., _CAP])
        rows = rows + plan[..., _OFFSET]
        if flags["pad"]:
            rows = rows.masked_fill(ids == plan[..., _PAD], 0)
        return rows

    def lookup(self, ids: Tensor, where: str = "FusedTable.lookup") -> Tensor:
        """Single-valued ids ``(B, F)`` in ``self.single`` order -> ``(B, F, D)``."""
        rows = self._rows(ids, self.single_plan, "single", where)
        return F.embedding(rows, self.weight, padding_idx=0 if self.has_padding else None, sparse=self.sparse)

    def pool(
        self,
        values: Tensor,
        lengths: Tensor,
        field_of: Tensor | None,
        weights: Tensor | None,
        ids: Tensor | None = None,
        where: str = "FusedTable.pool",
    ) -> Tensor:
        """Bags of the pooled fields (key-major, ``lengths`` is ``(F * B,)``) -> ``(B, F, D)`` with one ``embedding_bag``.

        With ``ids`` (``(B, F_single)``), the single-valued fields ride along as bags of one, in front: still one
        call, and one sparse gradient (CPU cannot add two bfloat16 sparse gradients).
        """
        if field_of is None and len(self.pooled) > 1:
            raise DataError(f"{len(self.pooled)} pooled fields need field_of, the field of every value", where=where)
        plan = self.pooled_plan if field_of is None else self.pooled_plan.index_select(0, field_of)  # (1 or nnz, 9)
        rows = self._rows(values, plan, "pooled", where, field_of)
        if self._flags["pooled"]["mean"]:  # mean = sum with per-value weights 1 / count ("sum" mode is ~2.5x faster)
            num_bags = len(lengths)
            counts = lengths.float()
            if self.has_padding:  # padding values do not count
                bag_of = torch.repeat_interleave(torch.arange(num_bags, device=values.device), lengths)  # (nnz,)
                counts = torch.zeros(num_bags, device=values.device).index_add_(0, bag_of, (rows != 0).float())
            scale = counts.clamp_min(1.0).reciprocal()  # (F_pooled * B,) key-major
            if not self._all_mean:
                is_mean = self.pooled_plan[:, _MEAN].bool().repeat_interleave(num_bags // len(self.pooled))
                scale = torch.where(is_mean, scale, torch.ones_like(scale))
            per_value = scale.repeat_interleave(lengths, output_size=len(rows))  # (nnz,)
            weights = per_value if weights is None else weights.float() * per_value
        num_fields = len(self.pooled)
        offsets = torch.zeros(len(lengths) + 1, dtype=torch.long, device=values.device)
        torch.cumsum(lengths, 0, out=offsets[1:])
        if ids is not None:  # bags of one in front: offsets 0..n-1, then the pooled offsets shifted by n
            single = self._rows(ids, self.single_plan, "single", where).T.flatten()  # (F_single * B,) field-major
            rows = torch.cat([single, rows])
            offsets = torch.cat([torch.arange(len(single), device=values.device), offsets.add_(len(single))])
            if weights is not None:
                weights = torch.cat([torch.ones(len(single), device=weights.device, dtype=weights.dtype), weights])
            num_fields += len(self.single)
        pooled = F.embedding_bag(
            rows,
            self.weight,
            offsets,
            mode="sum",
            sparse=self.sparse,
            per_sample_weights=None if weights is None else weights.to(self.weight.dtype),
            include_last_offset=True,
            padding_idx=0 if self.has_padding else None,
        )  # (F * B, D)
        return pooled.view(num_fields, -1, self.embedding_dim).transpose(0, 1)  # (B, F, D)

    def field_weight(self, name: str) -> Tensor:
        """The rows of one field (``num_rows``, D), a view of the fused weight."""
        start = self.row_offsets[name]
        field = next(f for f in self.single + self.pooled if f.name == name)
        return self.weight[start : start + field.num_rows]
