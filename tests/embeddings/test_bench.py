"""The embeddings benchmark runs end to end on a tiny configuration and prints its table."""

from __future__ import annotations

import pytest
import torch

from recsys.benchmarks.embeddings import field_sizes, main, zipf_batches


def test_field_sizes_and_zipf_batches():
    sizes = field_sizes(26, 1_000_000)
    assert sum(sizes) == 1_000_000 and len(sizes) == 26 and min(sizes) >= 4
    batches = zipf_batches(sizes, 64, 2, 1.05, seed=0)
    assert batches.shape == (2, 64, 26) and bool((batches < torch.tensor(sizes)).all())


@pytest.mark.slow
def test_bench_prints_table(capsys):
    assert main(["--fields", "4", "--rows", "2000", "--dims", "8", "--batch", "64", "--steps", "2", "--warmup", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| dim |" in out and "fused_rowwise_adagrad" in out and "naive_adam" in out
