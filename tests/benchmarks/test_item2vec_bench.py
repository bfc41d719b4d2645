"""The item2vec bench's README row: one words/s ratio per seed, the quality ratios beside it."""

from __future__ import annotations

import argparse

from recsys.benchmarks.item2vec import _parser, speed_claim


def test_the_speed_claim_pairs_each_seed() -> None:
    args = _parser().parse_args(["--seeds", "1", "2", "3", "--hs"])
    args.negative = 0
    ours = [{"words_per_s": w, "HR@10": 0.10, "NDCG@10": 0.05} for w in (300.0, 200.0, 250.0)]
    gensim = [{"words_per_s": 100.0, "HR@10": h, "NDCG@10": 0.05} for h in (0.10, 0.125, 0.08)]
    row = speed_claim("ml-100k", ours, gensim, args)
    assert (row["best"], row["low"], row["high"], row["repeats"]) == (3.0, 2.0, 3.0, 3)
    assert row["command"] == "recsys bench item2vec --hs --datasets ml-100k --seeds 1 2 3 --root ../shared/datasets"
    assert "hierarchical softmax" in row["claim"] and "ml-100k" in row["claim"]
    assert row["detail"] == "HR@10 0.80x-1.25x gensim's; NDCG@10 1.00x-1.00x gensim's"
    plain = speed_claim("ml-100k", ours, gensim, argparse.Namespace(**{**vars(args), "hs": 0, "negative": 5}))
    assert plain["command"].startswith("recsys bench item2vec --datasets") and "negative sampling (5" in plain["claim"]
