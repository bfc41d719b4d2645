"""tie_ranks counts by comparison for few targets and by sort + searchsorted for many: both agree."""

from __future__ import annotations

import pytest
import torch

from recsys.evaluation import metrics


@pytest.mark.parametrize("num_targets", [1, 3, 12])
def test_comparison_and_sort_paths_agree(monkeypatch, num_targets: int) -> None:
    generator = torch.Generator().manual_seed(num_targets)
    scores = torch.randint(0, 5, (6, 40), generator=generator).float()  # many ties
    scores[:, :4] = float("-inf")  # excluded items
    targets = torch.randint(0, 40, (6, num_targets), generator=generator)
    mask = torch.rand(6, num_targets, generator=generator) < 0.8
    monkeypatch.setattr(metrics, "_COMPARE_MAX_TARGETS", 100)
    compared = metrics.tie_ranks(scores, targets, mask)
    monkeypatch.setattr(metrics, "_COMPARE_MAX_TARGETS", 0)
    sorted_ = metrics.tie_ranks(scores, targets, mask)
    for field in ("greater", "equal", "valid", "num_targets"):
        assert torch.equal(getattr(compared, field), getattr(sorted_, field)), field
    # and both against a direct count
    target_scores = scores.gather(1, targets)
    expected_greater = (scores.unsqueeze(1) > target_scores.unsqueeze(2)).sum(-1).double()
    valid = mask & (target_scores > float("-inf"))
    assert torch.equal(compared.greater[valid], expected_greater[valid])
