"""Sentence pairs in the tokenizer (segment ids as Hugging Face BERT) and next-sentence prediction."""

import importlib.util

import pytest
import torch

from recsys.errors import ConfigError, DataError
from recsys.text.encoder import BertEncoder
from recsys.text.mlm import MaskedLanguageModel, MLMBatches, nsp_pairs
from recsys.text.tokenizer import TextTokenizer

COLORS = ["red", "green", "blue", "black", "white", "pink", "brown", "gray", "gold", "silver"]
THINGS = ["apple", "car", "house", "night", "river", "stone", "cloud", "horse", "train", "ship"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """Whole-word vocabulary in a fixed order (WordPiece training may number tokens differently run to run)."""
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *COLORS + THINGS]) + "\n")
    return TextTokenizer.from_pretrained(vocab, max_length=64)


def test_pair_segments_hand_worked(tok):
    out = tok(["red apple", "blue"], pairs=["green car", "night"])
    i = tok.tokenizer.token_to_id
    assert out["input_ids"].tolist() == [
        [tok.cls_id, i("red"), i("apple"), tok.sep_id, i("green"), i("car"), tok.sep_id],
        [tok.cls_id, i("blue"), tok.sep_id, i("night"), tok.sep_id, tok.pad_id, tok.pad_id],
    ]
    assert out["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0]]  # 0 on padding
    assert out["attention_mask"].sum(1).tolist() == [7, 5]
    assert "token_type_ids" not in tok(["red apple"])  # single texts: unchanged output


def test_pair_truncation_longest_first(tok):
    out = tok(["red green blue black"], pairs=["car"], max_length=6)  # 4 + 1 words + 3 specials = 8 > 6
    i = tok.tokenizer.token_to_id
    assert out["input_ids"].tolist() == [[tok.cls_id, i("red"), i("green"), tok.sep_id, i("car"), tok.sep_id]]
    assert tok.lengths(["red green blue black"], pairs=["car"]).tolist() == [6]
    with pytest.raises(DataError, match="pairs"):
        tok(["red", "blue"], pairs=["car"])


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
def test_pairs_match_hugging_face_bert_tokenizer():
    from transformers import BertTokenizerFast

    from recsys.text.checkpoint import minilm_path

    path = minilm_path()
    ours, theirs = TextTokenizer.from_pretrained(path), BertTokenizerFast.from_pretrained(str(path))
    a = ["Toy Story (1995)", "Heat", "The Shawshank Redemption (1994) is a very long movie title indeed", "x"]
    b = ["Animation, Comedy, pixar, fun", "Crime, Thriller, a long list of tags that goes on and on", "Drama", "y z"]
    mine = ours(a, pairs=b, max_length=16)
    ref = theirs(a, b, max_length=16, truncation=True, padding=True, return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(mine[key].long(), ref[key].long()), key


def test_nsp_pairs_balanced_and_never_own():
    first, second = [f"a{i}" for i in range(101)], [f"b{i}" for i in range(101)]
    a, b, is_next = nsp_pairs(first, second, torch.Generator().manual_seed(0))
    assert a == first and is_next.dtype == torch.bool and int(is_next.sum()) == 51  # 50 of 101 negatives
    for j, (x, y, n) in enumerate(zip(first, b, is_next.tolist())):
        assert (y == second[j]) == n
    duplicated = ["same"] * 50 + ["other"] * 50  # negatives must differ in content, not just in row
    _, b2, nxt = nsp_pairs(first[:100], duplicated, torch.Generator().manual_seed(1))
    assert int(nxt.sum()) == 50 and all(y != d for y, d, n in zip(b2, duplicated, nxt.tolist()) if not n)
    with pytest.raises(DataError, match="distinct"):
        nsp_pairs(["a", "b"], ["same", "same"])


def test_nsp_batches_deterministic_and_redrawn(tok):
    a = [COLORS[i % 10] for i in range(40)]
    b = [THINGS[(3 * i) % 10] + " " + THINGS[i % 7] for i in range(40)]

    def epoch(seed, index):
        batches = MLMBatches(a, tok, batch_size=8, seed=seed, second_texts=b, nsp=True)
        batches.set_epoch(index)
        out = list(batches)
        return torch.cat([x["next_sentence_label"] for x in out]), [x["input_ids"] for x in out]

    labels, ids = epoch(0, 0)
    assert int(labels.sum()) == 20  # exactly half are random pairs
    labels2, ids2 = epoch(0, 0)
    assert torch.equal(labels, labels2) and all(torch.equal(x, y) for x, y in zip(ids, ids2))
    _, ids3 = epoch(0, 1)
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(ids, ids3))
    with pytest.raises(ConfigError, match="pairs"):
        MLMBatches(a, tok, nsp=True)


@pytest.mark.slow  # multi-second training: the slow step of CI runs it
def test_nsp_head_learns_planted_pairs(tok):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(6, (640,), generator=g).tolist()
    a, b = [COLORS[i] for i in rows], [THINGS[(3 * i + 1) % 6] for i in rows]  # b is a function of a
    enc = BertEncoder(tok.vocab_size, dim=32, num_layers=2, num_heads=2, max_len=16, dropout=0.0)
    model = MaskedLanguageModel(enc, nsp=True)
    batches = MLMBatches(a, tok, batch_size=32, probability=0.0, max_length=16, seed=0, second_texts=b, nsp=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # all of 6 seeds reach 1.0
    for epoch in range(10):
        batches.set_epoch(epoch)
        for batch in batches:
            opt.zero_grad()
            model.loss(batch).backward()
            opt.step()
    model.eval()
    batches.set_epoch(1000)  # pairs never seen in training
    with torch.no_grad():
        hits = [(model.nsp_logits(enc(x["input_ids"], x["attention_mask"], x["token_type_ids"])).argmax(1)
                 == x["next_sentence_label"]).float() for x in batches]
    assert torch.cat(hits).mean() > 0.9


def test_pretrain_mlm_with_nsp(tok):
    from recsys.training.mlm import pretrain_mlm

    enc = BertEncoder(tok.vocab_size, dim=16, num_layers=1, num_heads=2, max_len=16)
    result = pretrain_mlm(COLORS * 2, tok, enc, epochs=2, batch_size=8, max_length=16, device="cpu", progress=False,
                          second_texts=THINGS * 2, nsp=True)
    assert len(result.history) == 2 and all(r["loss"] > 0 for r in result.history)
