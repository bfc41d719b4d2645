"""Approximate nearest neighbours over embedding tables with faiss (the optional extra ``ann``).

:class:`FaissIndex` builds an HNSW, IVF or exact (flat) index over ``(V, D)`` vectors for inner-product or
cosine search and remembers a fingerprint (shape and a hash) of the vectors it was built on, so an index
used with other vectors fails loudly (:meth:`FaissIndex.check`). faiss is imported when an index is built.

>>> import torch
>>> vectors = torch.eye(4)[[0, 0, 1, 2, 3]] + 0.01 * torch.arange(5.0).unsqueeze(1)
>>> index = FaissIndex(vectors, metric="cosine", kind="flat")
>>> scores, rows = index.search(vectors[:1], k=2)
>>> sorted(rows[0].tolist())
[0, 1]
>>> index.fingerprint == FaissIndex.fingerprint_of(vectors)
True
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recsys.embeddings.keyed_vectors import KeyedVectors
from recsys.errors import ConfigError

__all__ = ["FaissIndex", "import_faiss"]

log = logging.getLogger(__name__)

_METRICS = ("ip", "cosine")
_KINDS = ("hnsw", "ivf", "flat")
# kind -> accepted params and their defaults
_PARAMS: dict[str, dict[str, int]] = {
    "hnsw": {"M": 32, "ef_construction": 200, "ef_search": 256},
    "ivf": {"nlist": 0, "nprobe": 32},  # nlist 0: about 4 * sqrt(V)
    "flat": {},
}


def import_faiss() -> Any:
    """The ``faiss`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import faiss
    except ImportError as error:
        raise ConfigError("approximate search needs faiss, which is not installed", where="recsys.embeddings.ann",
                          fix="pip install 'recsys[ann]' (or pip install faiss-cpu / faiss-gpu)") from error
    return faiss


def _table(vectors: KeyedVectors | Tensor | np.ndarray) -> Tensor:
    table = vectors.table if isinstance(vectors, KeyedVectors) else torch.as_tensor(vectors)
    if table.dim() != 2 or table.shape[0] == 0:
        raise ConfigError(f"vectors must be a non-empty (V, D) matrix, got shape {tuple(table.shape)}", where="FaissIndex(vectors)")
    return table.detach().float().cpu().contiguous()


class FaissIndex:
    """A faiss index over ``vectors`` (``KeyedVectors`` or a ``(V, D)`` tensor): ``search(queries, k) -> (scores, rows)``.

    - ``metric="ip"``: inner product; ``"cosine"``: vectors and queries are L2-normalized first.
    - ``kind="hnsw"`` (params ``M``, ``ef_construction``, ``ef_search``), ``"ivf"`` (``nlist``, ``nprobe``;
      trained on the vectors) or ``"flat"`` (exact).
    - ``fingerprint``: ``(V, D, hash)`` of the vectors it was built on; :meth:`check` compares it.

    Rows come back as ``torch.long`` ``(Q, k)``, ``-1`` where the index found fewer than ``k`` (scores ``-inf``).
    """

    def __init__(self, vectors: KeyedVectors | Tensor | np.ndarray, metric: str = "ip", kind: str = "hnsw", **params: int) -> None:
        if metric not in _METRICS:
            raise ConfigError(f"unknown metric {metric!r}", where="FaissIndex(metric=...)", fix=f"use one of {_METRICS}")
        if kind not in _KINDS:
            raise ConfigError(f"unknown kind {kind!r}", where="FaissIndex(kind=...)", fix=f"use one of {_KINDS}")
        unknown = sorted(set(params) - set(_PARAMS[kind]))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {unknown} for kind={kind!r}", where="FaissIndex(**params)",
                              fix=f"{kind} takes {sorted(_PARAMS[kind]) or 'no parameters'}")
        faiss = import_faiss()
        table = _table(vectors)
        self.metric, self.kind, self.params = metric, kind, {**_PARAMS[kind], **params}
        self.fingerprint = self.fingerprint_of(table)
        data = self._prepare(table)  # (V, D) float32 numpy
        num, dim = data.shape
        inner = faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, int(self.params["M"]), inner)
            index.hnsw.efConstruction = int(self.params["ef_construction"])
        else:
            nlist = int(self.params["nlist"]) or max(1, min(num // 39, int(4 * num**0.5)))
            self.params["nlist"] = nlist
            self._quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(self._quantizer, dim, nlist, inner)
            index.train(data)
        index.add(data)
        self.index = index
        self._set_search_params()
        log.info("FaissIndex: %s/%s over %d x %d", kind, metric, num, dim)

    def __repr__(self) -> str:
        return f"FaissIndex(kind={self.kind!r}, metric={self.metric!r}, vectors={self.fingerprint[0]}x{self.fingerprint[1]}, {self.params})"

    def __len__(self) -> int:
        return self.fingerprint[0]

    @staticmethod
    def fingerprint_of(vectors: KeyedVectors | Tensor | np.ndarray) -> tuple[int, int, str]:
        """``(V, D, blake2b of the float32 bytes)`` of ``vectors``."""
        table = _table(vectors)
        digest = hashlib.blake2b(table.numpy().tobytes(), digest_size=16).hexdigest()
        return int(table.shape[0]), int(table.shape[1]), digest

    def check(self, vectors: KeyedVectors | Tensor | np.ndarray, where: str = "index") -> None:
        """Raise :class:`ConfigError` unless this index was built on exactly ``vectors``."""
        other = self.fingerprint_of(vectors)
        if other != self.fingerprint:
            shape = f"{self.fingerprint[0]} x {self.fingerprint[1]}"
            what = ("other vectors of the same shape" if other[:2] == self.fingerprint[:2]
                    else f"{other[0]} x {other[1]} vectors")
            raise ConfigError(f"the index was built on {shape} vectors that differ from these ({what})", where=where,
                              fix="rebuild the index over these vectors: FaissIndex(model item embeddings), or pass index='faiss'")

    def tune(self, vectors: KeyedVectors | Tensor | np.ndarray, queries: Tensor | np.ndarray, k: int,
             target_recall: float = 0.95) -> dict[str, float]:
        """Set the smallest ``nprobe`` (IVF) or ``ef_search`` (HNSW) whose recall@k on ``queries`` reaches ``target_recall``.

        Recall is measured against exact search over ``vectors`` (the vectors the index was built on), as faiss'
        own auto-tuning does; the ladder doubles from ``k`` (HNSW) or 1 (IVF) up to ``nlist`` / 16k. Returns
        ``{"param": value, "recall": measured}``; when even the top of the ladder misses the target, that value is
        kept and the returned recall says by how much.

        >>> vectors = torch.randn(2000, 8, generator=torch.Generator().manual_seed(0))
        >>> index = FaissIndex(vectors, kind="ivf", nlist=16, nprobe=1)
        >>> out = index.tune(vectors, vectors[:50], k=10, target_recall=0.9)
        >>> out["recall"] >= 0.9 and index.params["nprobe"] == out["nprobe"]
        True
        """
        if not 0.0 < float(target_recall) <= 1.0:
            raise ConfigError(f"target_recall must be in (0, 1], got {target_recall!r}", where="FaissIndex.tune")
        self.check(vectors, where="FaissIndex.tune(vectors=...)")
        if self.kind == "flat":
            return {"recall": 1.0}
        table = torch.from_numpy(self._prepare(_table(vectors)))
        probe = torch.from_numpy(self._prepare(torch.as_tensor(queries)))
        truth = torch.cat([(probe[s : s + 256] @ table.T).topk(min(k, len(table)), dim=1).indices
                           for s in range(0, len(probe), 256)])  # (Q, k) exact rows
        name = "nprobe" if self.kind == "ivf" else "ef_search"
        top = int(self.params["nlist"]) if self.kind == "ivf" else 16384
        value, recall = (1 if self.kind == "ivf" else k), 0.0
        while True:
            self.params[name] = min(value, top)
            self._set_search_params()
            _, rows = self.search(probe, k)
            recall = float((rows.unsqueeze(2) == truth.unsqueeze(1)).any(2).float().sum(1).div(truth.shape[1]).mean())
            if recall >= target_recall or value >= top:
                break
            value *= 2
        log.info("FaissIndex.tune: %s=%d gives recall@%d %.4f", name, self.params[name], k, recall)
        return {name: self.params[name], "recall": recall}

    def _prepare(self, x: Tensor) -> np.ndarray:
        x = x.detach().float().cpu()
        if self.metric == "cosine":
            x = torch.nn.functional.normalize(x, dim=1)
        return np.ascontiguousarray(x.numpy(), dtype=np.float32)

    def _set_search_params(self) -> None:
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = int(self.params["ef_search"])
        elif self.kind == "ivf":
            self.index.nprobe = int(self.params["nprobe"])

    def search(self, queries: Tensor | np.ndarray, k: int) -> tuple[Tensor, Tensor]:
        """The ``k`` nearest rows of each query: scores ``(Q, k)`` float32 and rows ``(Q, k)`` long."""
        queries = torch.as_tensor(queries)
        if queries.dim() == 1:
            queries = queries.unsqueeze(0)
        if queries.dim() != 2 or queries.shape[1] != self.fingerprint[1]:
            raise ConfigError(f"queries must be (Q, {self.fingerprint[1]}), got {tuple(queries.shape)}", where="FaissIndex.search")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive int, got {k!r}", where="FaissIndex.search(k=...)")
        k = int(k)
        if self.kind == "hnsw" and k > self.index.hnsw.efSearch:  # HNSW returns at most efSearch results
            self.index.hnsw.efSearch = k
        scores, rows = self.index.search(self._prepare(queries), min(k, len(self)))
        self._set_search_params()
        scores, rows = torch.from_numpy(scores), torch.from_numpy(rows).long()
        scores[rows < 0] = float("-inf")
        if k > len(self):  # pad to k like a short result
            pad = k - len(self)
            scores = torch.cat([scores, scores.new_full((len(scores), pad), float("-inf"))], 1)
            rows = torch.cat([rows, rows.new_full((len(rows), pad), -1)], 1)
        return scores, rows
