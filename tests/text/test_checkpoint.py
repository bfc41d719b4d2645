import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from recsys.errors import CheckpointError
from recsys.text.checkpoint import hf_to_ours, load_pretrained, ours_to_hf, save_pretrained
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer


@pytest.fixture()
def saved(tmp_path):
    texts = ["toy story adventure", "heat crime thriller", "story of a toy"] * 3
    tok = TextTokenizer.train(texts, vocab_size=60)
    torch.manual_seed(0)
    enc = BertEncoder(tok.vocab_size, dim=16, num_layers=2, num_heads=4, hidden_dim=24, max_len=32, add_pooler=True).eval()
    return save_pretrained(enc, tok, tmp_path / "model"), enc, tok


def test_round_trip_maps_every_weight(saved):
    folder, enc, tok = saved
    tensors = load_file(folder / "model.safetensors")
    assert "encoder.layer.1.attention.self.query.weight" in tensors and "pooler.dense.bias" in tensors
    assert set(hf_to_ours(tensors)) == set(enc.state_dict())
    loaded, tok2 = load_pretrained(folder)
    batch = tok2(["toy story", "heat"])
    assert torch.equal(loaded.embed(**batch), enc.embed(**tok(["toy story", "heat"])))
    assert set(ours_to_hf(enc.state_dict())) == set(tensors)


def _rewrite(folder, change):
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors")


def test_missing_key_named(saved):
    folder = saved[0]
    _rewrite(folder, lambda t: t.pop("encoder.layer.1.output.dense.bias"))
    with pytest.raises(CheckpointError, match=r"missing weight 'encoder.blocks.1.mlp.proj.bias'"):
        load_pretrained(folder)


def test_missing_qkv_part_named(saved):
    folder = saved[0]
    _rewrite(folder, lambda t: t.pop("encoder.layer.0.attention.self.key.weight"))
    with pytest.raises(CheckpointError, match=r"missing weight 'encoder.layer.0.attention.self.key.weight'"):
        load_pretrained(folder)


def test_unexpected_key_named(saved):
    folder = saved[0]
    _rewrite(folder, lambda t: t.update({"cls.predictions.bias": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"unexpected weight 'cls.predictions.bias'"):
        load_pretrained(folder)


def test_shape_mismatch_is_clear(saved):
    folder = saved[0]
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 32
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"encoder.blocks.0.mlp.fc.(weight|bias)' has shape \(24.*\) in the checkpoint but \(32.*\)"):
        load_pretrained(folder)


def test_missing_config_or_directory(saved, tmp_path):
    folder = saved[0]
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json not found"):
        load_pretrained(folder)
    with pytest.raises(CheckpointError, match="model directory not found"):
        load_pretrained(tmp_path / "nowhere")


def test_unsupported_config(saved):
    folder = saved[0]
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "gpt2"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_type 'gpt2' is not supported"):
        load_pretrained(folder)
