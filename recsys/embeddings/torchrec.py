"""Our embedding tables as TorchRec's: table configs, input batches and weights, for sharding across devices.

TorchRec's ``DistributedModelParallel`` shards an ``EmbeddingBagCollection`` (EBC) over GPUs and hosts
(table-, row- and column-wise, planned from the tables' sizes). An :class:`EmbeddingCollection` maps onto
it field by field:

=========================================  ===========================================================
ours                                       TorchRec
=========================================  ===========================================================
``EmbeddingField`` (one per field)         ``EmbeddingBagConfig(name, num_embeddings, embedding_dim,
                                           feature_names=[name], pooling=PoolingType.SUM / MEAN)``
``FusedTable`` (fields of one dim fused)   one table per field; FBGEMM's table-batched kernel fuses
                                           same-dim tables on each device (our fusion, done by TorchRec)
``field_weight(name)`` (a row slice)       ``embedding_bags.<name>.weight`` of the EBC state dict
``KeyedJagged`` (keys, values, offsets)    ``KeyedJaggedTensor(keys, values, lengths, weights)``;
single-valued ids ``(B, F)``               bags of one id
``weighted=True``                          ``EmbeddingBagCollection(is_weighted=True)``, SUM pooling
``pooling="mean"`` with weights            SUM with weights divided by the bag size (EmbeddingBag's mean
                                           takes no per-value weights)
``hashing`` / ``oov_row`` / ``padding_idx``  done on the ids before the KJT: hashed, capped at the OOV
                                           row, padding values dropped (TorchRec has none of the three)
=========================================  ===========================================================

:func:`table_configs`, :func:`kjt_inputs` and :func:`ebc_state_dict` are plain data (they run without
TorchRec); :func:`to_torchrec` builds the EBC when ``torchrec`` imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from recsys.embeddings.collection import EmbeddingCollection
from recsys.embeddings.config import EmbeddingField, check_fields
from recsys.embeddings.hashing import hash_ids
from recsys.embeddings.jagged import KeyedJagged
from recsys.errors import ConfigError

__all__ = ["TorchRecTable", "ebc_state_dict", "kjt_inputs", "table_configs", "to_torchrec"]

_DATA_TYPES = {torch.float32: "FP32", torch.float16: "FP16", torch.bfloat16: "BF16"}


@dataclass(frozen=True)
class TorchRecTable:
    """The ``EmbeddingBagConfig`` arguments of one field (``pooling`` and ``data_type``: member names of
    TorchRec's ``PoolingType`` and ``DataType``).

    >>> table_configs([EmbeddingField("genres", 20, 8, pooling="mean"), EmbeddingField("city", 99, 8, oov_row=True)])[1]
    TorchRecTable(name='city', num_embeddings=100, embedding_dim=8, feature_names=('city',), pooling='SUM', data_type='FP32')
    """

    name: str
    num_embeddings: int
    embedding_dim: int
    feature_names: tuple[str, ...]
    pooling: str
    data_type: str = "FP32"


def table_configs(fields: Sequence[EmbeddingField], dtype: torch.dtype = torch.float32) -> list[TorchRecTable]:
    """One table per field, in declaration order: rows = ``num_rows`` (the OOV row included).

    Single-valued fields become SUM bags of one id; mean-pooled weighted fields SUM (their weights are
    pre-divided by :func:`kjt_inputs`); all fields of one collection must agree on weighting, as one EBC does.
    """
    fields = check_fields(list(fields), "table_configs")
    if dtype not in _DATA_TYPES:
        raise ConfigError(f"no TorchRec data type for {dtype}", where="table_configs", fix="use float32, float16 or bfloat16")
    weighted = {f.weighted for f in fields if f.pooled}
    if len(weighted) > 1:
        raise ConfigError("some multi-valued fields are weighted and some not", where="table_configs",
                          fix="one EmbeddingBagCollection is weighted or not: split the fields into two collections")
    return [
        TorchRecTable(f.name, f.num_rows, f.embedding_dim, (f.name,),
                      "MEAN" if f.pooling == "mean" and not f.weighted else "SUM", _DATA_TYPES[dtype])
        for f in fields  # build time: one loop over fields
    ]


def _rows(field: EmbeddingField, values: Tensor) -> Tensor:
    """The field-local rows of raw ids: hashed, or capped at the OOV row."""
    if field.hashing:
        return hash_ids(values, field.num_embeddings, field.hash_seed)
    if field.oov_row:
        return values.clamp_max(field.num_embeddings)
    return values


def kjt_inputs(collection: EmbeddingCollection, ids: Tensor | None = None, bags: KeyedJagged | None = None) -> dict[str, Any]:
    """``KeyedJaggedTensor(**kjt_inputs(...))`` arguments for the batch ``collection(ids, bags)`` takes:
    ``keys`` (field names, declaration order), ``values`` (rows local to each field's table), ``lengths``
    (key-major, ``(F * B,)``) and ``weights`` (``None`` unless the bags are weighted).

    A boundary conversion: one pass over the fields (F is small), vectorized within each.
    """
    single = {n: i for i, n in enumerate(collection.single_names)}
    pooled = {n: i for i, n in enumerate(collection.pooled_names)}
    batch = ids.shape[0] if ids is not None and single else bags.batch_size  # type: ignore[union-attr]
    weighted = bags is not None and bags.weights is not None
    values, lengths, weights = [], [], []
    for field in collection.fields:
        if not field.pooled:
            raw = ids[:, single[field.name]]  # type: ignore[index]
            length = torch.ones(batch, dtype=torch.long, device=raw.device)
            weight = torch.ones(batch, device=raw.device) if weighted else None
        else:
            k = pooled[field.name]
            start, end = bags.offsets[k * batch], bags.offsets[(k + 1) * batch]  # type: ignore[union-attr]
            raw = bags.values[start:end]  # type: ignore[union-attr]
            length = bags.lengths[k * batch : (k + 1) * batch]  # type: ignore[union-attr]
            weight = bags.weights[start:end].float() if weighted else None  # type: ignore[union-attr]
        if field.padding_idx is not None:  # drop padding values: a zero vector, and not counted by a mean
            keep = raw != field.padding_idx
            bag = torch.repeat_interleave(torch.arange(batch, device=raw.device), length)
            length = torch.zeros(batch, dtype=torch.long, device=raw.device).index_add_(0, bag, keep.long())
            raw = raw[keep]
            weight = None if weight is None else weight[keep]
        if weight is not None and field.weighted and field.pooling == "mean":
            weight = weight / length.clamp_min(1).repeat_interleave(length).to(weight.dtype)
        elif weight is not None and not field.weighted:
            weight = torch.ones_like(weight)  # an unweighted field counts each value once
        values.append(_rows(field, raw))
        lengths.append(length)
        if weight is not None:
            weights.append(weight)
    return {"keys": [f.name for f in collection.fields], "values": torch.cat(values), "lengths": torch.cat(lengths),
            "weights": torch.cat(weights) if weighted else None}


def ebc_state_dict(collection: EmbeddingCollection) -> dict[str, Tensor]:
    """``{"embedding_bags.<field>.weight": rows}``: the collection's weights for ``EmbeddingBagCollection.load_state_dict``
    (views into the fused tables; the shared padding row 0 is left out)."""
    return {f"embedding_bags.{f.name}.weight": collection.field_weight(f.name) for f in collection.fields}


def to_torchrec(collection: EmbeddingCollection, device: torch.device | str | None = None) -> Any:
    """A TorchRec ``EmbeddingBagCollection`` holding ``collection``'s tables and weights (needs ``torchrec``);
    wrap it in ``torchrec.distributed.DistributedModelParallel`` to shard it. Feed it
    ``KeyedJaggedTensor(**kjt_inputs(collection, ids, bags))``; its ``KeyedTensor.values()`` is ``(B, F * D)``."""
    try:
        from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
        from torchrec.modules.embedding_configs import DataType, PoolingType
    except (ImportError, OSError) as error:  # fbgemm_gpu raises OSError when built for another torch
        raise ConfigError(f"torchrec is not usable here: {error}", where="to_torchrec",
                          fix="pip install torchrec with the fbgemm-gpu(-cpu) build of your torch version") from error
    configs = [
        EmbeddingBagConfig(num_embeddings=t.num_embeddings, embedding_dim=t.embedding_dim, name=t.name,
                           feature_names=list(t.feature_names), pooling=PoolingType[t.pooling], data_type=DataType[t.data_type])
        for t in table_configs(collection.fields, collection.dtype)
    ]
    ebc = EmbeddingBagCollection(configs, is_weighted=any(f.weighted for f in collection.fields), device=torch.device(device or "cpu"))
    ebc.load_state_dict({k: v.detach() for k, v in ebc_state_dict(collection).items()})
    return ebc
