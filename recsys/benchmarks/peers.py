"""Other libraries' models as fitting engines, so they run through the same pipeline, split and evaluator as ours.

Each peer is a :class:`~recsys.training.engine.FitEngine` (``conf/model/peer/*.yaml``): it fits the other
library's model on the run's training interactions and copies what it learned into one of our model
classes, which then scores, saves, loads and recommends like any other run. The container is chosen so that
it scores exactly as the peer does:

- ``ImplicitALS`` / ``ImplicitBPR``: ``implicit``'s factors into :class:`recsys.models.BPRMF`
  (score = user . item; the item bias stays 0; implicit's BPR learns its item bias as one extra factor, so its
  container has ``embedding_dim = factors + 1``).
- ``GensimItem2Vec``: gensim ``Word2Vec`` over each user's time-ordered items into
  :class:`recsys.models.item2vec.Item2Vec` (the model's hyperparameters are gensim's arguments; scored like
  ours: cosine to the user's most recent items).

A peer's library is imported when it fits; ``recsys compare`` records a cell whose library is not installed
as skipped.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np
import torch

from recsys.data.interactions import Interactions
from recsys.errors import ConfigError
from recsys.models.base import Recommender

__all__ = ["GensimItem2Vec", "ImplicitALS", "ImplicitBPR", "peer_library"]

#: peer engine class name -> the distribution it needs
LIBRARIES = {"ImplicitALS": "implicit", "ImplicitBPR": "implicit", "GensimItem2Vec": "gensim"}


def peer_library(name: str) -> str:
    """``"<distribution> <version>"`` of a peer's library, or raise :class:`ConfigError` when not installed."""
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"{name} is not installed", where="peer", fix=f"pip install {name} (or the bench extra)") from None


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _csr(train: Interactions) -> Any:
    """The training interactions as a scipy CSR user x item matrix of ones (implicit's input)."""
    import scipy.sparse as sp

    matrix = train.user_item_matrix()
    return sp.csr_matrix((matrix.values().numpy().astype(np.float32), matrix.col_indices().numpy(),
                          matrix.crow_indices().numpy()), shape=tuple(matrix.shape))


def _load_factors(model: Recommender, users: np.ndarray, items: np.ndarray, where: str) -> None:
    for name in ("user_embedding", "item_embedding", "item_bias"):
        if not hasattr(model, name):
            raise ConfigError(f"{type(model).__name__} has no {name}", where=where, fix="use recsys.models.BPRMF as module")
    if model.user_embedding.weight.shape != users.shape or model.item_embedding.weight.shape != items.shape:
        raise ConfigError(f"the peer learned {users.shape[1]} factors; the container has embedding_dim "
                          f"{model.user_embedding.weight.shape[1]}", where=where,
                          fix="set model.module.embedding_dim to the peer's factor count (implicit BPR: factors + 1)")
    with torch.no_grad():
        weight = model.user_embedding.weight
        weight.copy_(torch.from_numpy(np.ascontiguousarray(users)).to(weight))
        model.item_embedding.weight.copy_(torch.from_numpy(np.ascontiguousarray(items)).to(weight))
        model.item_bias.weight.zero_()


class ImplicitALS:
    """``implicit.cpu.als.AlternatingLeastSquares`` (arguments as implicit's; ``threads`` 0 = all cores)."""

    def __init__(self, factors: int = 64, regularization: float = 0.1, alpha: float = 5.0, iterations: int = 15,
                 threads: int | None = 0) -> None:
        self.factors, self.regularization, self.alpha, self.iterations = factors, regularization, alpha, iterations
        self.threads = threads or 0

    def fit(self, model: Recommender, train: Interactions, *, device: torch.device, generator: torch.Generator,
            progress: bool = True) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        peer = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                                       iterations=self.iterations, random_state=_seed(generator), num_threads=self.threads)
        peer.fit(_csr(train), show_progress=progress)
        _load_factors(model, peer.user_factors, peer.item_factors, "ImplicitALS")


class ImplicitBPR:
    """``implicit.cpu.bpr.BayesianPersonalizedRanking``; its container needs ``embedding_dim = factors + 1``."""

    def __init__(self, factors: int = 64, learning_rate: float = 0.01, regularization: float = 0.01,
                 iterations: int = 100, threads: int | None = 0) -> None:
        self.factors, self.learning_rate, self.regularization, self.iterations = factors, learning_rate, regularization, iterations
        self.threads = threads or 0

    def fit(self, model: Recommender, train: Interactions, *, device: torch.device, generator: torch.Generator,
            progress: bool = True) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        peer = BayesianPersonalizedRanking(factors=self.factors, learning_rate=self.learning_rate,
                                           regularization=self.regularization, iterations=self.iterations,
                                           random_state=_seed(generator), num_threads=self.threads)
        peer.fit(_csr(train), show_progress=progress)
        _load_factors(model, peer.user_factors, peer.item_factors, "ImplicitBPR")


class GensimItem2Vec:
    """gensim ``Word2Vec`` with the container's (:class:`~recsys.models.item2vec.Item2Vec`) hyperparameters."""

    def __init__(self, workers: int | None = 2) -> None:
        self.workers = workers or 1

    def fit(self, model: Recommender, train: Interactions, *, device: torch.device, generator: torch.Generator,
            progress: bool = True) -> None:
        from gensim.models import Word2Vec

        if not hasattr(model, "set_vectors"):
            raise ConfigError(f"{type(model).__name__} cannot take item vectors", where="GensimItem2Vec",
                              fix="use recsys.models.item2vec.Item2Vec as module")
        offsets, items = train.sequences()
        tokens = [str(i) for i in items.tolist()]  # gensim wants lists of str tokens, one list per user
        bounds = offsets.tolist()
        sentences = [tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        peer = Word2Vec(sentences, vector_size=model.vector_size, window=model.window, negative=model.negative,
                        sg=model.sg, min_count=model.min_count, sample=model.sample, epochs=model.epochs,
                        alpha=model.alpha, min_alpha=model.min_alpha, ns_exponent=model.ns_exponent,
                        shrink_windows=model.shrink_windows, workers=self.workers, seed=_seed(generator) % 2**31)
        rows = torch.tensor([int(key) for key in peer.wv.index_to_key], dtype=torch.long)
        model.set_vectors(rows, torch.from_numpy(np.ascontiguousarray(peer.wv.vectors)))
