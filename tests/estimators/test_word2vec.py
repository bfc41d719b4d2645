"""Word2Vec estimator: gradients against autograd, planted communities, corpus types, errors, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from recsys.data.frame import from_frame
from recsys.data.skipgram import pack_contexts
from recsys.embeddings.keyed_vectors import KeyedVectors
from recsys.errors import DataError
from recsys.estimators.word2vec import Word2Vec
from recsys.training.sgns import SGNS, outputs, sgns_step


def communities(num_sentences: int = 300, size: int = 15, length: int = 8, seed: int = 0) -> list[list[int]]:
    """Sentences drawn within one of two disjoint item communities: 0..size-1 and size..2*size-1."""
    gen = torch.Generator().manual_seed(seed)
    side = torch.randint(2, (num_sentences, 1), generator=gen)
    items = torch.randint(size, (num_sentences, length), generator=gen) + side * size
    return items.tolist()


def separation(wv: KeyedVectors, size: int = 15) -> tuple[float, float]:
    """Mean cosine within and across communities."""
    order = torch.tensor([wv.get_index(i) for i in range(2 * size)])
    unit = wv.unit_vectors()[order]
    cos = unit @ unit.T
    same = torch.zeros(2 * size, 2 * size, dtype=torch.bool)
    same[:size, :size] = same[size:, size:] = True
    same.fill_diagonal_(False)
    cross = ~same
    cross.fill_diagonal_(False)
    cross[:size, :size] = cross[size:, size:] = False
    return float(cos[same].mean()), float(cos[cross].mean())


@pytest.mark.parametrize("sg", [1, 0])
def test_step_equals_sgd_on_the_negative_sampling_loss(sg: int) -> None:
    """One step adds ``-lr * gradient`` of the summed SGNS loss (CBOW: the context mean's gradient to every context)."""
    gen = torch.Generator().manual_seed(0)
    num_keys, dim, lr = 9, 4, 0.1
    w_in = torch.randn(num_keys + 1, dim, generator=gen)
    w_in[num_keys] = 0
    w_out = torch.randn(num_keys, dim, generator=gen)
    center = torch.tensor([0, 3, 3])
    context = torch.tensor([[1, 2, num_keys], [4, 5, 6], [num_keys, num_keys, num_keys]])
    noise = torch.tensor([[5, 0], [7, 8], [1, 2]])  # noise 0 equals center 0: skipped

    a, b = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    loss = torch.zeros(())
    for i in range(3):
        ctx = [c for c in context[i].tolist() if c != num_keys]
        if not ctx:
            continue
        negatives = [k for k in noise[i].tolist() if k != int(center[i])]
        inputs = [a[c] for c in ctx] if sg else [a[ctx].mean(0)]
        for x in inputs:
            loss = loss - F.logsigmoid(x @ b[center[i]]) - sum(F.logsigmoid(-(x @ b[k])) for k in negatives)
    loss.backward()
    expected_in, expected_out = w_in - lr * a.grad, w_out - lr * b.grad
    if not sg:  # word2vec.c adds the gradient of the mean to each context, not divided by the count
        expected_in = w_in.clone()
        for i in range(2):
            ctx = [c for c in context[i].tolist() if c != num_keys]
            grad_mean = a.grad[ctx[0]] * len(ctx)
            for c in ctx:
                expected_in[c] -= lr * grad_mean
    packed, count = pack_contexts(context, num_keys)
    valid = (torch.arange(packed.shape[1]) < count.unsqueeze(1)).float()
    sgns_step(w_in, w_out, packed, *outputs(center, noise), valid, lr, sg=bool(sg))
    assert torch.allclose(w_in, expected_in, atol=1e-5)
    assert torch.allclose(w_out, expected_out, atol=1e-5)
    assert w_in[num_keys].abs().max() == 0


@pytest.mark.parametrize("options", [dict(sg=1), dict(sg=0), dict(sg=1, basket=True), dict(sg=1, batch_size=4, workers=2)])
def test_planted_communities_separate(options: dict) -> None:
    model = Word2Vec(**{"vector_size": 16, "window": 3, "min_count": 1, "sample": 0, "epochs": 8, "seed": 0, "workers": 1, "device": "cpu", **options})
    model.fit(communities())
    within, across = separation(model.wv)
    assert within > across + 0.3, (within, across)
    neighbours = [key for key, _ in model.most_similar(3, topn=5)]
    assert all(key < 15 for key in neighbours), neighbours


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_planted_communities_separate_on_cuda() -> None:
    model = Word2Vec(vector_size=16, window=3, min_count=1, sample=0, epochs=8, seed=0, device="cuda").fit(communities())
    within, across = separation(model.wv)
    assert within > across + 0.3


def test_same_seed_one_worker_is_deterministic() -> None:
    corpus = communities(num_sentences=50)
    first, second = (Word2Vec(vector_size=8, min_count=1, epochs=2, seed=5, workers=1, device="cpu").fit(corpus) for _ in range(2))
    assert np.array_equal(first.wv.vectors, second.wv.vectors)


def test_vocabulary_is_by_descending_count_and_min_count_drops_rare_tokens() -> None:
    corpus = [["b", "a", "b", "c"], ["b", "a", "rare"]]
    model = Word2Vec(vector_size=4, min_count=2, sample=0, epochs=1, device="cpu").fit(corpus)
    assert model.wv.index_to_key == ["b", "a"]
    assert model.counts_.tolist() == [3, 2]
    assert "rare" not in model.wv


def test_every_corpus_type_gives_the_same_vocabulary() -> None:
    rows = pd.DataFrame({"user": [1, 1, 1, 2, 2], "item": [30, 10, 20, 10, 40], "timestamp": [3, 1, 2, 5, 4]})
    ordered = [[10, 20, 30], [40, 10]]  # items of each user in time order
    settings = dict(vector_size=4, min_count=1, sample=0, epochs=1, device="cpu")
    expected = Word2Vec(**settings).fit(ordered).wv.index_to_key
    for corpus in (rows, pl.from_pandas(rows), from_frame(rows)):
        assert Word2Vec(**settings).fit(corpus).wv.index_to_key == expected
    words = Word2Vec(**settings).fit([["x", "y"], ["y"]])
    assert words.wv.index_to_key == ["y", "x"]


def test_unknown_key_gives_a_clear_error() -> None:
    model = Word2Vec(vector_size=4, min_count=1, epochs=1, device="cpu").fit([["a", "b"], ["b", "c"]])
    with pytest.raises(DataError, match="'zebra' is not in the vocabulary"):
        model.most_similar("zebra")
    with pytest.raises(DataError, match="not in the vocabulary"):
        model.similarity("a", 3)


@pytest.mark.parametrize("corpus", [[], [[], []], pl.DataFrame({"user": [], "item": []})])
def test_empty_corpus_is_an_error(corpus) -> None:
    with pytest.raises(DataError, match="empty"):
        Word2Vec(device="cpu").fit(corpus)


def test_min_count_removing_everything_is_an_error() -> None:
    with pytest.raises(DataError, match="min_count=5 removes every token"):
        Word2Vec(min_count=5, device="cpu").fit([["a", "b", "a"]])


def test_list_of_strings_is_an_error() -> None:
    with pytest.raises(DataError, match="list of token lists"):
        Word2Vec(device="cpu").fit(["the cat sat", "on the mat"])


def test_learning_rate_decays_linearly() -> None:
    engine = SGNS.from_model(Word2Vec(alpha=0.05, min_alpha=0.01))
    assert [engine.lr(p) for p in (0.0, 0.5, 1.0)] == pytest.approx([0.05, 0.03, 0.01])


def test_reads_a_hand_written_word2vec_text_file(tmp_path: Path) -> None:
    path = tmp_path / "vectors.txt"
    path.write_text("3 2\nthe 0.5 -1.0 \ncat 1 2\n42 0.25 0.125\n")  # word2vec.c writes a trailing space
    wv = KeyedVectors.load_word2vec_format(path)
    assert wv.index_to_key == ["the", "cat", "42"]
    assert wv["the"].tolist() == [0.5, -1.0] and wv["42"].tolist() == [0.25, 0.125]
    out = wv.save_word2vec_format(tmp_path / "again.txt")
    assert out.read_text().splitlines()[0] == "3 2"
    assert np.array_equal(KeyedVectors.load_word2vec_format(out).vectors, wv.vectors)


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_round_trip_with_int_keys(tmp_path: Path, binary: bool) -> None:
    model = Word2Vec(vector_size=6, min_count=1, epochs=1, device="cpu").fit(communities(num_sentences=20))
    path = model.wv.save_word2vec_format(tmp_path / "items.w2v", binary=binary)
    back = KeyedVectors.load_word2vec_format(path, binary=binary, key_type=int)
    assert back.index_to_key == model.wv.index_to_key
    assert np.allclose(back.vectors, model.wv.vectors, rtol=1e-6, atol=1e-7)


def test_bad_word2vec_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("hello world\n")
    with pytest.raises(DataError, match="bad header"):
        KeyedVectors.load_word2vec_format(path)


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_round_trip_with_gensim(tmp_path: Path, binary: bool) -> None:
    gensim = pytest.importorskip("gensim", reason="gensim is not installed (optional `bench` extra)")
    model = Word2Vec(vector_size=6, min_count=1, epochs=1, device="cpu").fit([["a", "b", "c"], ["c", "d"]] * 5)
    ours = model.wv.save_word2vec_format(tmp_path / "ours.txt", binary=binary)
    theirs = gensim.models.KeyedVectors.load_word2vec_format(str(ours), binary=binary)
    assert theirs.index_to_key == model.wv.index_to_key
    assert np.allclose(theirs.vectors, model.wv.vectors, atol=1e-6)
    trained = gensim.models.Word2Vec([["x", "y", "z"], ["z", "w"]] * 5, vector_size=5, min_count=1, epochs=1, workers=1)
    trained.wv.save_word2vec_format(str(tmp_path / "gensim.txt"), binary=binary)
    back = KeyedVectors.load_word2vec_format(tmp_path / "gensim.txt", binary=binary)
    assert back.index_to_key == trained.wv.index_to_key
    assert np.allclose(back.vectors, trained.wv.vectors, atol=1e-6)
    assert back.most_similar("x", topn=2)[0][0] == trained.wv.most_similar("x", topn=2)[0][0]


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = Word2Vec(vector_size=6, window=2, min_count=1, epochs=1, device="cpu").fit([["a", "b", "c"], ["c", "d"]])
    loaded = Word2Vec.load(model.save(tmp_path / "model.npz"))
    assert loaded.window == 2 and loaded.wv.index_to_key == model.wv.index_to_key
    assert np.array_equal(loaded.wv.vectors, model.wv.vectors)
    assert torch.equal(loaded.syn1neg_, model.syn1neg_)
    wv = KeyedVectors.load(model.wv.save(tmp_path / "wv.npz"))
    assert wv.index_to_key == model.wv.index_to_key


def test_keyed_embedding_export_for_int_keys() -> None:
    model = Word2Vec(vector_size=6, min_count=1, epochs=1, device="cpu").fit([[7, 8, 9], [9, 10]])
    table = model.wv.to_keyed_embedding()
    assert torch.allclose(table(torch.tensor([9])), torch.from_numpy(model.wv[[9]]))
    with pytest.raises(DataError, match="integer keys"):
        Word2Vec(vector_size=6, min_count=1, epochs=1, device="cpu").fit([["a", "b"]]).wv.to_keyed_embedding()


def test_unfitted_model_says_so() -> None:
    with pytest.raises(DataError, match="not fitted"):
        Word2Vec().most_similar("a")


@pytest.mark.parametrize("init_scale", [0.5, 1.0])
def test_input_vectors_start_uniform_in_init_scale_over_dim(init_scale: float) -> None:
    corpus = [[str(i), str(i + 1), str(i + 2)] for i in range(200)]
    model = Word2Vec(vector_size=16, min_count=1, epochs=1, alpha=1e-12, min_alpha=0.0, sample=0, workers=1,
                     init_scale=init_scale, device="cpu").fit(corpus)
    vectors = torch.as_tensor(np.asarray(model.wv.vectors))
    bound = init_scale / 16
    assert vectors.abs().max() <= bound
    assert vectors.abs().max() > 0.9 * bound  # 3,200 uniform draws reach close to the bound
    assert abs(vectors.mean().item()) < 0.1 * bound


def test_init_scale_must_be_positive() -> None:
    from recsys.errors import ConfigError

    with pytest.raises(ConfigError, match="init_scale"):
        Word2Vec(min_count=1, init_scale=0).fit([["a", "b"]])


def test_planted_communities_separate_with_thread_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where there is no fork, the workers are threads on the same tables."""
    from recsys.training import hogwild

    monkeypatch.setattr(hogwild, "can_fork", lambda: False)
    model = Word2Vec(vector_size=16, window=3, min_count=1, sample=0, epochs=8, seed=0, workers=2, batch_size=8, device="cpu").fit(communities())
    within, across = separation(model.wv)
    assert within > across + 0.3, (within, across)
    assert model.effective_words_ == 8 * 300 * 8  # both shares together cover every epoch once
