"""``implicit``-compatible facades: ``AlternatingLeastSquares``, ``BayesianPersonalizedRanking``, ``EASERecommender``.

Same constructor names, same methods and the same returns as ``implicit`` >= 0.5, built on our models and
engines (:class:`~recsys.models.ALS` and its ``prepare``, :class:`~recsys.models.EASE`, BPR-MF with the Hogwild
engine) and scored in torch on CPU or CUDA: per batch of users, filtered items set to the lowest float32 and the top
``N`` kept (:mod:`recsys.evaluation.topk`: dot-product models score item tiles that stay in cache).

- ``fit(user_items, show_progress=True)``: a ``scipy.sparse`` CSR of users x items, values = confidences.
- ``recommend(userid, user_items, N=10, filter_already_liked_items=True, filter_items=None,
  recalculate_user=False, items=None)`` -> ``(ids, scores)``: 1-D for a scalar ``userid``, ``(len(userid), N)``
  for an array; ``user_items`` holds those users' rows. As in ``implicit``: filtered items that still fit in
  ``N`` come last with score ``-3.4028235e+38``, and positions past the catalogue are padded with id 0, score 0.
- ``similar_items(itemid, N=10, filter_items=None, items=None)`` / ``similar_users``: cosine, the query itself first.
- ``save(path)`` / ``load(path)``: ``.npz`` without pickle; ``user_factors`` / ``item_factors``: numpy, settable.

>>> import numpy as np, scipy.sparse as sp
>>> user_items = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1]], dtype=np.float32))
>>> model = AlternatingLeastSquares(factors=2, iterations=3, random_state=0, device="cpu").fit(user_items)
>>> ids, scores = model.recommend(0, user_items[0], N=2)
>>> ids.shape, bool(np.isin(ids, [0, 1]).any())
((2,), False)
>>> model.recommend(np.arange(3), user_items, N=2)[0].shape
(3, 2)
>>> int(model.similar_items(3, N=2)[0][0])
3
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import torch
from torch import Tensor

from recsys.data.interactions import Interactions
from recsys.data.vocabulary import Vocabulary
from recsys.errors import CheckpointError, ConfigError, DataError
from recsys.estimators.bpr import BayesianPersonalizedRanking as _BPREstimator
from recsys.evaluation.topk import topk, topk_dot
from recsys.models.als import ALS
from recsys.models.ease import EASE
from recsys.runtime import atomic_write, resolve_device

__all__ = ["AlternatingLeastSquares", "BayesianPersonalizedRanking", "EASERecommender", "to_interactions"]

LOWEST = float(np.finfo(np.float32).min)  # implicit's score of a filtered item (-FLT_MAX)


class Dot(NamedTuple):
    """Scores given as ``queries @ items.T`` (``(B, D)``, ``(N, D)``): ranked tile by tile
    (:func:`recsys.evaluation.topk.topk_dot`) instead of as one ``(B, N)`` block."""

    queries: Tensor
    items: Tensor


_FORMAT = 1


def to_interactions(user_items: Any, where: str = "fit(user_items)") -> Interactions:
    """A users x items ``scipy.sparse`` matrix as :class:`Interactions` (index = row / column, ``rating`` = value)."""
    import scipy.sparse as sp

    if not sp.issparse(user_items):
        raise DataError(f"user_items must be a scipy.sparse CSR matrix, got {type(user_items).__name__}", where=where,
                        fix="pass scipy.sparse.csr_matrix(user_items) with users as rows and items as columns")
    matrix = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if matrix.nnz and float(matrix.data.min()) < 0:
        raise DataError("user_items has negative values (implicit's negative feedback is not supported)", where=where,
                        fix="drop negative entries or shift the confidences to be positive")
    num_users, num_items = matrix.shape
    frame = pl.DataFrame({
        "user": np.repeat(np.arange(num_users, dtype=np.int64), np.diff(matrix.indptr)),
        "item": matrix.indices.astype(np.int64),
        "rating": matrix.data,
    })
    return Interactions(frame, Vocabulary(pl.Series(np.arange(num_users))), Vocabulary(pl.Series(np.arange(num_items))),
                        name="user_items", assume_sorted=True)


def _rows(user_items: Any, count: int, where: str):
    """``user_items`` checked as a CSR of ``count`` rows (implicit's checks and ValueErrors)."""
    import scipy.sparse as sp

    if not (sp.issparse(user_items) and user_items.format == "csr"):
        raise DataError("user_items needs to be a CSR sparse matrix", where=where, fix="pass user_items[userid] of a csr_matrix")
    if user_items.shape[0] != count:
        raise DataError("user_items must contain 1 row for every user in userids", where=where,
                        fix=f"pass user_items[userid]: {count} row(s)")
    return user_items


def _ids(values: Any, size: int, name: str) -> Tensor:
    index = torch.as_tensor(np.asarray(values, dtype=np.int64).reshape(-1))
    if len(index) and (int(index.min()) < 0 or int(index.max()) >= size):
        raise DataError(f"some ids in {name} are not in the model (0..{size - 1})", where=name, fix="pass ids of the fitted matrix")
    return index


class _TopK:
    """The shared query side: batched ``(B, N)`` scores -> implicit's ``(ids, scores)``."""

    batch_size: int
    device: str

    def _score(self, rows: Tensor, user_items: Any, recalculate: bool) -> Tensor:  # (B, N) on self._device
        raise NotImplementedError

    @property
    def _device(self) -> torch.device:
        return resolve_device(self.device, where=f"{type(self).__name__}(device=...)")

    def _rank(self, queries: Tensor, score: Any, N: int, width: int, liked: Any, filter_items: Any, items: Any,
              cap: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top ``N`` of ``score(rows, start)`` for each query, filtered items at the lowest float32, zero padded
        (``cap``: ``N`` shrinks to the number of ``items``, as in implicit's ``recommend``)."""
        if not isinstance(N, (int, np.integer)) or isinstance(N, bool) or N < 1:
            raise ConfigError(f"N must be a positive int, got {N!r}", where="recommend(N=...)")
        if items is not None and filter_items is not None and len(np.atleast_1d(filter_items)):
            raise DataError("Can't set both items and filter_items in recommend call", where="recommend", fix="pass one of them")
        device = self._device
        candidates = None if items is None else torch.sort(_ids(items, width, "items")).values.to(device)
        banned = None if filter_items is None else _ids(filter_items, width, "filter_items").to(device)
        if candidates is not None and cap:
            N = min(N, len(candidates))
        columns = width if candidates is None else len(candidates)
        k = min(N, columns)
        out_ids = np.zeros((len(queries), N), dtype=np.int32 if candidates is None else np.int64)  # implicit's dtypes
        out_scores = np.zeros((len(queries), N), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(queries), self.batch_size):
                rows = queries[start : start + self.batch_size]
                block = None if liked is None else liked[start : start + len(rows)]
                scores = score(rows, start)  # (B, N), or Dot: scored tile by tile
                if isinstance(scores, Dot) and candidates is None:
                    exclude = None if block is None else (block.indptr, block.indices)
                    values, index = topk_dot(scores.queries, scores.items, k, exclude=exclude, banned=banned, fill=LOWEST)
                else:
                    scores = (scores.queries @ scores.items.T if isinstance(scores, Dot) else scores).float()
                    if block is not None:
                        counts = torch.from_numpy(np.diff(block.indptr).astype(np.int64)).to(device)
                        row = torch.repeat_interleave(torch.arange(len(rows), device=device), counts)
                        scores[row, torch.from_numpy(block.indices.astype(np.int64)).to(device)] = LOWEST
                    if banned is not None:
                        scores[:, banned] = LOWEST
                    if candidates is not None:
                        scores = scores.index_select(1, candidates)  # (B, C)
                    values, index = topk(scores, k)  # (B, K)
                    index = index if candidates is None else candidates[index.to(device)]
                out_ids[start : start + len(rows), :k] = index.cpu().numpy()
                out_scores[start : start + len(rows), :k] = values.cpu().numpy()
        return out_ids, out_scores

    def recommend(self, userid: Any, user_items: Any, N: int = 10, filter_already_liked_items: bool = True,
                  filter_items: Any = None, recalculate_user: bool = False, items: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``N`` items for ``userid`` (an int or an array) as ``(ids, scores)``, exactly as ``implicit``'s."""
        self._check_fitted()
        scalar = np.isscalar(userid)
        users = torch.as_tensor(np.atleast_1d(np.asarray(userid, dtype=np.int64)))
        needs_rows = filter_already_liked_items or recalculate_user or self._reads_rows
        if needs_rows:
            user_items = _rows(user_items, len(users), "recommend(user_items=...)")
        if not recalculate_user and not self._reads_rows:
            _ids(users, self._num_users, "userid")
        recalculated = self._recalculate(user_items) if recalculate_user else None

        def score(rows: Tensor, start: int) -> Tensor | Dot:
            if recalculated is not None:
                return Dot(recalculated[start : start + len(rows)], self._item_table())
            return self._score(rows, user_items[start : start + len(rows)] if needs_rows else None)

        ids, scores = self._rank(users, score, N, self._num_items, user_items if filter_already_liked_items else None,
                                 filter_items, items)
        return (ids[0], scores[0]) if scalar else (ids, scores)

    def _similar(self, table: Tensor, query: Any, N: int, filter_ids: Any, subset: Any) -> tuple[np.ndarray, np.ndarray]:
        """Cosine neighbours of rows ``query`` of ``table`` (the query itself included), as ``implicit``."""
        self._check_fitted()
        scalar = np.isscalar(query)
        rows = _ids(query, len(table), "itemid")
        norms = table.norm(dim=1).clamp_min(1e-10)  # (N,) implicit: zero norms -> 1e-10
        unit = table / norms.unsqueeze(1)  # (N, D)

        def score(block: Tensor, start: int) -> Tensor:
            return (table[block.to(table.device)] @ unit.T) / norms[block.to(table.device)].unsqueeze(1)  # (B, N)

        def lowest_scaled(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # implicit divides its filtered -FLT_MAX by the query's norm too
            q = norms[rows.to(table.device)].cpu().numpy()[:, None]
            with np.errstate(over="ignore"):  # float32 -FLT_MAX / norm < 1 is -inf, in implicit too
                return ids, np.where(scores == LOWEST, np.float32(LOWEST) / q, scores).astype(np.float32)

        ids, scores = lowest_scaled(*self._rank(rows, score, N, len(table), None, filter_ids, subset, cap=False))
        return (ids[0], scores[0]) if scalar else (ids, scores)

    def similar_items(self, itemid: Any, N: int = 10, filter_items: Any = None, items: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` items nearest ``itemid`` by cosine of item vectors, the item itself first."""
        return self._similar(self._item_vectors(), itemid, N, filter_items, items)

    # --- persistence -----------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def save(self, file: str | Path) -> Path:
        """Write hyperparameters and factors to ``file`` (``.npz`` added when missing; no pickle)."""
        self._check_fitted()
        path = Path(file)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        params = {"class": type(self).__name__, "format": _FORMAT, "params": self.get_params()}
        arrays = {"meta": np.array(json.dumps(params)), **self._arrays()}
        return atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, file: str | Path, device: str | None = None) -> Any:
        """The facade saved at ``file`` by :meth:`save` (``device`` overrides the saved one)."""
        path = Path(file)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as error:
            raise CheckpointError(f"cannot read {path}: {error}", where=f"{cls.__name__}.load", fix="pass a file written by save()") from error
        meta = json.loads(str(arrays.pop("meta", np.array("{}"))))
        if meta.get("class") != cls.__name__:
            raise CheckpointError(f"{path} holds a {meta.get('class')!r}, not a {cls.__name__}", where=f"{cls.__name__}.load",
                                  fix="load it with the class that saved it")
        params = dict(meta["params"])
        if device is not None:
            params["device"] = device
        model = cls(**params)
        model._restore(arrays)
        return model

    def get_params(self) -> dict[str, Any]:
        import inspect

        return {name: getattr(self, name) for name in inspect.signature(type(self).__init__).parameters if name != "self"}

    # hooks
    _reads_rows = False

    def _check_fitted(self) -> None:
        if getattr(self, "model_", None) is None:
            raise ConfigError(f"{type(self).__name__} is not fitted", where=type(self).__name__, fix="call fit(user_items) first")

    def _recalculate(self, user_items: Any) -> Tensor:
        raise NotImplementedError(f"recalculate_user is not supported with {type(self).__name__}")


class _Factors(_TopK):
    """Facades whose score is ``user_factors[u] @ item_factors.T`` (numpy attributes, settable like implicit's)."""

    model_: Any = None

    def _tables(self) -> tuple[Tensor, Tensor]:  # (U, D), (N, D) on the model's device
        raise NotImplementedError

    def _set_tables(self, users: Tensor | None, items: Tensor | None) -> None:
        raise NotImplementedError

    @property
    def user_factors(self) -> np.ndarray | None:
        return None if self.model_ is None else self._tables()[0].detach().cpu().numpy()

    @user_factors.setter
    def user_factors(self, value: np.ndarray) -> None:
        self._set_tables(torch.as_tensor(np.asarray(value, dtype=np.float32)), None)

    @property
    def item_factors(self) -> np.ndarray | None:
        return None if self.model_ is None else self._tables()[1].detach().cpu().numpy()

    @item_factors.setter
    def item_factors(self, value: np.ndarray) -> None:
        self._set_tables(None, torch.as_tensor(np.asarray(value, dtype=np.float32)))

    @property
    def _num_users(self) -> int:
        return self._tables()[0].shape[0]

    @property
    def _num_items(self) -> int:
        return self._tables()[1].shape[0]

    def _item_table(self) -> Tensor:
        return self._tables()[1]

    def _item_vectors(self) -> Tensor:
        return self._tables()[1].float()

    def _score(self, rows: Tensor, user_items: Any) -> Tensor | Dot:
        users, items = self._tables()
        return Dot(users[rows.to(users.device)], items)

    def similar_users(self, userid: Any, N: int = 10, filter_users: Any = None, users: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` users nearest ``userid`` by cosine of user factors, the user itself first."""
        return self._similar(self._tables()[0].float(), userid, N, filter_users, users)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._set_tables(torch.from_numpy(arrays["user_factors"]), torch.from_numpy(arrays["item_factors"]))


class AlternatingLeastSquares(_Factors):
    """``implicit.als.AlternatingLeastSquares`` on :class:`recsys.models.ALS`: confidences ``alpha * user_items``.

    ``use_cg`` picks the conjugate-gradient solver (else exact Cholesky); ``random_state`` seeds the initial
    factors (None: seed 0, so fits repeat); ``batch_size`` users are scored at once; ``model_`` is the ALS.

    >>> import numpy as np, scipy.sparse as sp
    >>> model = AlternatingLeastSquares(factors=2, iterations=2, device="cpu").fit(sp.csr_matrix(np.eye(3, dtype=np.float32)))
    >>> model.user_factors.shape, model.item_factors.dtype
    ((3, 2), dtype('float32'))
    """

    def __init__(self, factors: int = 100, regularization: float = 0.01, alpha: float = 1.0, iterations: int = 15,
                 use_cg: bool = True, cg_steps: int = 3, random_state: int | None = None, batch_size: int = 1024,
                 device: str = "auto") -> None:
        self.factors, self.regularization, self.alpha, self.iterations = factors, regularization, alpha, iterations
        self.use_cg, self.cg_steps, self.random_state, self.batch_size, self.device = use_cg, cg_steps, random_state, batch_size, device
        self.model_ = None

    def _build(self, num_users: int, num_items: int, factors: int | None = None) -> ALS:
        return ALS(num_users, num_items, factors=int(factors or self.factors), regularization=self.regularization, alpha=self.alpha,
                   iterations=self.iterations, confidence="implicit", values="ratings",
                   solver="cg" if self.use_cg else "cholesky", cg_steps=self.cg_steps).to(self._device)

    def fit(self, user_items: Any, show_progress: bool = True) -> AlternatingLeastSquares:
        """Solve ALS on ``user_items`` (users x items confidences); returns ``self``."""
        data = to_interactions(user_items)
        model = self._build(data.num_users, data.num_items)
        seed = 0 if self.random_state is None else int(self.random_state)
        model.prepare(data, torch.Generator().manual_seed(seed))
        self.model_ = model
        return self

    def _tables(self) -> tuple[Tensor, Tensor]:
        return self.model_.user_factors, self.model_.item_factors

    def _set_tables(self, users: Tensor | None, items: Tensor | None) -> None:
        old = self._tables() if self.model_ is not None else (None, None)
        users = users if users is not None else old[0]
        items = items if items is not None else old[1]
        shape = (0 if users is None else users.shape[0], 0 if items is None else items.shape[0])
        dim = (users if users is not None else items).shape[1]
        if users is not None and items is not None and users.shape[1] != items.shape[1]:
            raise DataError(f"user factors have {users.shape[1]} columns, item factors {items.shape[1]}", where="AlternatingLeastSquares")
        model = self._build(max(shape[0], 1), max(shape[1], 1), factors=dim)
        for name, table in (("user_factors", users), ("item_factors", items)):
            if table is not None:
                setattr(model, name, table.to(model.user_factors.device, torch.float32).contiguous())
        self.model_ = model

    def recalculate_user(self, userid: Any, user_items: Any) -> np.ndarray:
        """Factors of the users whose rows are ``user_items``, solved against the fixed item factors."""
        self._check_fitted()
        count = 1 if np.isscalar(userid) else len(userid)
        factors = self._recalculate(_rows(user_items, count, "recalculate_user")).cpu().numpy()
        return factors[0] if np.isscalar(userid) else factors

    def _recalculate(self, user_items: Any) -> Tensor:
        return self.model_.recalculate_users(to_interactions(user_items, where="recommend(recalculate_user=True)"))


class BayesianPersonalizedRanking(_Factors, _BPREstimator):
    """:class:`recsys.estimators.bpr.BayesianPersonalizedRanking` (BPR-MF + the Hogwild engine) with ``implicit``'s methods.

    ``fit`` takes a users x items CSR (implicit) or an :class:`Interactions` (the original facade). As in
    ``implicit``, ``user_factors`` has a last column of ones and ``item_factors`` the item biases as its last column.
    ``random_state`` (implicit's name) overrides ``seed`` when given.

    >>> import numpy as np, scipy.sparse as sp
    >>> bpr = BayesianPersonalizedRanking(factors=3, iterations=2, workers=1, device="cpu").fit(sp.csr_matrix(np.eye(4, dtype=np.float32)))
    >>> bpr.user_factors.shape, bpr.item_factors.shape, float(bpr.user_factors[0, -1])
    ((4, 4), (4, 4), 1.0)
    """

    def __init__(self, factors: int = 100, learning_rate: float = 0.01, regularization: float = 0.01, iterations: int = 100,
                 negatives: str = "popularity", batch_size: int = 1024, workers: int = 2, seed: int = 0,
                 random_state: int | None = None, device: str = "auto") -> None:
        super().__init__(factors=factors, learning_rate=learning_rate, regularization=regularization, iterations=iterations,
                         negatives=negatives, batch_size=batch_size, workers=workers, seed=seed, device=device)
        self.random_state = random_state
        self.model_ = None

    def fit(self, user_items: Any, show_progress: bool = True) -> BayesianPersonalizedRanking:
        """Train on ``user_items`` (a CSR: every nonzero is a positive) or an :class:`Interactions`; returns ``self``."""
        data = user_items if isinstance(user_items, Interactions) else to_interactions(user_items)
        seed = self.seed
        if self.random_state is not None:
            self.seed = int(self.random_state)
        try:
            return _BPREstimator.fit(self, data)
        finally:
            self.seed = seed

    def _tables(self) -> tuple[Tensor, Tensor]:
        return self.model_.score_vectors()  # (U, D+1) with ones, (N, D+1) with the item bias

    def _score(self, rows: Tensor, user_items: Any) -> Dot:  # the batch's user rows only, not the whole user table
        return Dot(*self.model_.score_vectors(rows.to(self.model_.device)))

    def _set_tables(self, users: Tensor | None, items: Tensor | None) -> None:
        from recsys.models.bpr import BPRMF

        old = self._tables() if self.model_ is not None else (None, None)
        users = (users if users is not None else old[0])
        items = (items if items is not None else old[1])
        known = users if users is not None else items
        model = BPRMF(1 if users is None else users.shape[0], 1 if items is None else items.shape[0],
                      embedding_dim=known.shape[1] - 1, reg=self.regularization).to(self._device)
        with torch.no_grad():
            if users is not None:
                model.user_embedding.weight.copy_(users[:, :-1])
            if items is not None:
                model.item_embedding.weight.copy_(items[:, :-1])
                model.item_bias.weight.copy_(items[:, -1:])
        self.model_ = model


class EASERecommender(_TopK):
    """EASE (:class:`recsys.models.EASE`) with ``implicit``'s item-item API: scores = ``user_items[u] @ B``.

    ``recommend`` always reads ``user_items`` (like ``implicit``'s ``ItemItemRecommender``); ``similar_items``
    is the cosine of rows of ``B``; ``values="ones"`` binarizes the confidences (``"ratings"`` keeps them).

    >>> import numpy as np, scipy.sparse as sp
    >>> user_items = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=np.float32))
    >>> ease = EASERecommender(regularization=1.0, device="cpu").fit(user_items)
    >>> ease.recommend(0, user_items[0], N=1)[0].tolist()
    [2]
    """

    _reads_rows = True

    def __init__(self, regularization: float = 170.0, values: str = "ones", batch_size: int = 1024, device: str = "auto") -> None:
        self.regularization, self.values, self.batch_size, self.device = regularization, values, batch_size, device
        self.model_ = None

    def fit(self, user_items: Any, show_progress: bool = True) -> EASERecommender:
        """Solve EASE's closed form on ``user_items``; returns ``self``."""
        data = to_interactions(user_items)
        model = EASE(data.num_items, reg=self.regularization, values=self.values).to(self._device)
        model.prepare(data)
        self.model_ = model
        return self

    @property
    def similarity(self) -> np.ndarray | None:
        """The item-item weights ``B`` (N, N) (``implicit``'s ``similarity``, dense here)."""
        return None if self.model_ is None else self.model_.weights.cpu().numpy()

    @property
    def _num_items(self) -> int:
        return self.model_.num_items

    _num_users = 0

    def _item_vectors(self) -> Tensor:
        return self.model_.weights

    def _score(self, rows: Tensor, user_items: Any) -> Tensor:
        block = user_items.tocsr()
        values = block.data.astype(np.float32) if self.values == "ratings" else np.ones_like(block.data, dtype=np.float32)
        weights = self.model_.weights
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            x = torch.sparse_csr_tensor(torch.from_numpy(block.indptr.astype(np.int64)), torch.from_numpy(block.indices.astype(np.int64)),
                                        torch.from_numpy(values), block.shape)
            return x.to(weights.device) @ weights  # (B, N)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.similarity}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        weights = torch.from_numpy(arrays["weights"])
        model = EASE(weights.shape[0], reg=self.regularization, values=self.values).to(self._device)
        model.weights.copy_(weights)
        self.model_ = model
