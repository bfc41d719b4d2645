"""The DIN side-by-side bench's mapping to DeepCTR-Torch: same rows, history padded after a shift, shared item table."""

from __future__ import annotations

import importlib.util

import numpy as np
import polars as pl
import pytest
import torch

from recsys.benchmarks.din import deepctr_columns, deepctr_inputs, pipeline
from recsys.data.frame import from_frame


@pytest.mark.skipif(importlib.util.find_spec("deepctr_torch") is None, reason="deepctr-torch not installed")
def test_deepctr_din_reads_our_rows_and_history() -> None:
    from recsys.benchmarks.peers import _deepctr

    _deepctr()
    from deepctr_torch.models import DIN as TheirDIN

    data = from_frame(pl.DataFrame({"user": [1, 1, 1, 2], "item": [5, 6, 7, 5], "rating": [5.0, 3.0, 4.0, 1.0],
                                    "timestamp": [1, 2, 3, 4]}))
    features = pipeline(max_len=2).fit(data)
    x, y = deepctr_inputs(features, data)
    rows = features.features_[1].vocabulary_.to_index(pl.Series([0, 1]), unknown="oov").numpy() + 1  # items 5, 6
    assert x["seq_length"].tolist() == [0, 1, 2, 0] and x["hist_item"].shape == (4, 2)
    assert x["hist_item"][2].tolist() == rows.tolist() and x["hist_item"][0].tolist() == [0, 0]  # 0 = padding
    assert y.tolist() == [1.0, 0.0, 1.0, 0.0]
    columns = deepctr_columns(features, dim=4)
    peer = TheirDIN(columns, ["item"], dnn_hidden_units=(8,), att_hidden_size=(4,), device="cpu")
    assert peer.embedding_dict["item"].num_embeddings == features.features_[1].num_embeddings + 2
    assert "hist_item" not in peer.embedding_dict  # the history reads the item table
    probabilities = peer.predict({k: np.asarray(v) for k, v in x.items()}, batch_size=4)
    assert probabilities.shape == (4, 1) and np.isfinite(probabilities).all()
    assert torch.is_tensor(torch.from_numpy(x["hist_item"]))


def test_the_speed_claim_is_the_per_seed_ratio_with_both_aucs() -> None:
    import argparse

    from recsys.benchmarks.din import speed_claim

    args = argparse.Namespace(max_len=50, embedding_dim=8, hidden_dims=[256, 128], epochs=5, threads=2)
    pairs = [(0, {"samples_per_s": 300.0, "auc": 0.78}, {"samples_per_s": 100.0, "auc": 0.77}),
             (1, {"samples_per_s": 350.0, "auc": 0.7812}, {"samples_per_s": 100.0, "auc": 0.7799})]
    row = speed_claim(pairs, args)
    assert (row["best"], row["low"], row["high"], row["repeats"]) == (3.5, 3.0, 3.5, 2)
    assert row["command"] == "recsys bench din --root ../shared/datasets --seeds 0 1"
    assert "0.7800 vs 0.7700; 0.7812 vs 0.7799" in row["detail"] and "2 threads" in row["machine"]
