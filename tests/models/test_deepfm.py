"""DeepFM: FM and DNN read the same embedding rows; sparse tables; one fitted pipeline shared by model, batches and
evaluator; a saved pipeline + state dict rebuild it exactly; it trains through the Trainer and the composed CLI config."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import polars as pl
import pytest
import torch

from recsys.data.ctr_batches import CTRBatches
from recsys.data.features import CategoricalFeature, FeaturePipeline, MultiCategoricalFeature
from recsys.data.frame import from_frame
from recsys.embeddings.config import EmbeddingField
from recsys.embeddings.optimizer import CombinedOptimizer
from recsys.embeddings.sparse_optim import RowWiseAdagrad, is_sparse_param
from recsys.errors import ConfigError
from recsys.evaluation.ctr import CTREvaluator
from recsys.models.deepfm import DeepFM
from recsys.models.fm import FM
from recsys.models.logistic import LogisticRegression
from recsys.training.trainer import Trainer

CONF = Path(__file__).resolve().parents[2] / "conf"

FIELDS = [EmbeddingField("user", 6, 1), EmbeddingField("item", 7, 1), EmbeddingField("genres", 4, 1, pooling="mean")]
BATCH = {"ids": torch.tensor([[0, 1], [5, 6], [2, 2]]), "bag_values": torch.tensor([1, 2, 3, 0]),
         "bag_offsets": torch.tensor([0, 2, 3, 4]), "labels": torch.tensor([1.0, 0.0, 1.0])}


def model() -> DeepFM:
    m = DeepFM(embedding_dim=4, hidden_dims=(8,), init_std=0.1)
    m.build(FIELDS)
    return m


def test_fm_and_dnn_read_the_same_embedding_rows() -> None:
    m = model()
    seen = {}
    m.interaction.register_forward_hook(lambda mod, inp, out: seen.update(fm=inp[0]))
    m.dnn.register_forward_hook(lambda mod, inp, out: seen.update(dnn=inp[0]))
    m.predict(BATCH)
    assert seen["fm"].shape == (3, 3, 4)
    assert torch.equal(seen["dnn"], seen["fm"].flatten(1))  # the DNN input is the FM's embeddings, flattened
    # ... and they are the table rows: user 5's row (columns 1:) is what both read for example 1
    assert torch.equal(seen["fm"][1, 0], m.embeddings.field_weight("user")[5, 1:])
    assert len(list(m.embeddings.parameters())) == 1  # one fused table, no second copy for the DNN


def test_gradients_of_both_parts_land_in_the_same_table_rows() -> None:
    m = model()
    m.zero_grad()
    first, emb = m.embed(BATCH)
    m.dnn(emb.flatten(1)).sum().backward()  # DNN part alone
    dnn_grad = m.embeddings.tables["5"].weight.grad.coalesce()
    m.zero_grad()
    first, emb = m.embed(BATCH)
    m.interaction(emb).sum().backward()  # FM part alone
    fm_grad = m.embeddings.tables["5"].weight.grad.coalesce()
    assert dnn_grad.is_sparse and is_sparse_param(m.embeddings.tables["5"].weight)
    assert torch.equal(dnn_grad.indices(), fm_grad.indices())  # the same rows receive both gradients


def test_combined_optimizer_gives_tables_to_the_sparse_optimizer() -> None:
    m = model()
    opt = CombinedOptimizer(m.parameters(), dense=partial(torch.optim.Adam, lr=1e-3), sparse=partial(RowWiseAdagrad, lr=0.1))
    assert [p for g in opt.sparse.param_groups for p in g["params"]] == [m.embeddings.tables["5"].weight]
    before = m.embeddings.tables["5"].weight.detach().clone()
    m.loss(BATCH).backward()
    opt.step()
    changed = (m.embeddings.tables["5"].weight != before).any(1).nonzero().flatten().tolist()
    offsets = m.embeddings.tables["5"].row_offsets
    touched = sorted([offsets["user"] + u for u in (0, 5, 2)] + [offsets["item"] + i for i in (1, 6, 2)] +
                     [offsets["genres"] + g for g in (1, 2, 3, 0)])
    assert changed == touched  # only rows in the batch move


def planted() -> tuple:
    """3000 ratings, clicked when (user + item) % 3 == 0, items with one genre each; and its feature pipeline."""
    gen = torch.Generator().manual_seed(0)
    users, items = torch.randint(0, 30, (3000,), generator=gen), torch.randint(0, 40, (3000,), generator=gen)
    rating = torch.where((users + items) % 3 == 0, 5.0, 2.0)
    data = from_frame(pl.DataFrame({"user": users.numpy(), "item": items.numpy(), "rating": rating.numpy()}))
    data.item_features = pl.DataFrame({"item": list(range(40)), "genres": [[f"g{i % 3}"] for i in range(40)]})
    return data, FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("item"), MultiCategoricalFeature("genres")])


def test_one_fitted_pipeline_builds_the_tables_and_serves_batches_and_evaluator() -> None:
    data, features = planted()
    features.fit(data)  # once, by the caller
    m = DeepFM(features, embedding_dim=8, hidden_dims=(32,))
    assert m.embeddings.field("item").num_embeddings == 40 and m.trainable  # built in __init__, nothing to prepare
    batches = CTRBatches(data, features, batch_size=256, seed=0)
    assert batches.features is m.features is features
    optimizer = partial(CombinedOptimizer, dense=partial(torch.optim.Adam, lr=3e-3), sparse=partial(RowWiseAdagrad, lr=0.1))
    Trainer(epochs=8, device="cpu", progress=False, tensorboard=False).fit(m, batches, optimizer)
    assert CTREvaluator().evaluate_model(m, data, data)["auc"] > 0.9


@pytest.mark.parametrize("model", [LogisticRegression, FM, DeepFM])
def test_an_unfitted_pipeline_is_refused_and_the_global_seed_fixes_the_init(model: type) -> None:
    data, features = planted()
    with pytest.raises(ConfigError, match="fitted FeaturePipeline"):
        model(features)
    features.fit(data)
    torch.manual_seed(0)
    a = model(features)
    torch.manual_seed(0)
    b = model(features)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    # the tables draw exactly what the former seed=0 generator drew (same numbers for the same seed)
    width = a.embedding_dim + 1
    expected = torch.empty(a.embeddings.tables[str(width)].weight.shape).normal_(0.0, 0.01, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.embeddings.tables[str(width)].weight.detach(), expected)


def test_saved_pipeline_and_state_dict_rebuild_identical_predictions(tmp_path: Path) -> None:
    data, features = planted()
    features.fit(data)
    original = DeepFM(features, embedding_dim=4, hidden_dims=(16,))
    with torch.no_grad():  # move the weights away from their initial values
        for p in original.parameters():
            p.add_(torch.randn_like(p))
    torch.save(original.state_dict(), tmp_path / "weights.pt")
    loaded = FeaturePipeline.load(features.save(tmp_path / "features.json"))
    rebuilt = DeepFM(loaded, embedding_dim=4, hidden_dims=(16,))
    rebuilt.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    original.eval(), rebuilt.eval()
    frame = data.frame.head(200)
    test = data.with_frame(frame.with_columns(pl.when(pl.col("user") % 7 == 0).then(999).otherwise(pl.col("item")).alias("item")))
    with torch.no_grad():
        assert torch.equal(original.predict(features.transform(test).batch()), rebuilt.predict(loaded.transform(test).batch()))
    assert CTREvaluator().evaluate_model(rebuilt, data, test) == CTREvaluator().evaluate_model(original, data, test)


@pytest.mark.parametrize("name", ["lr", "fm", "deepfm"])
def test_composed_config_instantiates_one_shared_fitted_pipeline(name: str) -> None:
    hydra = pytest.importorskip("hydra")
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    with hydra.initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = hydra.compose("train", overrides=[f"model={name}", "eval=ctr", "split=random"])
        assert hydra.compose("train", overrides=[f"model={name}", "features=none"]).features == {}
        assert "features" not in hydra.compose("train", overrides=["model=bpr"])
    assert OmegaConf.is_missing(cfg.model.module, "features") and OmegaConf.is_missing(cfg.model.batches, "features")
    assert "label_threshold" not in cfg.model.batches and "label_threshold" not in cfg.eval
    data, _ = planted()
    features = instantiate(cfg.features)  # what the entry point does: build, fit once, pass the one object
    features.fit(data)
    assert features.label_threshold == 4.0 and features.feature_names == ["user", "item", "genres"]  # optional ones skipped
    model = instantiate(cfg.model.module, features=features)
    batches = instantiate(cfg.model.batches, data=data, features=features)
    evaluator = instantiate(cfg.eval)
    assert model.features is batches.features is features
    assert set(evaluator.evaluate_model(model, data, data)) == {"auc", "logloss"}


def test_unbuilt_model_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="build"):
        DeepFM(embedding_dim=4).predict(BATCH)
    with pytest.raises(ConfigError, match="fitted FeaturePipeline"):
        DeepFM(embedding_dim=4).prepare(None)
