"""``Word2Vec``: skip-gram / CBOW with negative sampling and/or hierarchical softmax in torch (CPU and CUDA), a gensim-style estimator.

A facade: it reads the corpus (token lists, an :class:`~recsys.data.interactions.Interactions`, or a
user/item frame), builds the vocabulary and hands the training to the SGNS engine
(:class:`recsys.training.sgns.SGNS`: on CPU a compiled per-center loop on ``workers`` threads when numba is
installed (``kernel``), else vectorized minibatch Hogwild SGD, ``workers`` forked processes on
CPU; negative sampling and/or hierarchical softmax); the trained vectors come back as :class:`KeyedVectors` (``wv``).
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import torch

from recsys.data.huffman import HuffmanTree
from recsys.data.skipgram import sentence_ids
from recsys.embeddings.keyed_vectors import KeyedVectors, _load_npz, _save_npz
from recsys.errors import ConfigError, DataError
from recsys.runtime import atomic_write, resolve_device
from recsys.training.sgns import SGNS, build_vocabulary, check_kernel


def corpus_frame(corpus: Any) -> pl.DataFrame:
    """Any supported corpus as a frame of ``sentence`` (int) and ``token`` columns, in sentence order.

    Accepts a list of token lists (strings or ints), an :class:`~recsys.data.interactions.Interactions`
    (each user's items in time order, keyed by original item id), or a pandas/polars frame with
    ``user``, ``item`` and optionally ``timestamp`` columns (sorted by user, then time).
    """
    if hasattr(corpus, "item_index") and hasattr(corpus, "items"):  # Interactions, sorted by (user, time)
        tokens = corpus.items.ids.gather(corpus.frame["item"])
        return pl.DataFrame({"sentence": corpus.frame["user"], "token": tokens})
    if isinstance(corpus, (pd.DataFrame, pl.DataFrame)):
        frame = pl.from_pandas(corpus) if isinstance(corpus, pd.DataFrame) else corpus
        missing = [c for c in ("user", "item") if c not in frame.columns]
        if missing:
            raise DataError(f"corpus frame lacks column(s) {missing}", where=f"Word2Vec.fit; columns: {frame.columns}", fix="pass a frame with user, item and optionally timestamp columns")
        order = ["user", "timestamp"] if "timestamp" in frame.columns else ["user"]
        frame = frame.sort(order, maintain_order=True)
        return frame.select(pl.col("user").rank("dense").cast(pl.Int64).alias("sentence"), pl.col("item").alias("token"))
    if isinstance(corpus, (list, tuple)):
        if not corpus:
            return pl.DataFrame({"sentence": [], "token": []}, schema={"sentence": pl.Int64, "token": pl.Int64})
        if any(isinstance(s, (str, bytes)) for s in corpus[:100]):
            raise DataError("the corpus is a list of strings, not a list of token lists", where="Word2Vec.fit", fix="split each sentence into tokens: [line.split() for line in lines]")
        try:
            series = pl.Series("token", [list(s) for s in corpus])
        except (TypeError, pl.exceptions.PolarsError) as error:
            raise DataError(f"cannot read the sentences as token lists: {error}", where="Word2Vec.fit", fix="pass a list of lists of str (or of int), one type throughout") from None
        lengths = torch.from_numpy(series.list.len().to_numpy().astype(np.int64))
        frame = pl.DataFrame({"sentence": sentence_ids(torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])).numpy(), "token": series.explode().drop_nulls()}) if int(lengths.sum()) else pl.DataFrame({"sentence": [], "token": []})
        return frame
    raise DataError(f"cannot train on a {type(corpus).__name__}", where="Word2Vec.fit", fix="pass a list of token lists, an Interactions, or a (user, item, timestamp) DataFrame")


class Word2Vec:
    """Skip-gram (``sg=1``) or CBOW (``sg=0``) with negative sampling (``negative``) and/or hierarchical
    softmax (``hs=1``, gensim's Huffman tree); gensim's hyperparameter names.

    >>> corpus = [["a", "b", "c"], ["x", "y", "z"]] * 200
    >>> model = Word2Vec(vector_size=8, window=2, min_count=1, sample=0, epochs=5, workers=1, seed=0).fit(corpus)
    >>> len(model.wv), model.wv.vector_size, [key for key, _ in model.most_similar("a", topn=5)].count("a")
    (6, 8, 0)
    >>> hs = Word2Vec(vector_size=8, window=2, hs=1, negative=0, min_count=1, sample=0, epochs=5, workers=1, seed=0).fit(corpus)
    >>> tuple(hs.syn1_.shape), tuple(hs.syn1neg_.shape), len(hs.tree_)  # V - 1 inner nodes, no negative table
    ((5, 8), (0, 8), 6)
    """

    def __init__(
        self,
        vector_size: int = 100,
        window: int = 5,
        negative: int = 5,
        hs: int = 0,
        sg: int = 1,
        cbow_mean: int = 1,
        min_count: int = 5,
        sample: float = 1e-3,
        epochs: int = 5,
        alpha: float = 0.025,
        min_alpha: float = 0.0001,
        ns_exponent: float = 0.75,
        shrink_windows: bool = True,
        basket: bool = False,
        batch_size: int = 256,
        workers: int = 2,
        seed: int = 1,
        device: str = "auto",
        init_scale: float | None = None,
        kernel: str = "auto",
    ) -> None:
        self.vector_size, self.window, self.negative, self.hs, self.sg, self.cbow_mean = vector_size, window, negative, hs, sg, cbow_mean
        self.min_count, self.sample, self.epochs, self.alpha, self.min_alpha = min_count, sample, epochs, alpha, min_alpha
        self.ns_exponent, self.shrink_windows, self.basket = ns_exponent, shrink_windows, basket
        self.batch_size, self.workers, self.seed, self.device = batch_size, workers, seed, device
        self.init_scale, self.kernel = init_scale, kernel

    def _engine(self) -> SGNS:
        """The training hyperparameters of this estimator, checked."""
        engine = SGNS.from_model(self)
        engine.check(where="Word2Vec")
        check_kernel(self.kernel, where="Word2Vec")
        for name in ("workers", "min_count"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", where="Word2Vec", fix=f"set {name} to a positive integer")
        return engine

    def fit(self, corpus: Any) -> Word2Vec:
        """Build the vocabulary and train; returns ``self`` with ``wv_`` (:class:`KeyedVectors`), the output
        tables ``syn1neg_`` ``(V, D)`` (``(0, D)`` when ``negative=0``) and ``syn1_`` ``(V-1, D)`` with its
        Huffman tree ``tree_`` (None when ``hs=0``) set."""
        engine = self._engine()
        keys, counts, tokens, offsets = build_vocabulary(corpus_frame(corpus), self.min_count, where="Word2Vec.fit")
        device = resolve_device(self.device, where="Word2Vec(device=...)")
        result = engine.train(counts, tokens, offsets, workers=self.workers, device=device, seed=self.seed, kernel=self.kernel)
        self.train_seconds_, self.effective_words_, self.corpus_words_ = result.seconds, result.effective_words, len(tokens) * self.epochs
        self.wv_ = KeyedVectors(keys, result.vectors)
        self.syn1neg_, self.syn1_, self.tree_ = result.syn1neg, result.syn1, result.tree
        self.counts_ = counts
        return self

    # gensim-style queries -------------------------------------------------------------------
    @property
    def wv(self) -> KeyedVectors:
        """The trained vectors (gensim's name for ``wv_``)."""
        if not hasattr(self, "wv_"):
            raise DataError("this Word2Vec is not fitted yet", where="Word2Vec.wv", fix="call fit(corpus) first, or Word2Vec.load(path)")
        return self.wv_

    def most_similar(self, positive: Hashable | list | None = None, negative: list | None = None, topn: int = 10) -> list[tuple[Hashable, float]]:
        return self.wv.most_similar(positive, negative, topn)

    def similarity(self, a: Hashable, b: Hashable) -> float:
        return self.wv.similarity(a, b)

    def __getitem__(self, key: Hashable | list) -> np.ndarray:
        return self.wv[key]

    def save(self, path: str | Path) -> Path:
        """Save params, keys, counts and the trained tables to ``.npz`` (no pickle; the tree is rebuilt from the counts)."""
        params = {k: v for k, v in vars(self).items() if not k.endswith("_")}
        wv = self.wv
        arrays = {"vectors": wv.table.numpy(), "syn1neg": self.syn1neg_.numpy(), "counts": self.counts_.numpy()}
        if self.syn1_ is not None:
            arrays["syn1"] = self.syn1_.numpy()
        return atomic_write(path, lambda file: _save_npz(file, wv.index_to_key, params, **arrays))

    @classmethod
    def load(cls, path: str | Path) -> Word2Vec:
        keys, arrays, params = _load_npz(path)
        model = cls(**params)
        model.wv_ = KeyedVectors(keys, torch.from_numpy(arrays["vectors"]))
        model.syn1neg_, model.counts_ = torch.from_numpy(arrays["syn1neg"]), torch.from_numpy(arrays["counts"])
        model.syn1_ = torch.from_numpy(arrays["syn1"]) if "syn1" in arrays else None
        model.tree_ = HuffmanTree.from_counts(model.counts_) if model.syn1_ is not None else None
        return model
