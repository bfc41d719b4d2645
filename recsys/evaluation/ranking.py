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
from recsys.evaluation.metrics import METRICS, TieRanks, check_metric_names, tie_ranks
from recsys.runtime import progress_bar

__all__ = ["RankingEvaluator"]


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

    Full ranking by default: every item is scored, the user's ``exclude`` items are set to ``-inf``
    (a target that is also excluded stays ``-inf``: a miss), and each metric is the exact
    expectation under random tie-breaking. With ``num_negatives`` set, each target is ranked among
    itself and ``num_negatives`` items drawn uniformly (with replacement, ``seed``-deterministic) from
    those the user has in neither ``exclude`` nor ``targets``; a user's value is then the mean over
    its targets, and keys carry ``[sampled-<num_negatives>]``.

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
        batch_size: int = 1024,
        num_negatives: int | None = None,
        coverage: bool = True,
        seed: int = 0,
    ) -> None:
        self.ks = ks
        self.metrics = metrics
        self.batch_size = batch_size
        self.num_negatives = num_negatives
        self.coverage = coverage
        self.seed = seed
        if not len(ks) or any(not isinstance(k, int) or k < 1 for k in ks):
            raise ConfigError(f"ks must be positive ints, got {list(ks)}", where="RankingEvaluator(ks=...)")
        check_metric_names(list(metrics))
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}", where="RankingEvaluator")
        if num_negatives is not None and (not isinstance(num_negatives, int) or num_negatives < 1):
            raise ConfigError(
                f"num_negatives must be a positive int or None, got {num_negatives!r}", where="RankingEvaluator"
            )

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

    def evaluate_model(self, model: Recommender, history: Interactions, targets: Interactions,
                       per_user: dict[str, Tensor] | None = None) -> dict[str, float]:
        """Rank all items for every user with held-out ``targets``, masking the items in ``history``.

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
    ) -> dict[str, float]:
        """Score users with ``score_fn`` (LongTensor (B,) on ``device`` -> (B, N) scores) and average the metrics.

        ``exclude`` and ``targets`` are sparse CSR (num_users, num_items): items to mask (seen in
        training) and items to find (held out). A ``per_user`` dict is filled with ``"user"`` (the evaluated
        users' indices) and one float64 CPU tensor per metric key: each user's value, what the means average.
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

        starts = range(0, num_users, self.batch_size)
        for start in progress_bar(starts, desc="evaluate", unit="batch", disable=not progress):
            users = users_all[start : start + self.batch_size]  # (B,)
            scores = self._scores(score_fn, users, x_crow, x_col, num_items)  # (B, N), excluded at -inf
            row, offset, cols, lens = _gather_rows(t_crow, t_col, users)
            width = max(int(lens.max()), 1)
            tgt = torch.zeros(users.numel(), width, dtype=torch.long, device=device)  # (B, R)
            mask = torch.zeros(users.numel(), width, dtype=torch.bool, device=device)
            tgt[row, offset] = cols
            mask[row, offset] = True
            if sampled:
                ranks = self._sampled_ranks(scores, users, tgt, mask, sampler, generator)
                values = [fn(ranks, k).view_as(mask).where(mask, 0.0).sum(1) / lens for _, fn, k in names]
            else:
                ranks = tie_ranks(scores, tgt, mask)
                values = [fn(ranks, k) for _, fn, k in names]
            sums += torch.stack([v.sum() for v in values]) if values else 0.0
            if per_user is not None and values:
                blocks.append(torch.stack(values, 1).double().cpu())
            if cover_ks:
                top = scores.topk(min(max(cover_ks), num_items), dim=1)  # (B, K)
                for i, k in enumerate(cover_ks):  # loop over cutoffs, not users
                    hit = top.indices[:, :k][top.values[:, :k] > float("-inf")]
                    covered[i, hit] = True

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
    def _scores(
        score_fn: Callable[[Tensor], Tensor], users: Tensor, x_crow: Tensor, x_col: Tensor, num_items: int
    ) -> Tensor:
        """Scores (B, N) on the device of ``users``: a fresh tensor with NaN and the excluded items at -inf."""
        scores = score_fn(users)
        if not isinstance(scores, Tensor) or scores.shape != (users.numel(), num_items):
            shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise DataError(
                f"score_fn returned {shape}, expected ({users.numel()}, {num_items})",
                where="RankingEvaluator.evaluate(score_fn=...)",
                fix="return one score per item for every user in the batch",
            )
        scores = scores.detach().to(users.device)
        if not scores.is_floating_point():
            scores = scores.float()
        row, _, cols, _ = _gather_rows(x_crow, x_col, users)
        scores = scores.index_put((row, cols), scores.new_tensor(float("-inf")))  # copy: never touch the caller's
        return scores.nan_to_num_(nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))

    def _sampled_ranks(
        self,
        scores: Tensor,
        users: Tensor,
        tgt: Tensor,
        mask: Tensor,
        sampler: NegativeSampler,
        generator: torch.Generator,
    ) -> TieRanks:
        """Each target ranked among itself and the user's sampled negatives, one row per target: (B * R, 1)."""
        negatives = sampler.sample(users, self.num_negatives, generator=generator)  # (B, S)
        neg_scores = scores.gather(1, negatives).sort(dim=1).values  # (B, S) ascending
        tgt_scores = scores.gather(1, tgt)  # (B, R)
        below_or_equal = torch.searchsorted(neg_scores, tgt_scores, right=True)
        below = torch.searchsorted(neg_scores, tgt_scores)
        valid = mask & (tgt_scores > float("-inf"))
        greater = (self.num_negatives - below_or_equal).double().where(valid, 0.0)
        equal = (1 + below_or_equal - below).double().where(valid, 1.0)
        ones = torch.ones(valid.numel(), dtype=torch.float64, device=valid.device)
        return TieRanks(greater.reshape(-1, 1), equal.reshape(-1, 1), valid.reshape(-1, 1), ones)
