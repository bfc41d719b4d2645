"""Top-K ranking evaluation of any scorer: full ranking (default) or sampled candidates, tie-aware."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from recsys.data.sampling import NegativeSampler, csr_keys

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.models.base import Recommender
from recsys.errors import ConfigError, DataError
from recsys.evaluation.metrics import METRICS, TieRanks, check_metric_names, top_k_tie_ranks
from recsys.runtime import progress_bar

__all__ = ["RankingEvaluator"]

_MAX_BATCH = 4096  # users per batch when the memory budget chooses it
_SLACK = 54  # extra top-k slots that absorb a user's excluded items before a row is masked on a copy


def _check_csr(matrix: Tensor, name: str) -> None:
    if not isinstance(matrix, Tensor) or matrix.layout != torch.sparse_csr or matrix.dim() != 2:
        raise DataError(
            f"{name} must be a 2-D torch sparse CSR tensor (num_users, num_items)",
            where=f"RankingEvaluator.evaluate({name}=...)",
            fix="build it with torch.sparse_csr_tensor(...) or dense.to_sparse_csr()",
        )


def _gather_rows(crow: Tensor, col: Tensor, users: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Entries of CSR rows ``users`` (B,): batch row, offset within row, column (each (nnz,)), and row lengths (B,)."""
    start = crow[users]
    lens = crow[users + 1] - start
    total = int(lens.sum())
    batch = torch.arange(users.numel(), device=users.device)
    row = torch.repeat_interleave(batch, lens, output_size=total)
    offset = torch.arange(total, device=users.device) - torch.repeat_interleave(
        lens.cumsum(0) - lens, lens, output_size=total
    )
    return row, offset, col[start[row] + offset], lens


def _canonical_csr(crow: Tensor, col: Tensor, num_items: int) -> tuple[Tensor, Tensor]:
    """``crow``, ``col`` with each row's columns sorted and unique (as ``user_item_matrix`` builds them): checked
    in one pass, rebuilt only when they are not."""
    if col.numel() < 2:
        return crow, col
    increasing = col[1:] > col[:-1]
    boundary = crow[1:-1] - 1  # the last entry of every row but the final one
    boundary = boundary[(boundary >= 0) & (boundary < col.numel() - 1)]
    increasing[boundary] = True
    if bool(increasing.all()):
        return crow, col
    rows = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device), crow.diff())
    keys = torch.unique(rows * num_items + col)
    counts = torch.bincount(keys // num_items, minlength=crow.numel() - 1)
    return torch.cat([crow.new_zeros(1), counts.cumsum(0)]), keys % num_items


class _Excluded:
    """One batch's excluded entries: rows (E,), columns (E,) and sorted keys ``row * N + col`` for membership tests."""

    def __init__(self, crow: Tensor, col: Tensor, users: Tensor, num_items: int) -> None:
        self.row, _, self.col, lens = _gather_rows(crow, col, users)
        self.keys = self.row * num_items + self.col  # (E,) ascending: rows in order, columns sorted and unique
        self.num_items = num_items
        self.most = int(lens.max()) if lens.numel() else 0  # most excluded items of one user

    def contains(self, items: Tensor) -> Tensor:
        """Whether ``items[b, j]`` is excluded for batch row ``b``: (B, C) bool."""
        if not self.keys.numel():
            return torch.zeros_like(items, dtype=torch.bool)
        keys = torch.arange(items.shape[0], device=items.device).unsqueeze(1) * self.num_items + items  # (B, C)
        at = torch.searchsorted(self.keys, keys).clamp(max=self.keys.numel() - 1)
        return self.keys[at] == keys


def _union_csr(a: Tensor, b: Tensor) -> Tensor:
    """Sparse CSR (on CPU) holding the entries of both a and b, deduplicated."""
    num_users, num_items = a.shape
    rows_a, cols_a = csr_keys(a.cpu())
    rows_b, cols_b = csr_keys(b.cpu())
    keys = torch.unique(torch.cat([rows_a * num_items + cols_a, rows_b * num_items + cols_b]))
    rows = keys // num_items
    crow = torch.cat([rows.new_zeros(1), torch.bincount(rows, minlength=num_users).cumsum(0)])
    values = torch.ones(keys.numel(), dtype=torch.bool)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we only store indices in it
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, keys % num_items, values, (num_users, num_items))


class RankingEvaluator:
    """Mean top-K metrics over users with at least one target, ties counted by their expectation.

    Full ranking by default: every item is scored, the user's ``exclude`` items (and NaN scores) count as
    ``-inf`` (a target that is also excluded is a miss), and each metric is the exact expectation under
    random tie-breaking. With ``num_negatives`` set, each target is ranked among itself and ``num_negatives``
    items drawn uniformly (with replacement, ``seed``-deterministic) from those the user has in neither
    ``exclude`` nor ``targets``; a user's value is then the mean over its targets, and keys carry
    ``[sampled-<num_negatives>]``. Sampled mode scores only those candidates when given a ``candidate_fn``
    (``evaluate_model`` passes the model's ``score_items``).

    Users are scored ``batch_size`` at a time; by default as many as keep one batch's ``(B, N)`` scores (and
    a scorer temporary of the same size) within ``memory_budget`` bytes, at most 4096. The scores returned by
    ``score_fn`` are read, never written nor copied whole: the metrics need only each user's top
    ``max(ks)`` items, found with one ``topk``, and the exact count of items tied with a target at the
    top-k boundary.

    Keys: ``f"{metric}@{k}"`` for metric in ``metrics`` and k in ``ks``, ``f"coverage@{k}"``
    (fraction of the catalogue in at least one evaluated user's top k; full ranking only), and
    ``"num_users"``.

    >>> scores = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    >>> seen = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]]).to_sparse_csr()
    >>> test = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0]]).to_sparse_csr()
    >>> out = RankingEvaluator(ks=(1,), metrics=("hr", "ndcg")).evaluate(lambda u: scores[u], seen, test)
    >>> out
    {'hr@1': 0.5, 'ndcg@1': 0.5, 'coverage@1': 0.5, 'num_users': 2.0}
    """

    requires = "score_users"  # the model method this evaluator calls

    def __init__(
        self,
        ks: Sequence[int] = (5, 10, 20),
        metrics: Sequence[str] = ("hr", "recall", "precision", "ndcg", "mrr", "map"),
        batch_size: int | None = None,
        num_negatives: int | None = None,
        coverage: bool = True,
        seed: int = 0,
        memory_budget: int = 2**30,
    ) -> None:
        self.ks = ks
        self.metrics = metrics
        self.batch_size = batch_size
        self.num_negatives = num_negatives
        self.coverage = coverage
        self.seed = seed
        self.memory_budget = memory_budget
        if not len(ks) or any(not isinstance(k, int) or k < 1 for k in ks):
            raise ConfigError(f"ks must be positive ints, got {list(ks)}", where="RankingEvaluator(ks=...)")
        check_metric_names(list(metrics))
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ConfigError(f"batch_size must be a positive int or None, got {batch_size!r}", where="RankingEvaluator",
                              fix="set eval.batch_size >= 1, or null to size batches from eval.memory_budget")
        if num_negatives is not None and (not isinstance(num_negatives, int) or num_negatives < 1):
            raise ConfigError(
                f"num_negatives must be a positive int or None, got {num_negatives!r}", where="RankingEvaluator"
            )
        if not isinstance(memory_budget, int) or memory_budget < 1:
            raise ConfigError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}",
                              where="RankingEvaluator", fix="e.g. memory_budget=1073741824 (1 GiB)")

    @property
    def suffix(self) -> str:
        """Label appended to every metric key: ``"[sampled-100]"`` in sampled mode, else ``""``."""
        return "" if self.num_negatives is None else f"[sampled-{self.num_negatives}]"

    def metric_names(self) -> list[str]:
        """The metric keys :meth:`evaluate` reports (what ``trainer.monitor`` may name)."""
        names = [f"{m}@{k}{self.suffix}" for m in self.metrics for k in self.ks]
        if self.coverage and self.num_negatives is None:
            names += [f"coverage@{k}" for k in self.ks]
        return names

    def batch_size_for(self, num_items: int) -> int:
        """Users per batch: ``batch_size``, or as many as keep two float32 ``(B, num_items)`` tensors (the scores
        and one scorer temporary) within ``memory_budget``, between 1 and 4096."""
        if self.batch_size is not None:
            return self.batch_size
        return max(1, min(_MAX_BATCH, self.memory_budget // (8 * max(num_items, 1))))

    def evaluate_model(self, model: Recommender, history: Interactions, targets: Interactions,
                       per_user: dict[str, Tensor] | None = None) -> dict[str, float]:
        """Rank all items for every user with held-out ``targets``, masking the items in ``history``.

        In sampled mode only the candidates are scored, with ``model.score_items``.
        The shared evaluator contract: the CLI calls ``evaluate_model`` on every ``eval`` config object.
        ``per_user``: a dict to fill with each user's values (see :meth:`evaluate`).
        """
        model.eval()
        with torch.no_grad():
            return self.evaluate(
                lambda users: model.score_users(users, history),
                exclude=history.user_item_matrix(),
                targets=targets.user_item_matrix(),
                device=model.device,
                per_user=per_user,
                candidate_fn=(lambda users, items: model.score_items(users, items, history))
                if self.num_negatives is not None else None,
            )

    def evaluate(
        self,
        score_fn: Callable[[Tensor], Tensor],
        exclude: Tensor,
        targets: Tensor,
        *,
        device: torch.device | str = "cpu",
        progress: bool = False,
        per_user: dict[str, Tensor] | None = None,
        candidate_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> dict[str, float]:
        """Score users with ``score_fn`` (LongTensor (B,) on ``device`` -> (B, N) scores) and average the metrics.

        ``exclude`` and ``targets`` are sparse CSR (num_users, num_items): items to mask (seen in
        training) and items to find (held out). A ``per_user`` dict is filled with ``"user"`` (the evaluated
        users' indices) and one float64 CPU tensor per metric key: each user's value, what the means average.
        ``candidate_fn`` (users (B,), items (B, C) -> (B, C) scores, equal to the matching columns of
        ``score_fn``): sampled mode scores only each user's targets and negatives with it.
        """
        _check_csr(exclude, "exclude")
        _check_csr(targets, "targets")
        if exclude.shape != targets.shape:
            raise DataError(
                f"exclude {tuple(exclude.shape)} and targets {tuple(targets.shape)} differ in shape",
                where="RankingEvaluator.evaluate",
                fix="build both over the same user and item index",
            )
        device = torch.device(device)
        num_items = targets.shape[1]
        t_crow, t_col = targets.crow_indices().long().to(device), targets.col_indices().long().to(device)
        x_crow, x_col = exclude.crow_indices().long().to(device), exclude.col_indices().long().to(device)
        x_crow, x_col = _canonical_csr(x_crow, x_col, num_items)
        users_all = (t_crow.diff() > 0).nonzero().squeeze(1)  # users with >= 1 target
        num_users = users_all.numel()
        if num_users == 0:
            raise DataError("no user has a target item", where="RankingEvaluator.evaluate(targets=...)")

        sampled = self.num_negatives is not None
        sampler = NegativeSampler(num_items, exclude=_union_csr(exclude, targets)) if sampled else None
        generator = torch.Generator().manual_seed(self.seed)
        names = [(f"{m}@{k}{self.suffix}", METRICS[m], k) for m in self.metrics for k in self.ks]
        sums = torch.zeros(len(names), dtype=torch.float64, device=device)
        cover_ks = [] if sampled or not self.coverage else list(self.ks)
        covered = torch.zeros(len(cover_ks), num_items, dtype=torch.bool, device=device)
        blocks: list[Tensor] = []  # (B, M) per-user values, kept only when per_user is asked for
        top_k = min(max(self.ks), num_items)
        scored = self.num_negatives + 64 if sampled and candidate_fn is not None else num_items  # columns per user
        batch_size = self.batch_size_for(scored)

        starts = range(0, num_users, batch_size)
        for start in progress_bar(starts, desc="evaluate", unit="batch", disable=not progress):
            users = users_all[start : start + batch_size]  # (B,)
            excluded = _Excluded(x_crow, x_col, users, num_items)
            row, offset, cols, lens = _gather_rows(t_crow, t_col, users)
            width = max(int(lens.max()), 1)
            tgt = torch.zeros(users.numel(), width, dtype=torch.long, device=device)  # (B, R)
            mask = torch.zeros(users.numel(), width, dtype=torch.bool, device=device)
            tgt[row, offset] = cols
            mask[row, offset] = True
            if sampled:
                negatives = sampler.sample(users, self.num_negatives, generator=generator)  # (B, S)
                candidates = torch.cat([tgt, negatives], dim=1)  # (B, R + S)
                if candidate_fn is not None:
                    scores = self._checked(candidate_fn(users, candidates), users, candidates.shape[1], "candidate_fn")
                else:
                    scores = self._checked(score_fn(users), users, num_items, "score_fn").gather(1, candidates)
                ranks = self._sampled_ranks(scores, excluded.contains(tgt), mask)
                values = [fn(ranks, k).view_as(mask).where(mask, 0.0).sum(1) / lens for _, fn, k in names]
            else:
                scores = self._checked(score_fn(users), users, num_items, "score_fn")  # (B, N), read only
                top_values, top_items = self._top(scores, excluded, top_k)  # (B, K)
                ranks = self._full_ranks(scores, excluded, top_values, tgt, mask)
                values = [fn(ranks, k) for _, fn, k in names]
                for i, k in enumerate(cover_ks):  # loop over cutoffs, not users
                    covered[i, top_items[:, :k][top_values[:, :k] > float("-inf")]] = True
            sums += torch.stack([v.sum() for v in values]) if values else 0.0
            if per_user is not None and values:
                blocks.append(torch.stack(values, 1).double().cpu())
            del scores

        result = {name: float(total) / num_users for (name, _, _), total in zip(names, sums.tolist())}
        for i, k in enumerate(cover_ks):
            result[f"coverage@{k}"] = covered[i].sum().item() / num_items
        result["num_users"] = float(num_users)
        if per_user is not None:
            table = torch.cat(blocks) if blocks else torch.zeros(num_users, 0, dtype=torch.float64)
            per_user["user"] = users_all.cpu()
            per_user.update({name: table[:, i] for i, (name, _, _) in enumerate(names)})
        return result

    @staticmethod
    def _checked(scores: Tensor, users: Tensor, columns: int, name: str) -> Tensor:
        """``scores`` (B, columns) as floats on the device of ``users``; the caller's tensor itself when it already is."""
        if not isinstance(scores, Tensor) or scores.shape != (users.numel(), columns):
            shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise DataError(
                f"{name} returned {shape}, expected ({users.numel()}, {columns})",
                where=f"RankingEvaluator.evaluate({name}=...)",
                fix="return one score per item for every user in the batch",
            )
        scores = scores.detach().to(users.device)
        return scores if scores.is_floating_point() else scores.float()

    def _rows(self, num_items: int) -> int:
        """Rows per chunk of the row-wise fallbacks: an eighth of ``memory_budget`` as float32."""
        return max(1, self.memory_budget // (32 * max(num_items, 1)))

    def _top(self, scores: Tensor, excluded: _Excluded, k: int) -> tuple[Tensor, Tensor]:
        """The ``k`` highest scores of each row and their items, both (B, k), excluded items and NaN left out.

        One ``topk`` of ``k`` plus up to 54 slots over the scores as they are; a row whose excluded items or NaN
        take more of those slots than the slack is masked on a copy of that row (chunks of rows) instead.
        """
        num_items = scores.shape[1]
        width = min(k + min(excluded.most, _SLACK), num_items)
        top = scores.topk(width, dim=1)  # (B, W), NaN first
        dropped = excluded.contains(top.indices) | top.values.isnan()
        values = top.values.masked_fill(dropped, float("-inf"))
        best = values.topk(k, dim=1)  # (B, k), still descending
        best_values, best_items = best.values, top.indices.gather(1, best.indices)
        if width < num_items:
            short = (dropped.sum(1) > width - k).nonzero().squeeze(1)  # rows whose top k may lie past the slots
            for chunk in short.split(self._rows(num_items)):  # chunks of rows, not one user at a time
                part = scores.index_select(0, chunk)  # (C, N), a copy
                rows = torch.full((scores.shape[0],), -1, dtype=torch.long, device=scores.device)
                rows[chunk] = torch.arange(chunk.numel(), device=scores.device)
                hit = rows[excluded.row] >= 0
                part[rows[excluded.row[hit]], excluded.col[hit]] = float("-inf")
                part.masked_fill_(part.isnan(), float("-inf"))
                fixed = part.topk(k, dim=1)
                best_values[chunk], best_items[chunk] = fixed.values, fixed.indices
        return best_values, best_items

    def _full_ranks(self, scores: Tensor, excluded: _Excluded, top_values: Tensor, tgt: Tensor, mask: Tensor) -> TieRanks:
        """Each target's place in its user's full ranking, exact up to ``k = top_values.shape[1]``."""
        tgt_scores = scores.gather(1, tgt)  # (B, R)
        valid = mask & (tgt_scores > float("-inf")) & ~excluded.contains(tgt)  # NaN compares False: a miss
        kth = top_values[:, -1]  # (B,)
        ties = torch.zeros_like(kth, dtype=torch.long)
        need = (valid & (tgt_scores == kth.unsqueeze(1))).any(1)  # a target tied with the k-th score
        rows = need.nonzero().squeeze(1)
        if rows.numel():  # count the whole tie group: all items with that score, less the excluded ones
            for chunk in rows.split(self._rows(scores.shape[1])):  # chunks of those rows, not one user at a time
                ties[chunk] = (scores.index_select(0, chunk) == kth[chunk, None]).sum(1)
            if excluded.row.numel():
                same = scores[excluded.row, excluded.col] == kth[excluded.row]
                ties -= torch.bincount(excluded.row[same], minlength=ties.numel())
        return top_k_tie_ranks(top_values, tgt_scores, valid, mask.sum(1), ties, scores.shape[1])

    def _sampled_ranks(self, scores: Tensor, excluded_targets: Tensor, mask: Tensor) -> TieRanks:
        """Each target ranked among itself and the user's sampled negatives, one row per target: (B * R, 1).

        ``scores`` (B, R + S): the targets' then the negatives' scores; an excluded target, NaN and ``-inf``
        score as ``-inf`` (a target there is a miss), as in full ranking.
        """
        width = mask.shape[1]
        scores = scores.masked_fill(scores.isnan(), float("-inf"))  # (B, R + S), a small copy
        tgt_scores = scores[:, :width].masked_fill(excluded_targets, float("-inf"))  # (B, R)
        neg_scores = scores[:, width:].sort(dim=1).values  # (B, S) ascending
        below_or_equal = torch.searchsorted(neg_scores, tgt_scores, right=True)
        below = torch.searchsorted(neg_scores, tgt_scores)
        valid = mask & (tgt_scores > float("-inf"))
        greater = (self.num_negatives - below_or_equal).double().where(valid, 0.0)
        equal = (1 + below_or_equal - below).double().where(valid, 1.0)
        ones = torch.ones(valid.numel(), dtype=torch.float64, device=valid.device)
        return TieRanks(greater.reshape(-1, 1), equal.reshape(-1, 1), valid.reshape(-1, 1), ones)
