"""Word2vec's data side: subsampling and noise formulas, the alias sampler, window contexts."""

from __future__ import annotations

import math

import pytest
import torch

from recsys.data.skipgram import (
    AliasSampler,
    draw_reach,
    keep_probabilities,
    noise_distribution,
    pack_contexts,
    sentence_ids,
    window_contexts,
)
from recsys.errors import ConfigError


def test_keep_probabilities_match_word2vec_formula() -> None:
    counts = torch.tensor([5000, 300, 40, 1])
    sample = 1e-3
    t = sample * 5341
    expected = [min(1.0, (math.sqrt(c / t) + 1) * t / c) for c in counts.tolist()]
    assert keep_probabilities(counts, sample).tolist() == pytest.approx(expected, rel=1e-12)
    assert expected[0] < 0.2 and expected[-1] == 1.0
    assert keep_probabilities(counts, 0.0).tolist() == [1.0] * 4


def test_noise_distribution_is_unigram_to_the_075() -> None:
    counts = torch.tensor([81, 16, 1, 0])
    weights = [c**0.75 for c in counts.tolist()]
    expected = [w / sum(weights) for w in weights]
    assert noise_distribution(counts).tolist() == pytest.approx(expected, rel=1e-12)
    assert noise_distribution(counts, exponent=0.0).tolist() == pytest.approx([0.25] * 4)


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_alias_table_reproduces_the_distribution_exactly(n: int) -> None:
    gen = torch.Generator().manual_seed(n)
    weights = torch.arange(1, n + 1, dtype=torch.float64).pow(-1.2)[torch.randperm(n, generator=gen)]
    if n > 2:
        weights[0] = 0.0  # a token that must never be drawn
    probs = weights / weights.sum()
    sampler = AliasSampler(probs)
    assert torch.allclose(sampler.probabilities(), probs, atol=1e-6)
    draws = sampler.sample((200_000,), gen)
    frequencies = torch.bincount(draws, minlength=n).double() / len(draws)
    assert (frequencies - probs).abs().max() < 5 * math.sqrt(probs.max() / len(draws)) + 1e-9
    if n > 2:
        assert int((draws == 0).sum()) == 0


def test_alias_table_for_one_dominant_token() -> None:
    probs = torch.tensor([0.97] + [0.0001] * 300, dtype=torch.float64)
    sampler = AliasSampler(probs)
    assert torch.allclose(sampler.probabilities(), probs / probs.sum(), atol=1e-6)


def test_alias_rejects_bad_weights() -> None:
    with pytest.raises(ConfigError, match="non-negative"):
        AliasSampler(torch.tensor([0.5, -0.1]))


def test_sentence_ids_and_windows_by_hand() -> None:
    offsets = torch.tensor([0, 4, 6])
    sentence = sentence_ids(offsets)
    assert sentence.tolist() == [0, 0, 0, 0, 1, 1]
    tokens = torch.tensor([10, 11, 12, 13, 20, 21])
    out = window_contexts(tokens, sentence, torch.tensor([0, 2, 4]), window=2, padding=-1)
    # columns are offsets -2, -1, +1, +2
    assert out.tolist() == [[-1, -1, 11, 12], [10, 11, 13, -1], [-1, -1, 21, -1]]
    reach = torch.tensor([1, 1, 2])
    out = window_contexts(tokens, sentence, torch.tensor([0, 2, 4]), window=2, padding=-1, reach=reach)
    assert out.tolist() == [[-1, -1, 11, -1], [-1, 11, 13, -1], [-1, -1, 21, -1]]


def test_dynamic_window_reach_is_uniform() -> None:
    reach = draw_reach(50_000, 5, torch.Generator().manual_seed(0))
    assert reach.min() == 1 and reach.max() == 5
    assert torch.bincount(reach)[1:].double().div(50_000).sub(0.2).abs().max() < 0.01


def test_basket_contexts_stay_in_the_sentence_and_skip_the_center() -> None:
    offsets = torch.tensor([0, 3, 4, 9])
    sentence = sentence_ids(offsets)
    tokens = torch.arange(9) * 10
    starts, ends = offsets[:-1], offsets[1:]
    centers = torch.arange(9)
    out = window_contexts(tokens, sentence, centers, window=20, padding=-1, basket=True,
                          generator=torch.Generator().manual_seed(0), bounds=(starts, ends))
    assert out.shape == (9, 40)
    assert (out[3] == -1).all()  # a sentence of one item has no partners
    for c in [0, 1, 2, 4, 5, 8]:
        s = int(sentence[c])
        allowed = set(tokens[int(starts[s]) : int(ends[s])].tolist()) - {int(tokens[c])}
        assert set(out[c].tolist()) == allowed  # 40 draws cover every partner, never the center


def test_pack_contexts_equals_a_per_row_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    context = torch.randint(6, (200, 10), generator=gen)
    context[torch.rand(200, 10, generator=gen) < 0.4] = -1
    packed, counts = pack_contexts(context, padding=-1)
    for row, out, count in zip(context.tolist(), packed.tolist(), counts.tolist()):
        real = [c for c in row if c != -1]
        assert out == real + [-1] * (10 - len(real)) and count == len(real)
