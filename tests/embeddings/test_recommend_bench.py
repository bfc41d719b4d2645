"""The recommend bench runs end to end on a tiny configuration and prints its tables."""

from __future__ import annotations

import pytest

pytest.importorskip("implicit")
pytest.importorskip("faiss")

from recsys.benchmarks.recommend import main, synthetic  # noqa: E402


def test_synthetic_liked_matrix():
    users, items, liked = synthetic(50, 40, 4, liked=3)
    assert users.shape == (50, 4) and items.shape == (40, 4) and liked.shape == (50, 40)
    assert 0 < liked.getnnz(axis=1).max() <= 3


def test_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--users" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_prints_tables(capsys):
    assert main(["--parts", "synthetic", "ann", "--users", "300", "--items", "500", "--N", "10", "--ann-items", "500",
                 "--ann-queries", "20", "--ann-k", "10", "--ann-kinds", "flat", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "ours / implicit" in out and "recall@k" in out and "faiss flat" in out
