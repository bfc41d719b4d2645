"""Word2vec's data side, vectorized in torch: subsampling, the noise distribution, window contexts.

A corpus here is a flat token tensor ``tokens (n,)`` (vocabulary indices) with ``offsets
(S + 1,)`` marking where each of the ``S`` sentences (user sequences, sessions, baskets) starts.
Every function works on whole tensors, CPU or CUDA; randomness comes from an injected generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.errors import ConfigError

__all__ = ["AliasSampler", "draw_reach", "keep_probabilities", "noise_distribution", "pack_contexts", "sentence_ids", "window_contexts"]


def keep_probabilities(counts: Tensor, sample: float) -> Tensor:
    """Probability of keeping each occurrence of a token (word2vec's subsampling of frequent words).

    With ``t = sample * total`` (``total`` = corpus size) a token seen ``c`` times is kept with
    probability ``min(1, (sqrt(c / t) + 1) * t / c)``: the formula of word2vec.c and gensim.
    ``sample <= 0`` keeps everything.

    >>> [round(p, 4) for p in keep_probabilities(torch.tensor([1000, 10, 1]), sample=1e-3).tolist()]  # t = 1.011
    [0.0328, 0.4191, 1.0]
    """
    counts = counts.double()
    if sample <= 0:
        return torch.ones_like(counts)
    threshold = sample * counts.sum()
    ratio = counts.clamp_min(1) / threshold
    return ((ratio.sqrt() + 1) / ratio).clamp_max(1.0)


def noise_distribution(counts: Tensor, exponent: float = 0.75) -> Tensor:
    """Negative-sampling distribution ``counts ** exponent`` normalized to sum 1 (word2vec's unigram^0.75).

    >>> noise_distribution(torch.tensor([16, 1]), exponent=0.5).tolist()
    [0.8, 0.2]
    """
    weights = counts.double().pow(exponent)
    return weights / weights.sum()


class AliasSampler:
    """O(1) sampling from a discrete distribution (Walker's alias method), built without a Python loop per item.

    Each draw is one uniform bucket and one coin flip: bucket ``i`` keeps ``i`` with probability
    ``prob[i]``, else returns ``alias[i]``. The table is built by Vose's pairing of under-full and
    over-full buckets, done for all buckets of a round at once (cumulative sums assign the
    under-full buckets to over-full ones), so a round costs a few vector ops.

    >>> sampler = AliasSampler(torch.tensor([0.5, 0.25, 0.25]))
    >>> sampler.probabilities().tolist()
    [0.5, 0.25, 0.25]
    >>> sampler.sample((4,), torch.Generator().manual_seed(0)).shape
    torch.Size([4])
    """

    def __init__(self, probs: Tensor) -> None:
        probs = probs.double().cpu()
        if probs.dim() != 1 or len(probs) == 0 or bool((probs < 0).any()) or float(probs.sum()) <= 0:
            raise ConfigError("sampling weights must be a non-empty 1-D tensor of non-negative numbers, not all zero", where="AliasSampler")
        n = len(probs)
        scaled = probs / probs.sum() * n  # bucket mass, 1 = exactly full
        prob = torch.ones(n, dtype=torch.float64)
        alias = torch.arange(n)
        small = (scaled < 1).nonzero().squeeze(1)
        large = (scaled >= 1).nonzero().squeeze(1)
        while len(small) and len(large):
            deficit = 1 - scaled[small]
            excess = scaled[large] - 1
            starts = deficit.cumsum(0) - deficit  # each under-full bucket takes [start, start + deficit) ...
            owner = torch.searchsorted(excess.cumsum(0), starts, right=True).clamp_max(len(large) - 1)
            giver = large[owner]  # ... from the over-full bucket whose excess interval holds its start
            prob[small] = scaled[small]
            alias[small] = giver
            scaled.index_add_(0, giver, -deficit)
            touched = torch.unique(giver)
            untouched = large[~torch.isin(large, touched)]
            small = touched[scaled[touched] < 1]
            large = torch.cat([untouched, touched[scaled[touched] >= 1]])
        # leftovers are full up to rounding error
        self.prob = prob.float()
        self.alias = alias

    def probabilities(self) -> Tensor:
        """The distribution the table samples from, ``(n,)`` float64 (for checks)."""
        n = len(self.prob)
        prob = self.prob.double()
        out = prob.clone()
        out.index_add_(0, self.alias, 1 - prob)
        return out / n

    def to(self, device: torch.device | str) -> AliasSampler:
        self.prob, self.alias = self.prob.to(device), self.alias.to(device)
        return self

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
        """Indices drawn independently, ``shape`` long tensor on the table's device."""
        device = self.prob.device
        bucket = torch.randint(len(self.prob), shape, generator=generator, device=device)
        coin = torch.rand(shape, generator=generator, device=device)
        return torch.where(coin < self.prob[bucket], bucket, self.alias[bucket])


def draw_reach(num_centers: int, window: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """Word2vec's dynamic window: each center's reach drawn uniformly from ``1..window``, ``(C,)`` long."""
    return torch.randint(1, window + 1, (num_centers,), generator=generator, device=device)


def sentence_ids(offsets: Tensor) -> Tensor:
    """Sentence of every token, ``(n,)`` long, from ``offsets (S + 1,)``.

    >>> sentence_ids(torch.tensor([0, 2, 2, 5])).tolist()
    [0, 0, 2, 2, 2]
    """
    lengths = offsets.diff()
    return torch.repeat_interleave(torch.arange(len(lengths), device=offsets.device), lengths, output_size=int(offsets[-1]))


def window_contexts(
    tokens: Tensor,
    sentence: Tensor,
    centers: Tensor,
    window: int,
    padding: int,
    reach: Tensor | None = None,
    basket: bool = False,
    generator: torch.Generator | None = None,
    bounds: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Context tokens of each center position, ``(C, 2 * window)`` long, ``padding`` where there is none.

    ``tokens (n,)`` and ``sentence (n,)`` describe the (already subsampled) corpus; ``centers (C,)``
    are positions in it. Window mode (word2vec): the neighbours at distance ``1..reach`` on both
    sides within the same sentence; word2vec's dynamic window draws ``reach (C,)`` uniformly from
    ``1..window`` (see :func:`draw_reach`), None means ``window``. Columns are ordered by offset
    ``-window..-1, 1..window``, so a batch whose reach is at most ``r`` needs only the middle
    ``2 * r`` columns. Basket mode (item2vec over item sets): ``2 * window`` partners drawn
    uniformly, with replacement, from the rest of the center's sentence (``bounds`` = (start, end)
    of every sentence, needed in this mode).

    >>> tokens, sentence = torch.tensor([5, 6, 7, 8]), torch.tensor([0, 0, 0, 1])
    >>> window_contexts(tokens, sentence, torch.arange(4), window=1, padding=-1).tolist()
    [[-1, 6], [5, 7], [6, -1], [-1, -1]]
    """
    n = len(tokens)
    if basket:
        if bounds is None:
            raise ConfigError("basket contexts need the sentence bounds", where="window_contexts", fix="pass bounds=(starts, ends)")
        start, end = (b[sentence[centers]] for b in bounds)
        others = (end - start - 1).unsqueeze(1)  # (C, 1) partners available
        draw = (torch.rand((len(centers), 2 * window), generator=generator, device=tokens.device) * others).long()
        position = start.unsqueeze(1) + draw
        position = position + (position >= centers.unsqueeze(1)).long()  # skip the center itself
        return torch.where(others > 0, tokens[position.clamp_max(n - 1)], padding)
    offsets = torch.cat([torch.arange(-window, 0), torch.arange(1, window + 1)]).to(tokens.device)  # (2W,)
    position = centers.unsqueeze(1) + offsets  # (C, 2W)
    inside = (position >= 0) & (position < n)
    position = position.clamp(0, n - 1)
    valid = inside & (sentence[position] == sentence[centers].unsqueeze(1))
    if reach is not None:
        valid &= offsets.abs() <= reach.unsqueeze(1)
    return torch.where(valid, tokens[position], padding)


def pack_contexts(context: Tensor, padding: int) -> tuple[Tensor, Tensor]:
    """Move each row's real contexts to its front, in their order: ``(packed (C, W), counts (C,))``.

    Rows sorted by ``counts`` can then be batched with only ``max(counts)`` columns, instead of
    the widest window's, so fewer padding slots are gathered and multiplied.

    >>> packed, counts = pack_contexts(torch.tensor([[-1, 5, -1, 6], [7, -1, -1, -1]]), padding=-1)
    >>> packed.tolist(), counts.tolist()
    ([[5, 6, -1, -1], [7, -1, -1, -1]], [2, 1])
    """
    valid = context != padding  # (C, W)
    counts = valid.sum(1)  # (C,)
    before = valid.cumsum(1)  # real contexts up to and including each column
    column = torch.arange(context.shape[1], device=context.device)
    destination = torch.where(valid, before - 1, counts.unsqueeze(1) + column - before)  # (C, W), a permutation per row
    return torch.full_like(context, padding).scatter_(1, destination, context), counts
