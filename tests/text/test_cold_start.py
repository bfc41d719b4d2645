import polars as pl
import pytest
import torch

from recsys.data.frame import from_frame
from recsys.models.bpr import BPRMF
from recsys.models.content import ContentRecommender
from recsys.text.cold_start import cold_start_split, evaluate_cold_start
from recsys.text.encoder import BertEncoder
from recsys.text.item_init import load_item_embeddings, text_item_init
from recsys.text.item_text import item_text_embeddings, item_texts
from recsys.text.tokenizer import TextTokenizer


def _data(users=30, items=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(items, (users, 6), generator=g)
    frame = pl.DataFrame({"user": torch.arange(users).repeat_interleave(6).numpy(), "item": rows.flatten().numpy(),
                          "timestamp": torch.arange(users * 6).numpy()}).unique(["user", "item"])
    return from_frame(frame)


def test_split_holds_items_out_entirely():
    data = _data()
    split = cold_start_split(data, fraction=0.1, seed=1)
    present = torch.unique(data.item_index).numel()
    assert split.cold_items.numel() == round(0.1 * present)
    assert not torch.isin(split.train.item_index, split.cold_items).any()
    assert torch.isin(split.test.item_index, split.cold_items).all()
    assert split.train.num_interactions + split.test.num_interactions == data.num_interactions
    assert torch.equal(cold_start_split(data, 0.1, seed=1).cold_items, split.cold_items)


def test_text_similarity_finds_cold_items():
    # two topics; a user's cold test item shares the topic of its history -> text scoring ranks it high
    frame = pl.DataFrame({"user": [0, 0, 0, 1, 1, 1], "item": [0, 1, 2, 3, 4, 5], "timestamp": [1, 2, 3, 1, 2, 3]})
    data = from_frame(frame)
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.95, 0.0], [0.0, 1.0], [0.1, 0.9], [0.0, 0.95]])
    model = ContentRecommender(num_items=6)
    model.set_item_vectors(vectors)
    split = cold_start_split(data, fraction=0.34, seed=0)
    out = evaluate_cold_start(model, split, candidates="all")
    assert out["hr@10"] == 1.0
    scores = model.score_users(torch.tensor([0, 1]), split.train)
    warm = [i for i in range(6) if i not in split.cold_items.tolist()]
    for cold in split.cold_items.tolist():
        user = 0 if cold < 3 else 1
        assert scores[user, cold] > scores[1 - user, cold]
    assert len(warm) == 4


def test_cold_candidates_mask_warm_items():
    data = _data()
    split = cold_start_split(data, fraction=0.2, seed=0)
    model = ContentRecommender(num_items=data.num_items)
    model.set_item_vectors(torch.ones(data.num_items, 4))  # all ties
    cold = evaluate_cold_start(model, split, candidates="cold")
    n_cold = split.cold_items.numel()
    assert cold["hr@10"] >= min(1.0, 10 / n_cold) - 1e-6  # ties among cold items only, minus the user's seen ones


def test_item_texts_and_cached_table(tmp_path):
    features = pl.DataFrame({"item": [0, 1, 2], "title": ["Toy Story", "Heat", "Casino"], "genres": [["Animation"], ["Crime"], []],
                             "tags": [["pixar"], [], ["vegas", "mob"]]})
    texts = item_texts(features, 4)
    assert texts == ["Toy Story | Animation | pixar", "Heat | Crime", "Casino | vegas, mob", ""]
    tok = TextTokenizer.train(texts[:3] * 3, vocab_size=60)
    enc = BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=16).eval()
    first = item_text_embeddings(texts, [10, 11, 12, 13], enc, tok, batch_size=2, cache_dir=tmp_path, progress=False, device="cpu")
    files = list(tmp_path.glob("item_text_*.parquet"))
    assert len(files) == 1
    second = item_text_embeddings(texts, [10, 11, 12, 13], enc, tok, cache_dir=tmp_path, progress=False, device="cpu")
    assert torch.equal(first.weight, second.weight) and torch.equal(first(torch.tensor([12])), second(torch.tensor([12])))
    assert torch.allclose(first.weight.norm(dim=1), torch.ones(4))
    alone = enc.embed(**tok([texts[2]]))
    assert torch.allclose(first(torch.tensor([12])), alone, atol=1e-5)


def test_text_init_into_mf_and_sequential_tables():
    from recsys.models.sasrec import SASRec

    init = text_item_init(torch.randn(5, 12), dim=4, std=0.1)
    assert init.shape == (5, 4)
    mf = load_item_embeddings(BPRMF(num_users=2, num_items=5, embedding_dim=4), init)
    assert torch.allclose(mf.item_embedding.weight, init)
    seq = SASRec(num_items=5, embedding_dim=4)
    padding = seq.item_embedding.weight[0].clone()
    load_item_embeddings(seq, init)
    assert torch.allclose(seq.item_embedding.weight[1:6], init) and torch.equal(seq.item_embedding.weight[0], padding)
    with pytest.raises(Exception, match="does not fit item_embedding"):
        load_item_embeddings(mf, torch.zeros(4, 4))
