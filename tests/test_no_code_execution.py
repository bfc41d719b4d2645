"""A crafted pickle handed to any path that loads a file must execute nothing (and fail with a clear error).

The payload's ``__reduce__`` makes unpickling call ``exec``, which would create a marker file; every
loader must refuse it (``torch.load(weights_only=True)``, safetensors, ``np.load(allow_pickle=False)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.errors import CheckpointError, DataError


class Payload:
    """Unpickling this runs ``open(marker, 'w')``: proof of code execution if the file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


def _torch_payload(path: Path, marker: Path, wrap: bool = True) -> Path:
    torch.save({"model": Payload(marker), "epoch": 1} if wrap else Payload(marker), path)
    return path


def test_payload_really_runs_under_plain_pickle(tmp_path: Path, marker: Path) -> None:
    """Control: the payload is live, so the refusals below mean something."""
    path = _torch_payload(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("wrap", [True, False], ids=["trainer-checkpoint", "bare"])
def test_neumf_pretrained_towers(tmp_path: Path, marker: Path, wrap: bool) -> None:
    """The pretraining engine named in a config (model.engine.gmf / .mlp) reads the towers weights-only."""
    from recsys.models.neumf import NeuMF
    from recsys.training.checkpoint import save_checkpoint
    from recsys.training.pretrained import NeuMFPretrained

    evil = _torch_payload(tmp_path / "checkpoint.pt", marker, wrap=wrap)
    model = NeuMF(num_users=3, num_items=4, gmf_dim=2, mlp_dim=2, layers=(4, 2))
    fit = dict(device=torch.device("cpu"), generator=torch.Generator(), progress=False)
    with pytest.raises(CheckpointError, match="pretrained gmf"):
        NeuMFPretrained(gmf=str(evil), mlp=str(evil)).fit(model, None, **fit)
    good = tmp_path / "gmf.pt"
    save_checkpoint(good, {"model": model.tower("gmf").state_dict()})
    with pytest.raises(CheckpointError, match="pretrained mlp"):
        NeuMFPretrained(gmf=str(good), mlp=str(evil)).fit(model, None, **fit)
    assert not marker.exists()


def test_trainer_checkpoint_and_resume(tmp_path: Path, marker: Path) -> None:
    from recsys.training.checkpoint import load_checkpoint

    evil = _torch_payload(tmp_path / "last.pt", marker)
    with pytest.raises(CheckpointError, match="not weights-only"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_text_checkpoint_bin(tmp_path: Path, marker: Path) -> None:
    from recsys.text.checkpoint import load_pretrained

    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert", "vocab_size": 10, "hidden_size": 4, "num_hidden_layers": 1,'
                                        ' "num_attention_heads": 1, "intermediate_size": 8, "max_position_embeddings": 8}')
    _torch_payload(folder / "pytorch_model.bin", marker, wrap=False)
    with pytest.raises(CheckpointError, match="not weights-only"):
        load_pretrained(folder)
    assert not marker.exists()


@pytest.mark.parametrize("loader", ["keyed_vectors", "word2vec"])
def test_npz_with_object_array(tmp_path: Path, marker: Path, loader: str) -> None:
    from recsys.embeddings.keyed_vectors import KeyedVectors
    from recsys.estimators.word2vec import Word2Vec

    path = tmp_path / "vectors.npz"
    payload = np.empty(1, dtype=object)
    payload[0] = Payload(marker)
    np.savez(path, keys=np.arange(1), meta=np.asarray("{}"), vectors=payload)
    load = KeyedVectors.load if loader == "keyed_vectors" else Word2Vec.load
    with pytest.raises(DataError, match="pickled"):
        load(path)
    assert not marker.exists()


@pytest.mark.parametrize("part", ["model.safetensors", "history.parquet", "features.json"])
def test_run_directory_loading(tmp_path: Path, marker: Path, part: str) -> None:
    """A run directory whose files were swapped for a pickle loads nothing and runs nothing."""
    import polars as pl

    from recsys.data.frame import from_frame
    from recsys.models.popularity import Popularity
    from recsys.runs import load_run, save_run

    data = from_frame(pl.DataFrame({"user": [1, 1, 2], "item": [10, 20, 10]}))
    model = Popularity(num_items=data.num_items)
    model.prepare(data)
    run = save_run(tmp_path / "run", model, {"num_items": data.num_items}, history=data)
    if part == "features.json":  # a run that claims a feature pipeline, whose file is a pickle
        import json

        info = json.loads((run / "run.json").read_text())
        info["model"]["kwargs"]["features"] = {"$features": "features.json"}
        (run / "run.json").write_text(json.dumps(info))
    _torch_payload(run / part, marker)
    with pytest.raises(CheckpointError):
        load_run(run)
    assert not marker.exists()
