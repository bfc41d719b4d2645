"""ItemTextEngine fits ContentRecommender: item texts -> encoder -> the model's item vectors."""

from pathlib import Path

import polars as pl
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recsys.data.frame import from_frame
from recsys.errors import ConfigError, DataError
from recsys.models import BPRMF
from recsys.models.content import ContentRecommender
from recsys.text.checkpoint import load_pretrained, save_pretrained
from recsys.text.encode import encode_texts
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer
from recsys.training.engine import FitEngine
from recsys.training.text_vectors import ItemTextEngine

CONF = Path(__file__).resolve().parents[2] / "conf" / "model" / "content.yaml"
TITLES = ["red apple pie", "green apple tart", "red sports car", "fast green car"]
CPU = {"device": torch.device("cpu"), "generator": torch.Generator().manual_seed(0), "progress": False}


def _data():
    frame = pl.DataFrame({"user": [0, 0, 1, 1], "item": [0, 1, 2, 3], "timestamp": [1, 2, 1, 2]})
    data = from_frame(frame)
    data.item_features = pl.DataFrame({"item": [0, 1, 2, 3], "title": TITLES, "genres": [["food"], ["food"], ["cars"], ["cars"]]})
    return data


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    tok = TextTokenizer.train(TITLES * 3, vocab_size=60)
    torch.manual_seed(0)
    encoder = BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=16)
    return str(save_pretrained(encoder, tok, tmp_path_factory.mktemp("encoder")))


def test_engine_sets_the_encoded_item_texts(checkpoint):
    data, model = _data(), ContentRecommender(num_items=4)
    engine = ItemTextEngine(checkpoint, fields=("title", "genres"))
    assert isinstance(engine, FitEngine)
    model.prepare(data.with_frame(data.frame), torch.Generator())  # nothing to prepare: the engine fits
    engine.fit(model, data, **CPU)
    encoder, tokenizer = load_pretrained(checkpoint)
    expected = encode_texts(encoder, tokenizer, [f"{t} | {g}" for t, g in zip(TITLES, ["food", "food", "cars", "cars"])],
                            progress=False, device="cpu")
    assert torch.allclose(model.item_vectors, expected, atol=1e-5)
    assert model.score_users(torch.tensor([0, 1]), data).shape == (2, 4)


def test_engine_caches_the_table(checkpoint, tmp_path):
    data = _data()
    first, second = ContentRecommender(num_items=4), ContentRecommender(num_items=4)
    ItemTextEngine(checkpoint, cache_dir=str(tmp_path)).fit(first, data, **CPU)
    assert len(list(tmp_path.glob("item_text_*.parquet"))) == 1
    ItemTextEngine(checkpoint, cache_dir=str(tmp_path)).fit(second, data, **CPU)
    assert torch.equal(first.item_vectors, second.item_vectors)


def test_engine_refuses_models_without_item_vectors(checkpoint):
    with pytest.raises(ConfigError, match="set_item_vectors"):
        ItemTextEngine(checkpoint).fit(BPRMF(num_users=2, num_items=4, embedding_dim=2), _data(), **CPU)


def test_engine_needs_item_features(checkpoint):
    data = _data()
    data.item_features = None
    with pytest.raises(DataError, match="item features"):
        ItemTextEngine(checkpoint).fit(ContentRecommender(num_items=4), data, **CPU)


def test_content_model_state_dict_round_trips():
    model = ContentRecommender(num_items=3)
    model.set_item_vectors(torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]]))
    assert torch.allclose(model.item_vectors.norm(dim=1), torch.ones(3))
    fresh = ContentRecommender(num_items=3)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.item_vectors, model.item_vectors)
    with pytest.raises(RuntimeError):
        ContentRecommender(num_items=4).load_state_dict(model.state_dict())
    with pytest.raises(DataError, match="no item vectors"):
        ContentRecommender(num_items=3).score_users(torch.tensor([0]), _data())
    with pytest.raises(DataError):
        fresh.set_item_vectors(torch.ones(2, 2))


def test_content_profiles_follow_the_history():
    model = ContentRecommender(num_items=4)
    model.set_item_vectors(torch.eye(4))
    data = _data()
    first = model.score_users(torch.tensor([0]), data)
    other = data.with_frame(pl.DataFrame({"user": [0], "item": [3], "timestamp": [1]}).cast({"user": pl.Int64, "item": pl.Int64}))
    assert not torch.equal(first, model.score_users(torch.tensor([0]), other))


def test_content_config_builds_model_and_engine():
    cfg = OmegaConf.load(CONF)
    assert set(cfg) == {"module", "engine", "batches", "optimizer"} and cfg.batches is None and cfg.optimizer is None
    cfg.module.num_items = 5
    assert isinstance(instantiate(cfg.module), ContentRecommender)
    engine = instantiate(cfg.engine)
    assert isinstance(engine, ItemTextEngine) and engine.checkpoint is None and list(engine.fields) == ["title", "genres", "tags"]
