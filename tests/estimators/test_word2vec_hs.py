"""Word2Vec with hierarchical softmax (hs=1): planted communities, side by side with gensim, errors, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.embeddings.keyed_vectors import KeyedVectors
from recsys.errors import ConfigError
from recsys.estimators.word2vec import Word2Vec

from tests.estimators.test_word2vec import communities, separation

SETTINGS = dict(vector_size=16, window=3, min_count=1, sample=0, epochs=8, seed=0, workers=1, device="cpu")


@pytest.mark.parametrize("options", [dict(sg=1), dict(sg=0), dict(sg=0, cbow_mean=0), dict(sg=1, negative=5), dict(sg=1, workers=2),
                                     dict(sg=1, batch_size=8, workers=2, kernel="torch"), dict(sg=0, kernel="torch")])
def test_planted_communities_separate_with_hs(options: dict) -> None:
    model = Word2Vec(**{**SETTINGS, "hs": 1, "negative": 0, **options}).fit(communities())
    within, across = separation(model.wv)
    assert within > across + 0.5, (within, across)
    assert all(key < 15 for key, _ in model.most_similar(3, topn=5))
    assert model.syn1_.shape == (29, 16) and model.tree_ is not None


@pytest.mark.parametrize("sg", [1, 0])
def test_separation_is_on_par_with_gensims_hs(sg: int) -> None:
    gensim = pytest.importorskip("gensim.models")
    corpus = communities()
    ours = Word2Vec(**{**SETTINGS, "hs": 1, "negative": 0, "sg": sg}).fit(corpus)
    peer = gensim.Word2Vec([[str(t) for t in s] for s in corpus], vector_size=16, window=3, min_count=1, sample=0, epochs=8,
                           seed=0, workers=1, hs=1, negative=0, sg=sg)
    order = [str(i) for i in range(30)]
    theirs = KeyedVectors(list(range(30)), torch.from_numpy(np.stack([peer.wv[k] for k in order])))
    (ours_in, ours_out), (their_in, their_out) = separation(ours.wv), separation(theirs)
    assert ours_in - ours_out > 0.8 * (their_in - their_out), ((ours_in, ours_out), (their_in, their_out))


def test_hs_with_one_worker_is_deterministic() -> None:
    corpus = communities(num_sentences=50)
    first, second = (Word2Vec(**{**SETTINGS, "hs": 1, "negative": 0, "epochs": 2}).fit(corpus) for _ in range(2))
    assert np.array_equal(first.wv.vectors, second.wv.vectors) and torch.equal(first.syn1_, second.syn1_)


@pytest.mark.parametrize("settings, match", [(dict(hs=0, negative=0), "nothing to train"), (dict(hs=2), "hs must be 0 or 1"),
                                             (dict(negative=-2), "negative must be >= 0"), (dict(sg=0, cbow_mean=3), "cbow_mean")])
def test_invalid_combinations_are_config_errors(settings: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Word2Vec(min_count=1, **settings).fit([["a", "b"]])


def test_save_load_round_trip_keeps_syn1_and_rebuilds_the_tree(tmp_path: Path) -> None:
    model = Word2Vec(vector_size=6, window=2, min_count=1, epochs=1, hs=1, negative=0, device="cpu").fit([["a", "b", "c"], ["c", "d"]])
    loaded = Word2Vec.load(model.save(tmp_path / "model.npz"))
    assert loaded.hs == 1 and loaded.negative == 0
    assert torch.equal(loaded.syn1_, model.syn1_) and loaded.syn1neg_.shape == (0, 6)
    assert torch.equal(loaded.tree_.codes, model.tree_.codes) and torch.equal(loaded.tree_.points, model.tree_.points)
    plain = Word2Vec.load(Word2Vec(vector_size=6, min_count=1, epochs=1, device="cpu").fit([["a", "b"]]).save(tmp_path / "ns.npz"))
    assert plain.syn1_ is None and plain.tree_ is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sg", [1, 0])
def test_planted_communities_separate_with_hs_on_cuda(sg: int) -> None:
    model = Word2Vec(**{**SETTINGS, "hs": 1, "negative": 0, "sg": sg, "device": "cuda"}).fit(communities())
    within, across = separation(model.wv)
    assert within > across + 0.5, (within, across)
