"""Item tables initialized from item text embeddings (the ``item_text_init=`` key)."""

from pathlib import Path

import polars as pl
import pytest
import torch
from torch import nn

from recsys.data.frame import from_frame
from recsys.data.item_text import item_texts
from recsys.errors import ConfigError, DataError
from recsys.models import BPRMF, Item2Vec, Popularity
from recsys.models.base import Recommender
from recsys.text.checkpoint import load_pretrained, save_pretrained
from recsys.text.encode import item_text_embeddings
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer
from recsys.training.text_init import init_item_table_from_text, item_table, load_item_embeddings, text_item_init

TITLES = ["Star Wars: A New Hope", "Star Trek: First Contact", "Julie & Julia: cooking in Paris", "The Empire Strikes Back"]


def _data():
    data = from_frame(pl.DataFrame({"user": [1, 1, 2, 2], "item": [10, 11, 12, 13]}), rating_col=None, time_col=None)
    data.item_features = pl.DataFrame({"item": [0, 1, 2, 3], "title": TITLES})
    return data


def _checkpoint(folder: Path) -> str:
    tok = TextTokenizer.train(TITLES * 3, vocab_size=80)
    torch.manual_seed(0)
    return str(save_pretrained(BertEncoder(tok.vocab_size, dim=16, num_layers=1, num_heads=2, max_len=32), tok, folder))


class _KeyedVectorsModel(Recommender):
    """Item2Vec-like: ``item_embedding`` is a method returning keyed vectors, not a table."""

    def __init__(self) -> None:
        super().__init__()
        self.vectors = nn.Parameter(torch.zeros(4, 2))

    def item_embedding(self, freeze: bool = True):
        return self.vectors


class _TensorAttribute(Recommender):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("item_embedding", torch.zeros(4, 2))


@pytest.mark.parametrize("model", [_KeyedVectorsModel(), _TensorAttribute(), Popularity(num_items=4), Item2Vec(num_items=4, vector_size=2)],
                         ids=["method", "buffer", "popularity", "item2vec"])
def test_models_without_an_item_table_get_a_config_error(model, tmp_path):
    with pytest.raises(ConfigError, match="item_embedding") as info:
        init_item_table_from_text(model, _data(), str(tmp_path / "never-read"))  # fails before loading a checkpoint
    assert "bpr" in info.value.fix and "item_text_init=null" in info.value.fix


def test_bpr_item_table_is_initialized_from_the_encoded_titles(tmp_path):
    data, folder = _data(), _checkpoint(tmp_path / "enc")
    model = BPRMF(num_users=data.num_users, num_items=data.num_items, embedding_dim=4)
    users_before = model.user_embedding.weight.detach().clone()
    init_item_table_from_text(model, data, folder, device="cpu", progress=False)
    encoder, tokenizer = load_pretrained(folder)
    vectors = item_text_embeddings(item_texts(data.item_features, 4), range(4), encoder, tokenizer, progress=False, device="cpu").table
    assert torch.allclose(model.item_embedding.weight, text_item_init(vectors, 4), atol=1e-6)
    assert torch.equal(model.user_embedding.weight, users_before)  # only the item table


def test_text_item_init_projects_and_scales():
    vectors = torch.randn(5, 12)
    init = text_item_init(vectors, dim=4, std=0.1)
    assert init.shape == (5, 4) and abs(init.std().item() - 0.1) < 1e-5
    assert torch.equal(init, text_item_init(vectors, dim=4, std=0.1))  # the PCA sketch is seeded
    padded = text_item_init(torch.randn(6, 2), dim=4)
    assert padded.shape == (6, 4) and torch.equal(padded[:, 2:], torch.zeros(6, 2))
    with pytest.raises(DataError):
        text_item_init(torch.randn(5), dim=4)


def test_load_into_mf_and_sequential_tables():
    from recsys.models.sasrec import SASRec

    init = text_item_init(torch.randn(5, 12), dim=4, std=0.1)
    mf = load_item_embeddings(BPRMF(num_users=2, num_items=5, embedding_dim=4), init)
    assert torch.allclose(mf.item_embedding.weight, init)
    seq = SASRec(num_items=5, embedding_dim=4)
    padding = seq.item_embedding.weight[0].clone()
    load_item_embeddings(seq, init)
    assert torch.allclose(seq.item_embedding.weight[1:6], init) and torch.equal(seq.item_embedding.weight[0], padding)
    assert item_table(seq) is seq.item_embedding
    with pytest.raises(DataError, match="does not fit item_embedding"):
        load_item_embeddings(mf, torch.zeros(4, 4))
