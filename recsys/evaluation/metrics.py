"""Tie-aware top-K ranking metrics: exact expectations under random tie-breaking, vectorized in torch.

Each target ``j`` of a user is summarised by ``g_j`` (items scored strictly higher) and ``e_j`` (items
scored equal, itself included): under random tie-breaking its 0-based position is uniform on
``[g_j, g_j + e_j)``. Every metric below is the exact expectation of its usual strict-ranking value,
computed in closed form with prefix sums: no sampling of tie-breaks, no Python loop per user.
A target whose score is ``-inf`` or NaN (excluded or unscorable) is a miss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from recsys.errors import ConfigError, DataError

__all__ = [
    "METRICS",
    "TieRanks",
    "average_precision_at_k",
    "hit_rate_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "tie_ranks",
    "top_k_tie_ranks",
]


@dataclass(frozen=True)
class TieRanks:
    """Where each target falls in its user's ranking, as float64 tensors.

    ``greater`` / ``equal`` (B, R): items scored strictly higher / equal (itself included);
    ``valid`` (B, R): masked-in targets with a finite score (the others are misses);
    ``num_targets`` (B,): masked-in targets per user, the denominator of recall, NDCG and MAP.

    >>> r = tie_ranks(torch.tensor([[3.0, 1.0, 1.0, 0.0]]), torch.tensor([[1]]))
    >>> r.greater.tolist(), r.equal.tolist()
    ([[1.0]], [[2.0]])
    """

    greater: Tensor
    equal: Tensor
    valid: Tensor
    num_targets: Tensor


_COMPARE_MAX_TARGETS = 8


def tie_ranks(scores: Tensor, targets: Tensor, mask: Tensor | None = None) -> TieRanks:
    """Count, for each target, the items scored above it and tied with it.

    Up to 8 targets per row are counted by comparison (O(N) each, summed as int32, never copying
    ``scores``); more use one sort per row plus ``searchsorted``.

    ``scores`` (B, N) with excluded items at ``-inf`` (NaN is treated as ``-inf``); ``targets`` (B, R)
    item indices, padded; ``mask`` (B, R) bool, True for real targets (default: all).
    """
    if scores.dim() != 2 or targets.dim() != 2 or targets.shape[0] != scores.shape[0]:
        raise DataError(
            f"expected scores (B, N) and targets (B, R), got {tuple(scores.shape)} and {tuple(targets.shape)}",
            where="tie_ranks",
        )
    if mask is None:
        mask = torch.ones_like(targets, dtype=torch.bool)
    if mask.shape != targets.shape:
        raise DataError(f"mask shape {tuple(mask.shape)} != targets shape {tuple(targets.shape)}", where="tie_ranks")
    mask = mask.to(torch.bool)
    num_items = scores.shape[1]
    targets = torch.where(mask, targets.long(), 0)
    if targets.numel() and (targets.min() < 0 or targets.max() >= num_items):
        raise DataError(
            f"target item ids must lie in [0, {num_items})", where="tie_ranks", fix="check the item mapping"
        )
    target_scores = scores.gather(1, targets)  # (B, R)
    valid = mask & (target_scores > float("-inf"))  # NaN compares False: a miss
    if targets.shape[1] <= _COMPARE_MAX_TARGETS:  # few targets (leave-one-out): O(N) counting per target slot
        # a NaN item is neither above nor tied with a valid target: no NaN -> -inf copy of the scores is needed
        above = torch.stack([(scores > target_scores[:, r, None]).sum(1, dtype=torch.int32)
                             for r in range(targets.shape[1])], 1) if targets.shape[1] else valid.int()
        tied = torch.stack([(scores == target_scores[:, r, None]).sum(1, dtype=torch.int32)
                            for r in range(targets.shape[1])], 1) if targets.shape[1] else valid.int()
    else:  # many targets: one sort per row, then binary search
        ordered = torch.where(scores.isnan(), float("-inf"), scores).sort(dim=1).values  # (B, N) ascending
        below_or_equal = torch.searchsorted(ordered, target_scores, right=True)
        above, tied = num_items - below_or_equal, below_or_equal - torch.searchsorted(ordered, target_scores)
    greater = torch.where(valid, above, num_items).double()
    equal = torch.where(valid, tied, 1).double()
    return TieRanks(greater, equal, valid, mask.sum(dim=1).double())


def top_k_tie_ranks(top_values: Tensor, target_scores: Tensor, valid: Tensor, num_targets: Tensor,
                    kth_ties: Tensor, num_items: int) -> TieRanks:
    """:class:`TieRanks` from each user's K highest scores, exact for every metric at k <= K.

    ``top_values`` (B, K): the K highest scores per row, descending, excluded items and NaN left out
    (``-inf`` pads rows with fewer than K scorable items); ``target_scores`` (B, R); ``valid`` (B, R): real
    targets with a finite score; ``num_targets`` (B,); ``kth_ties`` (B,): how many items score exactly
    ``top_values[:, -1]``, read only in rows where a valid target does. A target scored above the K-th value
    has all its higher and tied items in the top K, so both counts are exact; one tied with the K-th value
    has its ``greater`` exact and ``equal = kth_ties``; one below it has at least K items above it, counts
    nothing at any k <= K, and is reported as ``greater = K``, ``equal = 1``.

    >>> r = top_k_tie_ranks(torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[True, True]]),
    ...                     torch.tensor([2.0]), kth_ties=torch.tensor([2]), num_items=4)
    >>> r.greater.tolist(), r.equal.tolist()
    ([[1.0, 2.0]], [[2.0, 1.0]])
    """
    k = top_values.shape[1]
    kth = top_values[:, -1:]  # (B, 1)
    queries = torch.where(valid, target_scores, kth)  # invalid targets (NaN) never reach the binary search
    ascending = top_values.flip(1).contiguous()
    below_or_equal = torch.searchsorted(ascending, queries, right=True)
    above, tied = k - below_or_equal, below_or_equal - torch.searchsorted(ascending, queries)  # (B, R)
    tied = torch.where(queries == kth, kth_ties.view(-1, 1).to(tied.dtype), tied)
    beyond = queries < kth
    greater = torch.where(valid, torch.where(beyond, k, above), num_items).double()
    equal = torch.where(valid & ~beyond, tied, 1).double()
    return TieRanks(greater, equal, valid, num_targets.double())


def _discounts(k: int, device: torch.device) -> Tensor:
    """D[x] = sum_{p < x} 1 / log2(p + 2), for x in [0, k]: (k + 1,) float64."""
    steps = 1.0 / torch.log2(torch.arange(k, device=device, dtype=torch.float64) + 2.0)
    return torch.cat([steps.new_zeros(1), steps.cumsum(0)])


def _harmonic(k: int, device: torch.device) -> Tensor:
    """H[x] = sum_{p=1}^{x} 1 / p, for x in [0, k]: (k + 1,) float64."""
    steps = 1.0 / torch.arange(1, k + 1, device=device, dtype=torch.float64)
    return torch.cat([steps.new_zeros(1), steps.cumsum(0)])


def _log_comb(n: Tensor, r: Tensor) -> Tensor:
    """log C(n, r) for 0 <= r <= n (other entries are garbage; mask them)."""
    n, r = n.clamp(min=0), r.clamp(min=0)
    return torch.lgamma(n + 1) - torch.lgamma(r + 1) - torch.lgamma((n - r).clamp(min=0) + 1)


def _expected_hits(r: TieRanks, k: int) -> Tensor:
    """P(target j in top k) = clamp(k - g, 0, e) / e, zero for invalid targets: (B, R)."""
    hits = torch.minimum((k - r.greater).clamp(min=0), r.equal) / r.equal
    return torch.where(r.valid, hits, 0.0)


def recall_at_k(r: TieRanks, k: int) -> Tensor:
    """E[#targets in top k] / #targets, per user: (B,)."""
    return _expected_hits(r, k).sum(dim=1) / r.num_targets.clamp(min=1)


def precision_at_k(r: TieRanks, k: int) -> Tensor:
    """E[#targets in top k] / k, per user: (B,)."""
    return _expected_hits(r, k).sum(dim=1) / k


def ndcg_at_k(r: TieRanks, k: int) -> Tensor:
    """E[DCG@k] / IDCG(min(#targets, k)) with binary gains, per user: (B,)."""
    disc = _discounts(k, r.greater.device)
    upper = (r.greater + r.equal).clamp(max=k).long()
    lower = r.greater.clamp(max=k).long()
    dcg = torch.where(r.valid, (disc[upper] - disc[lower]) / r.equal, 0.0).sum(dim=1)
    idcg = disc[r.num_targets.clamp(max=k).long()]
    return torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), 0.0)


def hit_rate_at_k(r: TieRanks, k: int) -> Tensor:
    """P(at least one target in top k), per user: (B,).

    A sure hit when a whole tie group holding a target fits in the top k; otherwise only the group
    straddling position k (size m, c targets, s = k - g of its slots in the top k) can hit, and
    P(miss) = C(m - c, s) / C(m, s).
    """
    g, e = r.greater, r.equal
    sure = (r.valid & (g + e <= k)).any(dim=1)
    straddle = r.valid & (g < k) & (g + e > k)
    c = straddle.sum(dim=1).double()
    m = torch.where(straddle, e, 0.0).amax(dim=1)
    s = k - torch.where(straddle, g, 0.0).amax(dim=1)
    possible = (c > 0) & (m - c >= s)
    p_miss = torch.where(possible, torch.exp(_log_comb(m - c, s) - _log_comb(m, s)), 0.0)
    return torch.where(sure, 1.0, torch.where(c > 0, 1.0 - p_miss, 0.0))


def reciprocal_rank_at_k(r: TieRanks, k: int) -> Tensor:
    """E[1 / (first + 1) * 1[first < k]], first = position of the best-ranked target, per user: (B,).

    The best tie group holding targets starts at a, has m slots and c targets; the first target's
    offset X in it is the min of c random distinct slots, P(X >= x) = C(m - x, c) / C(m, c).
    """
    g = torch.where(r.valid, r.greater, math.inf)
    a = g.amin(dim=1, keepdim=True)  # (B, 1)
    top = r.valid & (g == a)
    c = top.sum(dim=1, keepdim=True).double()
    m = torch.where(top, r.equal, 0.0).amax(dim=1, keepdim=True)
    x = torch.arange(k + 1, device=g.device, dtype=torch.float64)  # (K + 1,)
    log_total = _log_comb(m, c)
    at_least = torch.where(m - x >= c, torch.exp(_log_comb(m - x, c) - log_total), 0.0)  # (B, K + 1)
    exactly = at_least[:, :-1] - at_least[:, 1:]  # (B, K)
    a = torch.where(c > 0, a, float(k))
    terms = torch.where(x[:-1] < k - a, exactly / (a + x[:-1] + 1), 0.0)
    return torch.where(c[:, 0] > 0, terms.sum(dim=1), 0.0)


def average_precision_at_k(r: TieRanks, k: int) -> Tensor:
    """E[AP@k], AP@k = sum_{j in top k} (1 + #targets above j) / (pos_j + 1) / min(#targets, k), per user: (B,).

    For target j at slot u of its group (start g, size e, c targets, A targets in higher groups) the
    expected number of same-group targets above it is (c - 1) u / (e - 1); summing over
    u < min(e, k - g) gives a closed form in harmonic numbers.
    """
    g, e = r.greater, r.equal
    key = torch.where(r.valid, g, math.inf)
    ordered = key.sort(dim=1).values
    above = torch.searchsorted(ordered, key).double()  # A_j: valid targets in strictly higher groups
    c = torch.searchsorted(ordered, key, right=True).double() - above  # targets in j's group
    harm = _harmonic(k, g.device)
    slots = torch.minimum(e, k - g).clamp(min=0)  # L: slots of the group inside the top k
    start = g.clamp(max=k)
    d_harm = harm[(start + slots).long()] - harm[start.long()]  # sum_{u<L} 1 / (g + u + 1)
    same = torch.where(e > 1, (c - 1) / (e - 1).clamp(min=1), 0.0) * (slots - (g + 1) * d_harm)
    expected = torch.where(r.valid, ((1 + above) * d_harm + same) / e, 0.0)
    return expected.sum(dim=1) / r.num_targets.clamp(min=1, max=k)


METRICS: dict[str, Callable[[TieRanks, int], Tensor]] = {
    "hr": hit_rate_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "ndcg": ndcg_at_k,
    "mrr": reciprocal_rank_at_k,
    "map": average_precision_at_k,
}


def check_metric_names(names: tuple[str, ...] | list[str]) -> None:
    """Raise ConfigError on a metric name not in METRICS."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(f"unknown ranking metrics {unknown}", where="metrics", fix=f"choose from {sorted(METRICS)}")
