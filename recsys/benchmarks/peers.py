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
- ``DeepCTRDeepFM``: DeepCTR-Torch's ``DeepFM`` on the run's CTR rows (the fitted pipeline's fields and vocabularies)
  into :class:`recsys.models.deepfm.DeepFM`, whose architecture is DeepCTR's term for term (first order + FM + DNN,
  one bias); the container's hyperparameters are DeepCTR's architecture arguments, its logits DeepCTR's pre-sigmoid.

A peer's library is imported when it fits; ``recsys compare`` records a cell whose library is not installed
as skipped.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import logging
import sys
import types
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recsys.data.fields import EncodedFeatures
from recsys.data.interactions import Interactions
from recsys.errors import ConfigError, DataError
from recsys.models.base import Recommender
from recsys.training.threads import resolve_threads, torch_threads

log = logging.getLogger(__name__)

__all__ = ["DeepCTRDeepFM", "GensimItem2Vec", "ImplicitALS", "ImplicitBPR", "peer_library"]

#: peer engine class name -> the distribution it needs
LIBRARIES = {"ImplicitALS": "implicit", "ImplicitBPR": "implicit", "GensimItem2Vec": "gensim",
             "DeepCTRDeepFM": "deepctr-torch"}


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

    def __init__(self, workers: int | None = 2, kernel: str | None = None) -> None:
        self.workers = workers or 1  # kernel: our engine's choice, inherited from conf/model/item2vec.yaml; gensim has its own

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
                        hs=getattr(model, "hs", 0), sg=model.sg, cbow_mean=getattr(model, "cbow_mean", 1),
                        min_count=model.min_count, sample=model.sample, epochs=model.epochs,
                        alpha=model.alpha, min_alpha=model.min_alpha, ns_exponent=model.ns_exponent,
                        shrink_windows=model.shrink_windows, workers=self.workers, seed=_seed(generator) % 2**31)
        rows = torch.tensor([int(key) for key in peer.wv.index_to_key], dtype=torch.long)
        model.set_vectors(rows, torch.from_numpy(np.ascontiguousarray(peer.wv.vectors)))


def _deepctr() -> types.ModuleType:
    """``deepctr_torch``, imported without the PyPI version check its ``__init__`` starts in a thread: that check
    needs ``requests`` (which deepctr-torch does not declare) and the network. For the import only, ``requests`` is a
    stand-in that answers "no release"; whatever ``requests`` the process had (or not) is put back after it."""
    if "deepctr_torch" not in sys.modules:
        stand_in = types.ModuleType("requests")
        stand_in.get = lambda url, **kwargs: types.SimpleNamespace(status_code=0)  # type: ignore[attr-defined]
        stand_in.codes = types.SimpleNamespace(ok=200)  # type: ignore[attr-defined]
        real = sys.modules.get("requests")
        sys.modules["requests"] = stand_in
        try:
            importlib.import_module("deepctr_torch")
        finally:
            if real is None:
                sys.modules.pop("requests", None)
            else:
                sys.modules["requests"] = real
    return sys.modules["deepctr_torch"]


def _padded(values: Tensor, lengths: Tensor, starts: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """One bag field's values as a ``(n, width)`` matrix padded with 0 (bags cut to ``width``) and the kept lengths."""
    kept = lengths.clamp_max(width)  # (n,)
    if not len(values):
        return torch.zeros(len(lengths), width, dtype=torch.long), kept
    position = torch.arange(width)  # (W,)
    mask = position < kept.unsqueeze(1)  # (n, W)
    index = (starts.unsqueeze(1) + position).clamp_max(len(values) - 1)
    return torch.where(mask, values[index], 0), kept


_ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU}


class DeepCTRDeepFM:
    """DeepCTR-Torch's ``DeepFM`` fitted by its own ``compile("adam")`` / ``fit``, copied into our DeepFM container.

    The container (``recsys.models.deepfm.DeepFM``) gives the architecture: ``embedding_dim``, ``hidden_dims``,
    ``activation``, ``batch_norm`` and ``dropout`` are passed to DeepCTR as ``embedding_dim``, ``dnn_hidden_units``,
    ``dnn_activation``, ``dnn_use_bn`` and ``dnn_dropout``. DeepCTR reads the same rows the other CTR models do: the
    container's fitted pipeline, single-valued fields as ``SparseFeat`` (OOV row included), bags as
    ``VarLenSparseFeat`` (mean or sum, padded to the longest training bag, with a length column) and dense values as
    ``DenseFeat``. Its loss is its own: summed BCE plus the L2 terms below. The two models then compute the same
    logit, term for term: first-order rows (DeepCTR's linear tables) + dense linear + FM + DNN + DeepCTR's output
    bias (ours: ``bias``; our DNN's last layer gets DeepCTR's bias-free ``dnn_linear`` and a zero bias). Learned
    state: ``model_`` (DeepCTR's fitted model) and ``columns_`` (its feature columns); :meth:`inputs` builds its
    input for other encoded rows.
    """

    def __init__(self, epochs: int = 10, batch_size: int = 4096, lr: float = 1e-3, l2_reg_linear: float = 1e-5,
                 l2_reg_embedding: float = 1e-5, l2_reg_dnn: float = 0.0, init_std: float = 1e-4,
                 threads: int | None = None) -> None:
        self.epochs, self.batch_size, self.lr, self.init_std = epochs, batch_size, lr, init_std
        self.l2_reg_linear, self.l2_reg_embedding, self.l2_reg_dnn = l2_reg_linear, l2_reg_embedding, l2_reg_dnn
        self.threads = threads

    def fit(self, model: Recommender, train: Interactions, *, device: torch.device, generator: torch.Generator,
            progress: bool = True) -> None:
        where = "DeepCTRDeepFM"
        features = getattr(model, "features", None)
        if not hasattr(model, "dnn") or not hasattr(model, "interaction") or features is None:
            raise ConfigError(f"{type(model).__name__} is not a DeepFM container built on a fitted pipeline", where=where,
                              fix="use recsys.models.deepfm.DeepFM as module (features are filled by the entry point)")
        if not model.hidden_dims or model.activation not in _ACTIVATIONS:
            raise ConfigError(f"DeepCTR's DeepFM needs hidden layers and one of {sorted(_ACTIVATIONS)}, got hidden_dims "
                              f"{list(model.hidden_dims)}, activation {model.activation!r}", where=where,
                              fix="set model.module.hidden_dims / activation")
        deepctr = _deepctr()
        from deepctr_torch.models import DeepFM as TheirDeepFM

        encoded = features.transform(train)
        largest = max([int(t.max()) for t in (encoded.ids, encoded.bag_values) if t.numel()], default=0)
        if largest >= 2**24:  # DeepCTR packs every input into one float32 matrix
            raise DataError(f"DeepCTR would read id {largest} as a float32 and lose it (ids from 2**24 on)", where=where,
                            fix="cap the vocabularies (max_size) below 2**24 rows for this peer")
        longest = encoded.bag_lengths.amax(1).clamp_min(1).tolist() if encoded.bag_lengths.numel() else []
        self.columns_ = self._columns(model, features, longest, deepctr.inputs)
        x, y = self.inputs(encoded), features.labels(train).numpy()
        out = io.StringIO()  # fit prints the device and the sample counts (and, verbose, each epoch)
        threads = torch_threads(resolve_threads(self.threads))
        with threads, torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(out):
            peer = TheirDeepFM(self.columns_, self.columns_, dnn_hidden_units=tuple(model.hidden_dims),
                               l2_reg_linear=self.l2_reg_linear, l2_reg_embedding=self.l2_reg_embedding,
                               l2_reg_dnn=self.l2_reg_dnn, init_std=self.init_std, seed=_seed(generator),
                               dnn_dropout=model.dropout, dnn_activation=_ACTIVATIONS[model.activation],
                               dnn_use_bn=model.batch_norm, task="binary", device=str(device))  # seeds torch globally
            peer.compile(torch.optim.Adam(peer.parameters(), lr=self.lr), "binary_crossentropy")
            peer.fit(x, y, batch_size=self.batch_size, epochs=self.epochs, verbose=2 if progress else 0)
        for line in filter(None, out.getvalue().splitlines()):
            log.info("deepctr-torch: %s", line)
        self.model_ = peer.eval()
        _load_deepfm(model, peer)

    @staticmethod
    def _columns(model: Recommender, features: Any, longest: list[int], inputs: types.ModuleType) -> list[Any]:
        """DeepCTR feature columns in the order of the encoded tensors: single-valued, bags, dense."""
        fields = {f.name: f for f in model.embeddings.fields}
        kinds = {kind: [f.name for f in features.features_ if f.kind == kind] for kind in ("single", "bag", "dense")}
        columns: list[Any] = [inputs.SparseFeat(n, fields[n].num_rows, model.embedding_dim) for n in kinds["single"]]
        for name, width in zip(kinds["bag"], longest):  # build time: one column per field
            sparse = inputs.SparseFeat(name, fields[name].num_rows, model.embedding_dim)
            columns.append(inputs.VarLenSparseFeat(sparse, maxlen=int(width), combiner=fields[name].pooling,
                                                   length_name=f"{name}__length"))
        return columns + [inputs.DenseFeat(n, 1) for n in kinds["dense"]]

    def inputs(self, encoded: EncodedFeatures) -> dict[str, np.ndarray]:
        """DeepCTR's input for encoded rows: a column per field; bags padded (cut) to their training width."""
        kinds = {"SparseFeat": [], "VarLenSparseFeat": [], "DenseFeat": []}
        for column in self.columns_:
            kinds[type(column).__name__].append(column)
        out = {c.name: encoded.ids[:, j].numpy() for j, c in enumerate(kinds["SparseFeat"])}
        lengths = encoded.bag_lengths  # (F_bag, n), values key-major
        starts = (torch.cumsum(lengths.flatten(), 0) - lengths.flatten()).view_as(lengths)
        for k, column in enumerate(kinds["VarLenSparseFeat"]):  # one padded matrix per bag field
            padded, kept = _padded(encoded.bag_values, lengths[k], starts[k], column.maxlen)
            out[column.name], out[column.length_name] = padded.numpy(), kept.numpy()
        out.update({c.name: encoded.dense[:, j].numpy() for j, c in enumerate(kinds["DenseFeat"])})
        return out


@torch.no_grad()
def _load_deepfm(model: Recommender, peer: Any) -> None:
    """DeepCTR's DeepFM weights into our DeepFM: each field's (first-order, embedding) rows into its fused-table
    rows, the output bias into ``bias``, the DNN layer by layer (weights transposed: ours are ``(in, out)``)."""
    for field in model.embeddings.fields:  # build time: one copy per field
        rows = model.embeddings.field_weight(field.name)  # (R, 1 + D), a view of the fused table
        rows[:, :1].copy_(peer.linear_model.embedding_dict[field.name].weight)
        rows[:, 1:].copy_(peer.embedding_dict[field.name].weight)
    model.bias.copy_(peer.out.bias)
    if model.dense_linear is not None:
        model.dense_linear.weight.copy_(peer.linear_model.weight.T)  # (1, F_dense)
    dense = [m for m in model.dnn.layers if hasattr(m, "weight") and not isinstance(m, torch.nn.BatchNorm1d)]
    norms = [m for m in model.dnn.layers if isinstance(m, torch.nn.BatchNorm1d)]
    for ours, theirs in zip(dense, peer.dnn.linears):
        ours.weight.copy_(theirs.weight.T)
        ours.bias.copy_(theirs.bias)
    for ours, theirs in zip(norms, getattr(peer.dnn, "bn", [])):
        ours.load_state_dict(theirs.state_dict())
    dense[-1].weight.copy_(peer.dnn_linear.weight.T)  # (H, 1)
    dense[-1].bias.zero_()  # DeepCTR's dnn_linear has no bias: its one bias is the output layer's, in model.bias
