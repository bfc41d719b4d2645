"""The sequential speed bench's summary: per architecture, loss and device, the best ratio and range of the repeats."""

from __future__ import annotations

import argparse

from recsys.benchmarks.sequential import arch_key, speed_summary


def test_summary_groups_repeats_and_takes_best_and_range() -> None:
    rows = [
        {"repeat": 0, "model": "GRU4Rec", "library": "recsys", "loss": "ce", "device": "cpu", "speedup_vs_recbole": 3.0},
        {"repeat": 0, "model": "GRU4Rec", "library": "RecBole 1.2.1", "loss": "ce", "device": "cpu"},
        {"repeat": 1, "model": "GRU4Rec", "library": "recsys", "loss": "ce", "device": "cpu", "speedup_vs_recbole": 3.6},
        {"repeat": 2, "model": "GRU4Rec", "library": "recsys", "loss": "ce", "device": "cpu", "speedup_vs_recbole": 3.3},
        {"repeat": 0, "model": "SASRec", "library": "recsys", "loss": "bce", "device": "cpu", "speedup_vs_recbole": 1.5},
        {"repeat": 0, "model": "SASRec", "library": "recsys", "loss": "ce", "device": "cpu"},  # its peer failed: no ratio
    ]
    args = argparse.Namespace(threads=2, dim=64, max_len=50, batch_size=128)
    summary = {(r["command"].split("--archs ")[1].split()[0], r["command"].split("--losses ")[1].split()[0]): r
               for r in speed_summary(rows, args)}
    assert set(summary) == {("gru4rec", "ce"), ("sasrec", "bce")}
    gru = summary["gru4rec", "ce"]
    assert (gru["best"], gru["low"], gru["high"], gru["repeats"]) == (3.6, 3.0, 3.6, 3)
    assert "GRU4Rec (full cross-entropy)" in gru["claim"] and gru["command"].endswith("--repeats 3 --threads 2")
    assert summary["sasrec", "bce"]["repeats"] == 1 and arch_key("SASRec") == "sasrec"
