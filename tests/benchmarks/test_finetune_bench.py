"""Smoke run of ``recsys bench finetune`` on a tiny random encoder, and its label building."""

import pytest
import torch

from recsys.benchmarks import finetune


def test_genre_task_has_no_genre_in_text_and_no_empty_rows():
    from recsys.data.load import load_dataset

    texts, labels, genres = finetune.genre_task(load_dataset("ml-latest-small", root=None))
    assert finetune.NO_GENRE not in genres and len(genres) == 19
    assert len(texts) == len(labels) and bool((labels.sum(1) > 0).all())
    assert texts[0] == "Toy Story (1995) | fun, pixar" and labels[0, genres.index("Animation")] == 1  # title + tags only
    train, valid, test = finetune.split(100, seed=0)
    assert (len(train), len(valid), len(test)) == (80, 10, 10) and len(set(train) | set(valid) | set(test)) == 100


@pytest.mark.slow  # ~5.5 s of CPU (sklearn import, 3 fits) but 8-17 s wall on the shared 2-core machine
def test_bench_smoke(capsys):
    threads = torch.get_num_threads()
    try:
        code = finetune.main(["--tiny", "--limit", "160", "--epochs", "1", "--probe-epochs", "1", "--max-length", "16",
                              "--logreg-c", "1", "--threads", "1", "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0
    for name in ("frozen + linear head", "frozen + LogisticRegression", "full fine-tuning", "micro-F1@0.5", "macro AUC"):
        assert name in out
