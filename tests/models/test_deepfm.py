"""DeepFM: FM and DNN read the same embedding rows; sparse tables; it trains through the Trainer and the CLI config."""

from __future__ import annotations

from functools import partial

import polars as pl
import pytest
import torch

from recsys.data.ctr_batches import CTRBatches
from recsys.data.features import CategoricalFeature, FeaturePipeline, MultiCategoricalFeature
from recsys.data.frame import from_frame
from recsys.embeddings.config import EmbeddingField
from recsys.embeddings.optimizer import CombinedOptimizer
from recsys.embeddings.sparse_optim import RowWiseAdagrad, is_sparse_param
from recsys.evaluation.ctr import CTREvaluator
from recsys.models.deepfm import DeepFM
from recsys.training.trainer import Trainer

FIELDS = [EmbeddingField("user", 6, 1), EmbeddingField("item", 7, 1), EmbeddingField("genres", 4, 1, pooling="mean")]
BATCH = {"ids": torch.tensor([[0, 1], [5, 6], [2, 2]]), "bag_values": torch.tensor([1, 2, 3, 0]),
         "bag_offsets": torch.tensor([0, 2, 3, 4]), "labels": torch.tensor([1.0, 0.0, 1.0])}


def model() -> DeepFM:
    m = DeepFM(embedding_dim=4, hidden_dims=(8,), init_std=0.1, seed=0)
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


def test_prepare_fits_features_on_train_and_training_beats_chance() -> None:
    gen = torch.Generator().manual_seed(0)
    users, items = torch.randint(0, 30, (3000,), generator=gen), torch.randint(0, 40, (3000,), generator=gen)
    rating = torch.where((users + items) % 3 == 0, 5.0, 2.0)
    data = from_frame(pl.DataFrame({"user": users.numpy(), "item": items.numpy(), "rating": rating.numpy()}))
    data.item_features = pl.DataFrame({"item": list(range(40)), "genres": [[f"g{i % 3}"] for i in range(40)]})
    features = FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("item"), MultiCategoricalFeature("genres")])
    m = DeepFM(features, embedding_dim=8, hidden_dims=(32,), seed=0)
    m.prepare(data)
    assert m.embeddings.field("item").num_embeddings == 40 and m.trainable
    batches = CTRBatches(data, features, batch_size=256, seed=0)
    optimizer = partial(CombinedOptimizer, dense=partial(torch.optim.Adam, lr=3e-3), sparse=partial(RowWiseAdagrad, lr=0.1))
    Trainer(epochs=8, device="cpu", progress=False, tensorboard=False).fit(m, batches, optimizer)
    assert CTREvaluator().evaluate_model(m, data, data)["auc"] > 0.9


def test_unbuilt_model_says_what_to_do() -> None:
    with pytest.raises(Exception, match="prepare"):
        DeepFM(embedding_dim=4).predict(BATCH)
