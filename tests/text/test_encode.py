"""Texts -> vectors: batched pooled embeddings and the cached keyed item table."""

import torch

from recsys.text.encode import encode_texts, item_text_embeddings
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer

TEXTS = ["Toy Story | Animation | pixar", "Heat | Crime", "Casino | vegas, mob", ""]


def _model():
    tok = TextTokenizer.train(TEXTS[:3] * 3, vocab_size=60)
    return BertEncoder(tok.vocab_size, dim=8, num_layers=1, num_heads=2, max_len=16).eval(), tok


def test_encode_texts_matches_one_by_one_in_input_order():
    enc, tok = _model()
    batched = encode_texts(enc, tok, TEXTS, batch_size=3, progress=False, device="cpu")  # longest-first batches
    alone = torch.cat([enc.embed(**tok([t])) for t in TEXTS])
    assert batched.shape == (4, 8) and torch.allclose(batched, alone, atol=1e-5)


def test_item_text_embeddings_cached_table(tmp_path):
    enc, tok = _model()
    first = item_text_embeddings(TEXTS, [10, 11, 12, 13], enc, tok, batch_size=2, cache_dir=tmp_path, progress=False, device="cpu")
    files = list(tmp_path.glob("item_text_*.parquet"))
    assert len(files) == 1
    second = item_text_embeddings(TEXTS, [10, 11, 12, 13], enc, tok, cache_dir=tmp_path, progress=False, device="cpu")
    assert torch.equal(first.table, second.table) and first.index_to_key == second.index_to_key == [10, 11, 12, 13]
    assert torch.allclose(first.table.norm(dim=1), torch.ones(4))
    alone = enc.embed(**tok([TEXTS[2]]))
    assert torch.allclose(torch.from_numpy(first[[12]]), alone, atol=1e-5)
    item_text_embeddings(TEXTS[::-1], [10, 11, 12, 13], enc, tok, cache_dir=tmp_path, progress=False, device="cpu")
    assert len(list(tmp_path.glob("item_text_*.parquet"))) == 2  # other texts: another cache entry
