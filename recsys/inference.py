"""Use what you trained: recommendations, similar items and embeddings in original ids, for every model.

:class:`FittedRecommender` wraps a fitted model with its vocabularies and the interactions known at
inference time (what :func:`recsys.load_run` and :func:`recsys.run_pipeline` give back). Scoring is
batched on the model's device: one ``(B, N)`` score block, seen items set to ``-inf``, the top ``N`` kept
(:mod:`recsys.evaluation.topk`); models scored by inner products (``score_vectors``: BPR-MF, ALS) score item
tiles that stay in cache instead of the whole block.

>>> import polars as pl, torch
>>> from recsys.data import from_frame
>>> from recsys.models import Popularity
>>> data = from_frame(pl.DataFrame({"user": ["a", "a", "b", "c"], "item": [10, 20, 10, 30]}))
>>> model = Popularity(num_items=data.num_items); model.prepare(data)
>>> rec = FittedRecommender(model, data)
>>> rec.recommend(["b"], N=2).to_dicts()
[{'user': 'b', 'item': 20, 'score': 1.0, 'rank': 1}, {'user': 'b', 'item': 30, 'score': 1.0, 'rank': 2}]
>>> rec.recommend(["new"], N=1, histories={"new": [10]}).rows()
[('new', 20, 1.0, 1)]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch
from torch import Tensor

from recsys.data.frame import is_pandas_frame
from recsys.data.interactions import Interactions
from recsys.data.vocabulary import Vocabulary, _as_series
from recsys.embeddings.keyed_vectors import KeyedVectors
from recsys.errors import ConfigError, DataError
from recsys.evaluation.topk import topk, topk_dot
from recsys.models.base import Recommender
from recsys.runtime import progress_bar

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FittedRecommender", "histories_frame"]

log = logging.getLogger(__name__)

_SHOWN = 5


def _output(frame: pl.DataFrame, output: str) -> pl.DataFrame | pd.DataFrame:
    if output == "polars":
        return frame
    if output == "pandas":
        return frame.to_pandas()
    raise ConfigError(f"output must be 'polars' or 'pandas', got {output!r}", where="output")


def _ids(values: Any, name: str) -> pl.Series:
    """``values`` as a Series; a list mixing types (``[1, "new"]``) becomes strings rather than an error."""
    try:
        return _as_series(values, name)
    except (TypeError, pl.exceptions.PolarsError):
        return pl.Series(name, list(values) if not np.isscalar(values) else [values], dtype=pl.String, strict=False)


def _aligned(values: pl.Series, like: pl.Series) -> pl.Series:
    """``values`` cast to ``like``'s dtype; a value that does not convert (``"new"`` for integer ids) becomes null."""
    if values.dtype == like.dtype:
        return values
    try:
        return values.cast(like.dtype, strict=False)
    except pl.exceptions.PolarsError:
        return pl.Series(values.name, [None] * len(values), dtype=like.dtype)


def _member(values: pl.Series, pool: pl.Series) -> pl.Series:
    """Which of ``values`` are in ``pool``, whatever the two dtypes (ids of another type are simply not members)."""
    return _aligned(values, pool).is_in(pool.implode()).fill_null(False)


def histories_frame(histories: Mapping[Any, Any] | pl.DataFrame | pd.DataFrame) -> pl.DataFrame:
    """``{user: [item, ...]}`` (time order) or a frame with ``user``, ``item`` (``timestamp``, ``rating``) as one polars frame."""
    if is_pandas_frame(histories):
        histories = pl.from_pandas(histories)
    if isinstance(histories, pl.DataFrame):
        missing = [c for c in ("user", "item") if c not in histories.columns]
        if missing:
            raise DataError(f"histories lack column(s) {missing}", where=f"histories; columns: {histories.columns}",
                            fix="pass a frame with user and item columns (timestamp optional), or {user: [items]}")
        frame = histories
    elif isinstance(histories, Mapping):
        lists = pl.DataFrame({"user": list(histories), "item": [list(v) for v in histories.values()]}, strict=False)
        frame = (lists.with_columns(pl.int_ranges(pl.col("item").list.len()).alias("timestamp"))  # position = time order
                 .explode("item", "timestamp").drop_nulls("item").with_columns(pl.col("timestamp").cast(pl.Int64)))
    else:
        raise DataError(f"histories must be a mapping or a DataFrame, got {type(histories).__name__}", where="histories",
                        fix="pass {user: [item, ...]} or a frame with user and item columns")
    if "timestamp" not in frame.columns:
        frame = frame.with_row_index("timestamp").with_columns(pl.col("timestamp").cast(pl.Int64))
    return frame.select("user", "item", "timestamp", *(["rating"] if "rating" in frame.columns else []))


class FittedRecommender:
    """A fitted model with its vocabularies (original ids) and the interactions known at inference time.

    ``history`` (an :class:`~recsys.data.Interactions` on the model's user and item index, e.g. train +
    validation) is what ``filter_already_liked_items`` removes and what sequential models read.
    """

    def __init__(self, model: Recommender, history: Interactions, *, fold_in: Any = None) -> None:
        self.model, self.history = model, history
        self.users, self.items = history.users, history.items
        self.fold_in = fold_in

    def __repr__(self) -> str:
        return f"FittedRecommender({type(self.model).__name__}, users={len(self.users)}, items={len(self.items)})"

    # --- recommend ---------------------------------------------------------------------------------
    def recommend(
        self,
        users: Any,
        N: int = 10,
        *,
        filter_already_liked_items: bool = True,
        filter_items: Any = None,
        items: Any = None,
        histories: Mapping[Any, Any] | pl.DataFrame | pd.DataFrame | None = None,
        batch_size: int = 1024,
        output: str = "polars",
        progress: bool = False,
        index: Any = None,
        item_columns: Sequence[str] | None = None,
    ) -> pl.DataFrame | pd.DataFrame:
        """Top ``N`` items for each of ``users`` (original ids): a frame of ``user, item, score, rank``.

        - ``filter_already_liked_items``: drop items in the user's history (known, or given in ``histories``).
        - ``filter_items``: original item ids never to recommend; ``items``: rank only these candidates.
        - ``histories``: ``{user: [item, ...]}`` or a ``user, item[, timestamp]`` frame for users the model
          never saw, or whose history changed: they are scored from it without retraining (sequential
          models read it, ALS solves the user's factors, item2vec/content average item vectors, MF models
          fold the user in). A model that cannot raises a clear error.

        - ``index``: ``"faiss"`` (an HNSW index over the item embeddings, built once and cached) or a built
          :class:`~recsys.embeddings.ann.FaissIndex` (``metric="ip"``): approximate search, for models whose
          scores are user . item embeddings; seen and filtered items are over-fetched, then masked.
        - ``item_columns``: item side-feature columns to add to each row (e.g. ``["title"]``; see
          :meth:`recsys.data.Interactions.item_frame`).

        Fewer than ``N`` rows come back for a user when fewer candidates are left after filtering. CTR
        models (scores are logits) add ``probability``, the predicted click probability.
        """
        if not isinstance(N, (int, np.integer)) or isinstance(N, bool) or N < 1:
            raise ConfigError(f"N must be a positive int, got {N!r}", where="recommend(N=...)")
        ann = None if index is None else self._ann_index(index, "ip", where="recommend(index=...)")
        if ann is not None and (items is not None or histories is not None):
            raise ConfigError("index= searches the whole catalogue for users of the training data", where="recommend(index=...)",
                              fix="drop items= / histories= or index= (exact scoring of a candidate list is cheap)")
        wanted = _ids(users, "user")
        if wanted.null_count():
            raise DataError("users contain missing values", where="recommend(users=...)", fix="drop them")
        candidates = None if items is None else self._item_index(items, "items")
        banned = None if filter_items is None else self._item_index(filter_items, "filter_items")
        fresh = self._fresh_history(histories, wanted) if histories is not None else None
        known_mask = ~_member(wanted, fresh.users.ids) if fresh is not None else pl.repeat(True, len(wanted), eager=True)
        known = wanted.filter(known_mask)
        unseen = known.filter(~_member(known, self.users.ids))
        if len(unseen):
            raise DataError(f"unknown user ids: {unseen.head(_SHOWN).to_list()} ({len(unseen)} of {len(known)})",
                            where="recommend(users=...)",
                            fix="recommend for users of the training data, or give new users' items in histories=...")
        index = self.users.to_index(_aligned(known, self.users.ids)) if len(known) else torch.empty(0, dtype=torch.long)
        parts = []
        if len(known) and ann is not None:
            parts.append(self._top_ann(known, index, N, filter_already_liked_items, banned, batch_size, ann))
        elif len(known):
            parts.append(self._top(known, index, self.history, N, filter_already_liked_items, banned, candidates,
                                   batch_size, progress, fresh_scores=False))
        if fresh is not None:
            parts.append(self._top(fresh.users.ids, torch.arange(fresh.num_users), fresh, N, filter_already_liked_items,
                                   banned, candidates, batch_size, progress, fresh_scores=True))
        frame = pl.concat(parts) if parts else pl.DataFrame(schema={"user": wanted.dtype, "item": self.items.ids.dtype,
                                                                    "score": pl.Float32, "rank": pl.Int64})
        if len(parts) > 1:  # keep the caller's user order
            order = pl.DataFrame({"user": wanted.unique(maintain_order=True)}).with_row_index("_order")
            frame = frame.join(order, on="user").sort(["_order", "rank"]).drop("_order")
        if self.model.scores_are_logits:  # CTR models: the click probability beside the ranking score
            frame = frame.with_columns(probability=(1.0 / (1.0 + (-pl.col("score").cast(pl.Float64)).exp())).cast(pl.Float32))
        return _output(self._with_item_columns(frame, "item", item_columns, "recommend"), output)

    def _top(self, ids: pl.Series, index: Tensor, history: Interactions, N: int, filter_liked: bool, banned: Tensor | None,
             candidates: Tensor | None, batch_size: int, progress: bool, fresh_scores: bool) -> pl.DataFrame:
        model, device = self.model, self.model.device
        model.eval()
        seen = history.user_item_matrix() if filter_liked else None
        width = len(self.items) if candidates is None else len(candidates)
        k = min(N, width)
        cand = candidates.to(device) if candidates is not None else None
        rows, cols, vals = [], [], []
        fresh = self._score_fresh(history) if fresh_scores else None
        dot = model.score_vectors() if fresh is None and cand is None else None  # inner products: ranked tile by tile
        with torch.no_grad():
            starts = range(0, len(index), batch_size)
            for start in progress_bar(starts, desc="recommend", unit="batch", disable=not progress):
                users = index[start : start + batch_size]
                if seen is not None:
                    crow, col = seen.crow_indices(), seen.col_indices()
                    lo, hi = crow[users], crow[users + 1]
                    counts = (hi - lo).to(device)
                    row = torch.repeat_interleave(torch.arange(len(users), device=device), counts)
                    offsets = torch.repeat_interleave(lo.to(device) - torch.cumsum(counts, 0) + counts, counts)
                    flat = col.to(device)[torch.arange(int(counts.sum()), device=device) + offsets]
                if dot is not None:
                    exclude = None if seen is None else (torch.cat([counts.new_zeros(1), counts.cumsum(0)]).cpu().numpy(), flat.cpu().numpy())
                    values, top = topk_dot(dot[0][users.to(device)], dot[1], k, exclude=exclude, banned=banned)
                else:
                    scores = (fresh[start : start + batch_size] if fresh is not None else model.score_users(users.to(device), history))
                    scores = scores.float().to(device).clone()  # (B, N)
                    if seen is not None:
                        scores[row, flat] = float("-inf")
                    if banned is not None:
                        scores[:, banned.to(device)] = float("-inf")
                    if cand is not None:
                        scores = scores.index_select(1, cand)  # (B, C)
                    values, top = topk(scores, k)  # (B, K)
                item = top if cand is None else cand[top.to(device)]
                rows.append(torch.arange(start, start + len(users)).unsqueeze(1).expand(-1, k).cpu())
                cols.append(item.cpu())
                vals.append(values.cpu())
        if not rows:
            return pl.DataFrame(schema={"user": ids.dtype, "item": self.items.ids.dtype, "score": pl.Float32, "rank": pl.Int64})
        row, col, val = (torch.cat(x).flatten() for x in (rows, cols, vals))
        keep = torch.isfinite(val)
        rank = torch.arange(1, k + 1).repeat(len(index))[keep]
        row, col, val = row[keep], col[keep], val[keep]
        return pl.DataFrame({
            "user": ids.gather(pl.Series(row.numpy())),
            "item": self.items.ids.gather(pl.Series(col.numpy())),
            "score": val.numpy(),
            "rank": rank.numpy().astype(np.int64),
        })

    def _score_fresh(self, history: Interactions) -> Tensor:
        """Scores (U, N) of the users of a given ``history`` (new or changed users)."""
        model = self.model
        overridden = type(model).score_histories is not Recommender.score_histories
        if model.reads_history or overridden:
            with torch.no_grad():
                return model.score_histories(history)
        if model.user_tables:
            from recsys.training.fold_in import fold_in_scores

            return fold_in_scores(model, history, **(self.fold_in or {}))
        raise ConfigError(f"{type(model).__name__} cannot recommend for users it never saw", where="recommend(histories=...)",
                          fix="recommend for users of the training data, or use a model that reads histories "
                          "(sasrec, bert4rec, item2vec, content, ease, als, bpr, ...)")

    def _fresh_history(self, histories: Any, wanted: pl.Series) -> Interactions | None:
        frame = histories_frame(histories)
        if len(frame) == 0:
            raise DataError("histories are empty", where="recommend(histories=...)", fix="give at least one item per user")
        if frame["user"].dtype != wanted.dtype:  # the caller's ids rule: {"new": ...} for users=[1, "new"]
            frame = frame.with_columns(_aligned(frame["user"], wanted))
        frame = frame.filter(_member(frame["user"], wanted))  # histories of users not asked for are not scored
        missing = wanted.filter(~_member(wanted, frame["user"]) & ~_member(wanted, self.users.ids))
        if len(missing):
            raise DataError(f"unknown users without a history: {missing.head(_SHOWN).to_list()}", where="recommend(users=...)",
                            fix="give their histories in histories=..., or recommend for users of the training data")
        if len(frame) == 0:  # every asked-for user is known and has no new history
            return None
        users = Vocabulary(frame["user"].unique(maintain_order=True))
        rows = pl.DataFrame({
            "user": users.to_index(frame["user"]).numpy(),
            "item": self._item_index(frame["item"], "histories").numpy(),
            "timestamp": frame["timestamp"].cast(pl.Int64),
            **({"rating": frame["rating"].cast(pl.Float32)} if "rating" in frame.columns else {}),
        })
        return Interactions(rows, users, self.items, user_features=None, item_features=self.history.item_features,
                            name=f"{self.history.name} (given histories)")

    def _item_index(self, values: Any, where: str, call: str = "recommend") -> Tensor:
        series = _ids(values, "item")
        unknown = series.filter(~_member(series, self.items.ids))
        if len(unknown):
            raise DataError(f"unknown item ids in {where}: {unknown.head(_SHOWN).to_list()} (the training data's item ids "
                            f"are {self.items.ids.dtype}, e.g. {self.items.ids.head(3).to_list()})", where=f"{call}({where}=...)",
                            fix="pass item ids of the training data")
        return self.items.to_index(_aligned(series, self.items.ids))

    # --- items and embeddings ------------------------------------------------------------------------
    def item_embeddings(self) -> KeyedVectors:
        """The model's item vectors keyed by original item id (raises for models without item vectors)."""
        return self._vectors("item_embeddings", self.items)

    def user_embeddings(self) -> KeyedVectors:
        """The model's user vectors keyed by original user id (raises for models without user vectors)."""
        return self._vectors("user_embeddings", self.users)

    def _vectors(self, name: str, vocab: Vocabulary) -> KeyedVectors:
        method = getattr(self.model, name, None)
        if not callable(method):
            raise ConfigError(f"{type(self.model).__name__} has no {name.replace('_', ' ')}", where=name,
                              fix="use a model with embeddings (bpr, als, neumf, biased_mf, item2vec, content, sasrec, bert4rec, fm, deepfm)")
        # CTR models build side vectors from the side features the history holds
        vectors = method(vocab, history=self.history) if getattr(self.model, "vectors_read_history", False) else method(vocab)
        return vectors if isinstance(vectors, KeyedVectors) else KeyedVectors(list(vocab.ids.to_list()), vectors.weight.detach().cpu())

    def similar_items(self, items: Any, N: int = 10, *, filter_items: Any = None, output: str = "polars",
                      index: Any = None, item_columns: Sequence[str] | None = None) -> pl.DataFrame | pd.DataFrame:
        """The ``N`` items most similar to each of ``items`` (cosine of item vectors; EASE: its item-item weights).

        ``index``: ``"faiss"`` (cached) or a built :class:`~recsys.embeddings.ann.FaissIndex` (``metric="cosine"``)
        over the item embeddings: approximate cosine neighbours. ``item_columns``: side-feature columns of the
        similar item to add (e.g. ``["title"]``)."""
        if not isinstance(N, (int, np.integer)) or N < 1:
            raise ConfigError(f"N must be a positive int, got {N!r}", where="similar_items(N=...)")
        ann = None if index is None else self._ann_index(index, "cosine", where="similar_items(index=...)")
        index = self._item_index(items, "items", "similar_items")
        similarity = getattr(self.model, "item_similarity", None)
        if ann is not None:
            if callable(similarity):
                raise ConfigError(f"{type(self.model).__name__} ranks similar items by its own item_similarity", where="similar_items(index=...)",
                                  fix="drop index= for this model")
            banned = None if filter_items is None else self._item_index(filter_items, "filter_items")
            return _output(self._with_item_columns(self._similar_ann(index, N, banned, ann), "similar", item_columns), output)
        with torch.no_grad():
            if callable(similarity):
                scores = similarity(index.to(self.model.device)).float().cpu().clone()  # (B, N)
            else:
                table = torch.nn.functional.normalize(self.item_embeddings().table.float(), dim=1)  # (N, D)
                scores = table[index] @ table.T  # (B, N)
        scores[torch.arange(len(index)), index] = float("-inf")  # an item is not similar to itself
        if filter_items is not None:
            scores[:, self._item_index(filter_items, "filter_items", "similar_items")] = float("-inf")
        k = min(N, scores.shape[1])
        top = scores.topk(k, dim=1)
        keep = torch.isfinite(top.values).flatten()
        source = index.unsqueeze(1).expand(-1, k).flatten()[keep]
        frame = pl.DataFrame({
            "item": self.items.ids.gather(pl.Series(source.numpy())),
            "similar": self.items.ids.gather(pl.Series(top.indices.flatten()[keep].numpy())),
            "score": top.values.flatten()[keep].numpy(),
            "rank": torch.arange(1, k + 1).repeat(len(index))[keep].numpy().astype(np.int64),
        })
        return _output(self._with_item_columns(frame, "similar", item_columns), output)

    def _with_item_columns(self, frame: pl.DataFrame, key: str, columns: Sequence[str] | None,
                           call: str = "similar_items") -> pl.DataFrame:
        """``frame`` with the item side-feature ``columns`` of its ``key`` column joined on (original ids)."""
        if not columns:
            return frame
        columns = [columns] if isinstance(columns, str) else list(columns)
        info = self.history.item_frame()
        missing = [c for c in columns if c not in info.columns or c == "item"]
        if missing:
            have = [c for c in info.columns if c != "item"]
            raise ConfigError(f"no item column(s) {missing}", where=f"{call}(item_columns=...); the items have {have or 'no side features'}",
                              fix=f"use some of {have}" if have else "load the dataset with its item features")
        info = info.select(pl.col("item").alias(key), *columns)
        return frame.join(info, on=key, how="left", maintain_order="left")

    # --- approximate search (recsys.embeddings.ann) --------------------------------------------------
    def _ann_index(self, index: Any, metric: str, where: str) -> Any:
        """A :class:`FaissIndex` over the item embeddings: the given one (checked) or the cached ``"faiss"`` one."""
        from recsys.embeddings.ann import FaissIndex

        vectors = self.item_embeddings().table  # (N, D)
        if isinstance(index, FaissIndex):
            if index.metric != metric:
                raise ConfigError(f"this needs a metric={metric!r} index, got {index.metric!r}", where=where,
                                  fix=f"build FaissIndex(item_embeddings, metric={metric!r}) or pass index='faiss'")
            index.check(vectors, where=where)
            return index
        if index != "faiss":
            raise ConfigError(f"index must be 'faiss' or a FaissIndex, got {index!r}", where=where)
        cache = self.__dict__.setdefault("_ann_indexes", {})
        built = cache.get(metric)
        if built is None or built.fingerprint != FaissIndex.fingerprint_of(vectors):  # built once per set of vectors
            built = cache[metric] = FaissIndex(vectors, metric=metric, kind="hnsw")
        return built

    def _query_vectors(self) -> Tensor:
        """User vectors ``(U, D)`` whose inner products with the item embeddings are the model's scores."""
        try:
            users = self.user_embeddings().table
        except TypeError as error:  # user vectors that need more than the vocabulary (EASE: a history)
            users = None
            reason = str(error)
        else:
            reason = ""
        items = self.item_embeddings().table
        if users is not None and users.shape[1] == items.shape[1]:
            sample = torch.arange(min(16, len(users)))
            with torch.no_grad():
                exact = self.model.score_users(sample.to(self.model.device), self.history).float().cpu()  # (S, N)
            dot = users[sample] @ items.T  # (S, N)
            if torch.allclose(exact, dot, rtol=1e-3, atol=1e-4 * float(exact.abs().max().clamp_min(1.0))):
                return users
        raise ConfigError(f"{type(self.model).__name__}'s scores are not inner products of its user and item embeddings{reason and ': ' + reason}",
                          where="recommend(index=...)", fix="use exact search (index=None), or a model scored by user . item (als, ...)")

    def _top_ann(self, ids: pl.Series, users: Tensor, N: int, filter_liked: bool, banned: Tensor | None, batch_size: int,
                 ann: Any) -> pl.DataFrame:
        """Top ``N`` by approximate inner product: fetch ``N`` + history length + filtered, mask, keep ``N``."""
        queries, num_items = self._query_vectors(), len(self.items)
        seen = self.history.user_item_matrix() if filter_liked else None
        rows, cols, vals, ranks = [], [], [], []
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            if seen is not None:
                crow, col = seen.crow_indices(), seen.col_indices()
                lo, counts = crow[batch], crow[batch + 1] - crow[batch]
                owner = torch.repeat_interleave(torch.arange(len(batch)), counts)
                flat = col[torch.repeat_interleave(lo - torch.cumsum(counts, 0) + counts, counts) + torch.arange(int(counts.sum()))]
                seen_keys = owner * num_items + flat  # (nnz_B,) row-in-batch * N + item
                extra = int(counts.max()) if len(batch) else 0
            extra = (extra if seen is not None else 0) + (0 if banned is None else len(banned))
            scores, found = ann.search(queries[batch], min(N + extra, num_items))  # (B, K')
            drop = found < 0
            if seen is not None:
                drop |= torch.isin(torch.arange(len(batch)).unsqueeze(1) * num_items + found.clamp_min(0), seen_keys)
            if banned is not None:
                drop |= torch.isin(found, banned)
            k = min(N, found.shape[1])
            top = scores.masked_fill(drop, float("-inf")).topk(k, dim=1)  # (B, K)
            rows.append(torch.arange(start, start + len(batch)).unsqueeze(1).expand(-1, k).flatten())
            cols.append(found.gather(1, top.indices).flatten())
            vals.append(top.values.flatten())
            ranks.append(torch.arange(1, k + 1).repeat(len(batch)))
        return self._frame(("user", "item"), ids, rows, cols, vals, ranks)

    def _similar_ann(self, index: Tensor, N: int, banned: Tensor | None, ann: Any) -> pl.DataFrame:
        table = self.item_embeddings().table  # (N, D)
        fetch = min(N + 1 + (0 if banned is None else len(banned)), len(self.items))
        scores, found = ann.search(table[index], fetch)  # (B, K')
        drop = (found < 0) | (found == index.unsqueeze(1))  # an item is not similar to itself
        if banned is not None:
            drop |= torch.isin(found, banned)
        k = min(N, fetch)
        top = scores.masked_fill(drop, float("-inf")).topk(k, dim=1)  # (B, K)
        return self._frame(("item", "similar"), self.items.ids, [index.unsqueeze(1).expand(-1, k).flatten()],
                           [found.gather(1, top.indices).flatten()], [top.values.flatten()], [torch.arange(1, k + 1).repeat(len(index))])

    def _frame(self, names: tuple[str, str], ids: pl.Series, rows: list, cols: list, vals: list, ranks: list) -> pl.DataFrame:
        """``names[0]`` (``ids`` at ``rows``), ``names[1]`` (item ids at ``cols``), score, rank; non-finite scores dropped."""
        key, item = names
        if not rows:
            return pl.DataFrame(schema={key: ids.dtype, item: self.items.ids.dtype, "score": pl.Float32, "rank": pl.Int64})
        row, col, val, rank = (torch.cat(x) for x in (rows, cols, vals, ranks))
        keep = torch.isfinite(val)
        row, col, val, rank = row[keep], col[keep], val[keep], rank[keep]
        return pl.DataFrame({
            key: ids.gather(pl.Series(row.numpy())),
            item: self.items.ids.gather(pl.Series(col.numpy())),
            "score": val.float().numpy(),
            "rank": rank.numpy().astype(np.int64),
        })
