import torch

from recsys.text.encoder import BertEncoder, mean_pool
from recsys.text.tokenizer import TextTokenizer


def _encoder(**kwargs):
    torch.manual_seed(0)
    return BertEncoder(vocab_size=30, dim=16, num_layers=2, num_heads=4, max_len=32, **kwargs).eval()


def test_padding_grows_output_unchanged():
    enc = _encoder()
    ids = torch.tensor([[2, 7, 9, 11, 3], [2, 5, 3, 0, 0]])
    mask = ids != 0
    hidden = enc(ids, mask)
    pooled = enc.embed(ids, mask)
    more_ids = torch.cat([ids, torch.zeros(2, 6, dtype=torch.long)], dim=1)  # 6 more padding tokens
    more_hidden = enc(more_ids, more_ids != 0)
    assert torch.allclose(more_hidden[:, :5][mask], hidden[mask], atol=1e-5)
    assert torch.allclose(enc.embed(more_ids, more_ids != 0), pooled, atol=1e-5)
    # the short row alone, unpadded, gives the same real-token states
    alone = enc(ids[1:, :3], None)
    assert torch.allclose(alone[0], hidden[1, :3], atol=1e-5)


def test_padding_mask_matters():
    enc = _encoder()
    ids = torch.tensor([[2, 5, 3, 8, 8]])
    masked = enc(ids, torch.tensor([[1, 1, 1, 0, 0]]))
    unmasked = enc(ids, None)
    assert not torch.allclose(masked[0, :3], unmasked[0, :3], atol=1e-4)


def test_mean_and_cls_pooling():
    hidden = torch.arange(12.0).view(1, 4, 3)
    assert mean_pool(hidden, torch.tensor([[1, 1, 0, 0]])).tolist() == [[1.5, 2.5, 3.5]]
    enc = _encoder(pooling="cls")
    ids = torch.tensor([[2, 5, 3]])
    assert torch.allclose(enc.embed(ids, normalize=False), enc(ids)[:, 0])


def test_tokenizer_trains_and_pads():
    texts = ["toy story adventure", "story of a toy", "heat crime thriller"] * 3
    tok = TextTokenizer.train(texts, vocab_size=80)
    batch = tok(["toy story", "heat crime thriller adventure"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.dtype == torch.long and ids.shape == mask.shape
    assert ids[0, 0] == tok.cls_id and ids[1, 0] == tok.cls_id
    lengths = mask.sum(1)
    assert ids[0, lengths[0] - 1] == tok.sep_id and (ids[0, lengths[0]:] == tok.pad_id).all()
    assert tok(["word " * 100], max_length=10)["input_ids"].shape == (1, 10)


def test_sinusoidal_positions_and_hf_round_trip(tmp_path):
    from recsys.nn.transformer import sinusoidal_table
    from recsys.text.checkpoint import load_pretrained, save_pretrained

    texts = ["toy story adventure", "heat crime thriller", "story of a toy"] * 3
    tok = TextTokenizer.train(texts, vocab_size=60)
    enc = BertEncoder(tok.vocab_size, dim=16, num_layers=1, num_heads=4, max_len=32, positions="sinusoidal").eval()
    assert enc.config()["positions"] == "sinusoidal" and "embeddings.position.weight" not in enc.state_dict()
    assert torch.equal(enc.embeddings.position(5), sinusoidal_table(32, 16)[:5])  # text: positions 0..T-1
    # HF BERT has only learned tables: the fixed one is written as such and loads back with the same outputs
    loaded, tok2 = load_pretrained(save_pretrained(enc, tok, tmp_path / "model"))
    assert loaded.config()["positions"] == "learned"
    torch.testing.assert_close(loaded.embed(**tok2(["toy story", "heat"])), enc.embed(**tok(["toy story", "heat"])))
