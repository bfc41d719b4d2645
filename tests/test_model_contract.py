"""The contract every file in conf/model/ keeps, through the CLI's config -> pipeline path on a small real dataset.

For each model config: it builds and fits (one epoch); one training batch's loss is finite and
backpropagates; full-sort scores have shape (B, N) (pointwise logits (B,) for CTR models); the run
directory it wrote loads back with :func:`recsys.load_run` (no Hydra) into a model whose scores are
identical; the layers of the saved run (run.json, safetensors, vocabularies) are what they claim.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import recsys
from recsys.cli.config_dir import config_dir
from recsys.cli.experiment import run_experiment
from recsys.errors import CheckpointError

CONF = config_dir()
MODELS = sorted(path.stem for path in (CONF / "model").glob("*.yaml"))
EXPERIMENT = {"lr": "lr_ctr", "fm": "fm_ctr", "deepfm": "deepfm_ctr", "din": "din_ctr", "biased_mf": "biased_mf_rating"}
FAST = {  # keep each fit to a second or two on 2 cores
    "item2vec": ["model.module.epochs=1"],
    "als": ["model.module.iterations=3"],
    "neumf": ["model.batches.num_negatives=1"],
}


def compose_run(model: str, cache: Path) -> object:
    overrides = [f"model={model}", "trainer.epochs=1", "trainer.progress=false", "trainer.tensorboard=false",
                 "trainer.patience=null", "compare_to_popularity=false", "dataset.k_core=50", f"dataset.cache_dir={cache}",
                 *FAST.get(model, [])]
    if model in EXPERIMENT:
        overrides.append(f"experiment={EXPERIMENT[model]}")
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def scores(model: recsys.Recommender, history: recsys.Interactions, users: torch.Tensor) -> torch.Tensor:
    """Full-sort scores (B, N); CTR models: logits of (user, item) rows of the history (B,)."""
    model.eval()
    with torch.no_grad():
        features = getattr(model, "features", None)
        if features is not None and getattr(features, "fitted", False):
            batch = next(iter(recsys.CTRBatches(history, features=features, batch_size=len(users), shuffle=False)))
            return model.predict({k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}).cpu()
        return model.score_users(users.to(model.device), history).cpu()


# the slowest contracts (content encodes every item's text, DIN builds each row's history, the recurrent GRU4Rec, and
# SASRec beside its sasrec_ce twin) run in the slow step
SLOW_CONTRACTS = ("content", "din", "gru4rec", "sasrec")


@pytest.mark.parametrize("name", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW_CONTRACTS else m for m in MODELS])
def test_model_config_contract(name: str, cache: Path, tmp_path: Path) -> None:
    cfg = compose_run(name, cache)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = run_experiment(cfg, run_dir)
    model, history = result.model, result.history
    assert isinstance(model, recsys.Recommender)
    assert all(math.isfinite(v) for v in result.test.values())

    if cfg.model.batches is not None:  # one batch: finite loss that reaches the parameters
        from recsys.cli.experiment import factory
        from recsys.pipeline import _build

        batches, _ = _build(factory(cfg.model.batches, "model.batches"),
                            {"data": history, "features": getattr(model, "features", None)})
        kept = {k: v.clone() for k, v in model.state_dict().items()}  # a train-mode step moves batch-norm statistics (Dice)
        model.train()
        loss = model.loss({k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in next(iter(batches)).items()})
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        assert any(p.grad is not None and bool(torch.isfinite(p.grad.to_dense() if p.grad.is_sparse else p.grad).all())
                   for p in model.parameters() if p.requires_grad)
        model.zero_grad(set_to_none=True)
        model.load_state_dict(kept)

    users = torch.arange(min(16, history.num_users))
    before = scores(model, history, users)
    ranking = before.dim() == 2
    assert before.shape == ((len(users), history.num_items) if ranking else (len(users),))

    info = json.loads((run_dir / "run.json").read_text())
    assert info["format"] == "recsys-run" and info["model"]["target"].startswith("recsys.models.")
    assert (run_dir / "model.safetensors").is_file() and (run_dir / "config.yaml").is_file()
    loaded = recsys.load_run(run_dir)
    assert type(loaded.model) is type(model)
    assert loaded.items == history.items and loaded.users == history.users
    assert loaded.history.frame.equals(history.frame)
    after = scores(loaded.model, loaded.history, users)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_broken_run_directories_give_one_clear_error(cache: Path, tmp_path: Path) -> None:
    cfg = compose_run("pop", cache)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_experiment(cfg, run_dir)
    with pytest.raises(CheckpointError, match="run directory not found"):
        recsys.load_run(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no run.json"):
        recsys.load_run(tmp_path)
    weights = run_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        recsys.load_run(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**info, "version": 99}))
    with pytest.raises(CheckpointError, match="format version 99"):
        recsys.load_run(run_dir)
    (run_dir / "run.json").write_text(json.dumps({**info, "model": {"target": "os.system", "kwargs": {"command": "touch x"}}}))
    with pytest.raises(CheckpointError, match="no recsys model"):
        recsys.load_run(run_dir)
